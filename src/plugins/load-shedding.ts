/**
 * Load shedding that sheds the right things. A saturated process answers 503 with Retry-After at
 * once instead of letting requests time out, but a refused Twilio status callback is usually lost
 * (Twilio does not retry unless the URL carries connection overrides), so requests are refused in
 * order of what is cheapest to lose:
 *
 * - reads, stats, streams, `/health` and the console (`read`): when the event loop has been slow
 *   for `SUSTAINED_SAMPLES` samples in a row (one slow sample is any busy neighbour's doing), when
 *   its utilisation is over the limit likewise, or when the recorder's backlog passes a tenth of
 *   `SHED_CALLBACK_BACKLOG` (the database's capacity goes to recording first);
 * - provider callbacks (`POST /webhooks/*`, `callback`) only when accepting more would risk the
 *   process: heap use over `MAX_HEAP_USED_BYTES`, or more than `SHED_CALLBACK_BACKLOG` events
 *   waiting for the recorder;
 * - `/metrics` never: operators need it most during an overload.
 *
 * @fastify/under-pressure samples (event-loop delay, utilisation, heap); the decision is here, in
 * an `onRequest` hook that ends the request with its answer, so a shed request never reaches its
 * handler (under-pressure's `pressureHandler` went on to the handler after sending the 503).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import type { Config } from '../config/config.ts'
import type { Metrics } from '../metrics.ts'

/** Consecutive slow samples before reads are shed. */
export const SUSTAINED_SAMPLES = 3

export interface LoadSheddingOptions {
  config: Pick<Config, 'pressure' | 'limits'>
  metrics: Metrics
  /** Events waiting for a recording slot now (`EventBatcher.queued`). */
  recorderBacklog: () => number
}

type RequestClass = 'callback' | 'read' | 'exempt'

function classOf (request: FastifyRequest): RequestClass {
  const url = request.routeOptions.url ?? request.url
  if (request.method === 'POST' && url.startsWith('/webhooks/')) return 'callback'
  if (url === '/metrics') return 'exempt'
  return 'read'
}

async function loadSheddingPlugin (app: FastifyInstance, opts: LoadSheddingOptions): Promise<void> {
  const { pressure, limits } = opts.config
  // Sampling only: with no thresholds, under-pressure's own hook lets every request through.
  await app.register(underPressure, {
    sampleInterval: pressure.sampleIntervalMs,
    // Utilisation over the last interval: a cumulative figure since start-up hides a saturated minute.
    eventLoopUtilizationMode: 'interval'
  })

  let slowDelay = 0
  let slowUtilization = 0
  let lastSampleAt: number | undefined
  const sample = (): void => {
    const { eventLoopDelay, eventLoopUtilized } = app.memoryUsage()
    // How late this sample's own timer ran, in ms: the delay when under-pressure has none. Its
    // histogram can be empty for an interval (an infinite delay) exactly when the loop was blocked
    // for all of it; counting that as "no news" never shed under the heaviest blocking. One late
    // sample (start-up, migrations) is still not a sustained delay.
    const now = performance.now()
    const late = lastSampleAt === undefined ? 0 : now - lastSampleAt - pressure.sampleIntervalMs
    lastSampleAt = now
    const delay = Number.isFinite(eventLoopDelay) ? Math.max(eventLoopDelay, late) : late
    slowDelay = pressure.maxEventLoopDelayMs > 0 && delay > pressure.maxEventLoopDelayMs ? slowDelay + 1 : 0
    slowUtilization = pressure.maxEventLoopUtilization > 0 && eventLoopUtilized > pressure.maxEventLoopUtilization ? slowUtilization + 1 : 0
  }
  // Offset by half an interval so each read sees a fresh under-pressure sample.
  let timer: NodeJS.Timeout | undefined
  const first = setTimeout(() => { sample(); timer = setInterval(sample, pressure.sampleIntervalMs).unref() }, pressure.sampleIntervalMs * 1.5).unref()
  app.addHook('onClose', async () => { clearTimeout(first); clearInterval(timer) })

  /** Why `kind` should be refused now, or `undefined`. */
  const reasonToShed = (kind: RequestClass): { reason: string, message: string } | undefined => {
    if (kind === 'exempt') return undefined
    const heapUsed = app.memoryUsage().heapUsed
    if (pressure.maxHeapUsedBytes > 0 && heapUsed > pressure.maxHeapUsedBytes) {
      return { reason: 'heapUsedBytes', message: 'Tidings is out of memory headroom (MAX_HEAP_USED_BYTES); retry later' }
    }
    const backlog = opts.recorderBacklog()
    if (backlog > limits.shedCallbackBacklog) {
      return { reason: 'recorderBacklog', message: `Tidings' recorder has ${backlog} events waiting (SHED_CALLBACK_BACKLOG); retry later` }
    }
    if (kind === 'callback') return undefined
    if (backlog > limits.shedCallbackBacklog / 10) {
      return { reason: 'recorderBacklog', message: 'Tidings is busy recording callbacks; reads retry later' }
    }
    if (slowDelay >= SUSTAINED_SAMPLES) return { reason: 'eventLoopDelay', message: 'Tidings is overloaded (event-loop delay); retry later' }
    if (slowUtilization >= SUSTAINED_SAMPLES) return { reason: 'eventLoopUtilization', message: 'Tidings is overloaded (event-loop utilisation); retry later' }
    return undefined
  }

  app.addHook('onRequest', async (request, reply) => {
    const kind = classOf(request)
    const shed = reasonToShed(kind)
    if (shed === undefined) return
    opts.metrics.shed.inc({ reason: shed.reason, class: kind })
    // Returning the reply ends the request here: the route handler never runs.
    return await reply.code(503).header('retry-after', '5').send({ code: 'overloaded', message: shed.message })
  })
}

/** Registered with fastify-plugin: it must watch every route, not only its own context. */
export const loadShedding = fp(loadSheddingPlugin, { name: 'load-shedding' })
