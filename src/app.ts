/**
 * `buildApp(config, deps)`: the whole HTTP application, with every server option, so that tests
 * (`app.inject`) and production run the same thing. `src/server.ts` only loads config, opens the
 * database, builds, listens and shuts down.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import type { DestinationStream } from 'pino'
import type { Config } from './config/config.ts'
import type { DatabaseHandle } from './db/connect.ts'
import type { Database } from './db/database.ts'
import { isDatabaseUnavailableError } from './db/errors.ts'
import { AppError, databaseUnavailable } from './errors.ts'
import { createJobQueue, type JobQueueConnection } from './fallback/queue.ts'
import { createFallbackService } from './fallback/service.ts'
import { loggerOptions } from './logger.ts'
import { startScheduledJobs } from './maintenance/scheduler.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { apiKeyAuth } from './plugins/api-key-auth.ts'
import rateLimit from '@fastify/rate-limit'
import underPressure from '@fastify/under-pressure'
import { matchApiKey } from './plugins/api-key-auth.ts'
import { createHash } from 'node:crypto'
import { docsRoutes } from './routes/docs.ts'
import { healthRoutes } from './routes/health.ts'
import { EventBatcher } from './ingest/batcher.ts'
import { messageRoutes } from './routes/messages.ts'
import { sendRoutes } from './routes/send.ts'
import { statsRoutes } from './routes/stats.ts'
import { twilioClientsOf } from './providers/twilio-rest.ts'
import { streamRoutes } from './routes/stream.ts'
import { EventHub } from './stream/event-hub.ts'
import { twilioStatusRoutes } from './webhooks/twilio-status.ts'
import { resendWebhookRoutes } from './webhooks/resend.ts'
import pkg from '../package.json' with { type: 'json' }

/** What the app needs from outside: the database, and optionally a metrics registry to share. */
export interface AppDeps {
  db: Kysely<Database>
  /**
   * Where the job queue lives (`jobQueueConnectionOf(handle)`). When given, the WhatsApp → SMS
   * fallback runs: its workers start when the app is ready and stop when it closes.
   */
  jobQueue?: JobQueueConnection
  metrics?: Metrics
  /** Where logs go (default stdout); tests pass a stream to inspect them. */
  logStream?: DestinationStream
  /** Database notifications for the live stream (`DatabaseHandle.listen`); without it, the stream polls. */
  listen?: DatabaseHandle['listen']
  /** Pool state for `/metrics` (`DatabaseHandle.poolStats`). */
  poolStats?: DatabaseHandle['poolStats']
}

/** Maps Fastify's own errors to the catalogue's codes. */
function fastifyErrorCode (err: FastifyError): { status: number, code: string } | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { status: 413, code: 'payload_too_large' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { status: 415, code: 'unsupported_media_type' }
  }
  if (err.validation !== undefined) return { status: 400, code: 'invalid_payload' }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: err.statusCode === 404 ? 'not_found' : 'invalid_payload' }
  }
  return undefined
}

