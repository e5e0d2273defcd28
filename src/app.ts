/**
 * `buildApp(config, deps)`: the whole HTTP application, with every server option, so that tests
 * (`app.inject`) and production run the same thing. `src/server.ts` only loads config, opens the
 * database, builds, listens and shuts down.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import type { DestinationStream } from 'pino'
import type { Config } from './config/config.ts'
import type { DatabaseHandle } from './db/connect.ts'
import type { Database } from './db/database.ts'
import { AppError } from './errors.ts'
import { installErrorHandler } from './http/error-handler.ts'
import { createJobQueue, type JobQueueConnection } from './fallback/queue.ts'
import { createFallbackService } from './fallback/service.ts'
import { loggerOptions } from './logger.ts'
import { startScheduledJobs } from './maintenance/scheduler.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { apiKeyAuth } from './plugins/api-key-auth.ts'
import rateLimit from '@fastify/rate-limit'
import { loadShedding } from './plugins/load-shedding.ts'
import { metricsRoutes } from './routes/metrics.ts'
import { docsRoutes } from './routes/docs.ts'
import { healthRoutes } from './routes/health.ts'
import { EventBatcher } from './ingest/batcher.ts'
import { messageRoutes } from './routes/messages.ts'
import { sendRoutes } from './routes/send.ts'
import { statsRoutes } from './routes/stats.ts'
import { twilioClientsOf } from './providers/twilio-rest.ts'
import { streamRoutes } from './routes/stream.ts'
import cookie from '@fastify/cookie'
import { consoleRoutes } from './routes/console.ts'
import { statsTimeseriesRoutes } from './routes/stats-timeseries.ts'
import { statsRollup } from './plugins/stats-rollup.ts'
import { findSession } from './db/console-sessions.ts'
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

  installErrorHandler(app)

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

  await app.register(loadShedding, { config, metrics })

  await app.register(healthRoutes, { db: deps.db, version: pkg.version })
  await app.register(docsRoutes)
  await app.register(metricsRoutes, { config, metrics })
  // The operator console (README "Console"): browser files, session login/logout, and the rollup
  // behind /v1/stats/timeseries.
  await app.register(cookie)
  await app.register(consoleRoutes, { db: deps.db, keys: config.apiKeys, publicBaseUrl: config.publicBaseUrl, sessionTtlMs: config.console.sessionTtlMs })
  await app.register(statsRollup, { db: deps.db, intervalMs: config.console.statsRefreshIntervalMs, lookbackMs: config.console.statsRefreshLookbackMs })
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
    await v1.register(apiKeyAuth, { keys: config.apiKeys, session: async (token) => (await findSession(deps.db, config.apiKeys, token))?.apiKeyName })
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
    await v1.register(statsTimeseriesRoutes, { db: deps.db })
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