/** `body.to must match pattern …`, naming the field, also for an unexpected property. */
function validationMessage (err: FastifyError): string {
  const first = err.validation?.[0]
  const extra = first?.params?.additionalProperty
  const where = `${err.validationContext ?? 'request'}${first?.instancePath ?? ''}`.replace(/\//g, '.')
  return typeof extra === 'string'
    ? `${where}.${extra} is not a known property`
    : `${where} ${first?.message ?? 'is invalid'}`
}

/**
 * Builds the Fastify app. Does not listen and does not migrate.
 * @param config - validated configuration (`loadConfig`).
 * @param deps - the open database and, optionally, a metrics registry.
 */
export async function buildApp (config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics(deps.poolStats, deps.db)
  const app = Fastify({
    logger: { ...loggerOptions(config.logLevel), ...(deps.logStream === undefined ? {} : { stream: deps.logStream }) },
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID()
    },
    bodyLimit: 1024 * 1024,
    // Explicit timeouts: a slow client cannot hold a socket forever.
    connectionTimeout: 30_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 65_000,
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } }
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.setErrorHandler((err: FastifyError, request, reply) => {
    let status: number
    let code: string
    let message: string
    let fields: Readonly<Record<string, string>> | undefined
    if (err instanceof AppError) {
      status = err.statusCode; code = err.code; message = err.message; fields = err.fields
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
    } else if (isDatabaseUnavailableError(err)) {
      const unavailable = databaseUnavailable(err)
      status = unavailable.statusCode; code = unavailable.code; message = unavailable.message
      reply.header('retry-after', String(unavailable.retryAfterS))
    } else {
      const mapped = fastifyErrorCode(err)
      if (mapped !== undefined) {
        status = mapped.status; code = mapped.code
        message = err.validation !== undefined
          ? validationMessage(err)
          : err.message
      } else {
        status = 500; code = 'internal_error'; message = 'Internal server error'
      }
    }
    if (status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ code, status }, message)
    return reply.code(status).send({ ...fields, code, message })
  })

  app.setNotFoundHandler((request, reply) => reply.code(404).send({
    code: 'not_found', message: `Route ${request.method} ${request.url.split('?')[0]} not found`
  }))

  // The job queue (pg-boss) serves the WhatsApp → SMS fallback (docs/fallback.md), whose recording
  // hook goes to the webhook route below, and the scheduled reconciliation and retention.
  const jobs = deps.jobQueue === undefined
    ? undefined
    : createJobQueue(deps.jobQueue, { recoveryIntervalSeconds: config.fallback.recoveryIntervalSeconds, scheduleCheckIntervalSeconds: config.scheduleCheckIntervalS })
  const fallback = jobs === undefined ? undefined : createFallbackService(config, deps.db, jobs, app.log)
  if (jobs !== undefined && fallback !== undefined) {
    // pg-boss reports background failures (maintenance, polling) as events; unhandled they would crash.
    jobs.on('error', (err) => app.log.error({ err, component: 'jobs' }, 'job queue error'))
    let started = false
    app.addHook('onReady', async () => {
      await jobs.start()
      started = true
      await fallback.start()
      await startScheduledJobs({ config, db: deps.db, boss: jobs, hooks: fallback.hooks, metrics, log: app.log })
    })
    app.addHook('onClose', async () => {
      if (started) await jobs.stop({ graceful: true, timeout: 10_000 })
      started = false
    })
  }
  app.decorate('metrics', metrics)
  // The route table, for the contract test and operators: method and URL of every route.
  const routeList: Array<{ method: string, url: string }> = []
  app.decorate('routeList', routeList)
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routeList.push({ method, url: route.url })
  })

  // Graceful shutdown: requests in flight when closing begins still complete, but their keep-alive
  // connections must not hold the server open (Node closes idle ones only once, at the start).
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close')
    return payload
  })

  app.addHook('onResponse', async (request, reply) => {
    metrics.httpDuration.observe({
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status_code: String(reply.statusCode)
    }, reply.elapsedTime / 1000)
  })

  // Load shedding: a saturated process answers 503 with Retry-After at once (providers retry)
  // instead of letting requests time out.
  await app.register(underPressure, {
    maxEventLoopDelay: config.pressure.maxEventLoopDelayMs,
    maxEventLoopUtilization: config.pressure.maxEventLoopUtilization,
    maxHeapUsedBytes: config.pressure.maxHeapUsedBytes,
    sampleInterval: config.pressure.sampleIntervalMs,
    // Utilisation over the last interval: a cumulative figure since start-up hides a saturated minute.
    eventLoopUtilizationMode: 'interval',
    pressureHandler: (_request, reply, type, value) => {
      // An infinite delay means the last sample interval had no samples at all: one synchronous
      // block (start-up: PGlite's WASM, migrations) that is over, since this request is running.
      // Shedding on it would refuse the first second of traffic after every start.
      if (type === 'eventLoopDelay' && value === Infinity) return
      metrics.shed.inc({ reason: String(type) })
      reply.code(503).header('retry-after', '5').send({ code: 'overloaded', message: `Tidings is overloaded (${String(type)}); retry later` })
    }
  })

  await app.register(healthRoutes, { db: deps.db, version: pkg.version })
  await app.register(docsRoutes)
  const metricsKeys = config.metricsToken === undefined ? undefined : [{ name: 'metrics', hash: createHash('sha256').update(config.metricsToken).digest() }]
  app.get('/metrics', async (request, reply) => {
    if (metricsKeys !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
      if (m === null || matchApiKey(metricsKeys, m[1]) === undefined) {
        throw new AppError('unauthorized', 'Send METRICS_TOKEN as "Authorization: Bearer <token>"')
      }
    }
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  // Resend email events: only when a signing secret is configured (see RESEND_WEBHOOK_SECRET).
  if (config.resendWebhookSecrets.length > 0) {
    await app.register(resendWebhookRoutes, { secrets: config.resendWebhookSecrets, db: deps.db, metrics })
  }
  const batcher = new EventBatcher({ db: deps.db, hooks: fallback?.hooks, maxBatch: config.webhookBatch.max, concurrency: config.webhookBatch.concurrency })
  await app.register(twilioStatusRoutes, { config, metrics, batcher })
  const listen = deps.listen
  const hub = new EventHub({
    db: deps.db,
    log: app.log,
    listen: listen === undefined ? undefined : async (onNotify) => await listen('tidings_events', onNotify)
  })
  app.addHook('onReady', async () => { await hub.start() })
  // Before the server stops accepting: end open streams, or close would wait for them.
  app.addHook('preClose', async () => { await hub.stop() })

  await app.register(async (v1) => {
    await v1.register(apiKeyAuth, { keys: config.apiKeys })
    // Per API key, after authentication (preHandler), per process. Webhooks are outside /v1.
    await v1.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: config.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => request.apiKeyName ?? request.ip,
      errorResponseBuilder: (_request, context) => new AppError('rate_limited', `Rate limit of ${context.max} requests per minute exceeded for this API key; retry in ${context.after}`)
    })
    await v1.register(messageRoutes, { db: deps.db })
    await v1.register(sendRoutes, {
      db: deps.db,
      twilio: twilioClientsOf(config),
      statusCallbackUrl: `${config.publicBaseUrl}/webhooks/twilio/status`,
      hooks: fallback?.hooks ?? {},
      idempotencyTtlMs: config.idempotencyTtlMs,
      // One create request (plus a list on a retry) and two short transactions.
      idempotencyLeaseMs: 2 * config.twilioRequestTimeoutMs + 5_000
    })
    await v1.register(statsRoutes, { db: deps.db })
    await v1.register(streamRoutes, { hub, heartbeatMs: config.streamHeartbeatS * 1000, maxBufferBytes: config.streamMaxBufferBytes })
  }, { prefix: '/v1' })

  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    routeList: Array<{ method: string, url: string }>
  }
}
