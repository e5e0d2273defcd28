/**
 * `buildApp(config, deps)`: the whole HTTP application, with every server option, so that tests
 * (`app.inject`) and production run the same thing. `src/server.ts` only loads config, opens the
 * database, builds, listens and shuts down.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import type { DestinationStream } from 'pino'
import type { Config } from './config/config.ts'
import type { DatabaseHandle } from './db/connect.ts'
import type { Database } from './db/database.ts'
import { AppError } from './errors.ts'
import { installErrorHandler } from './http/error-handler.ts'
import { installRequestLog } from './http/request-log.ts'
import { createJobQueue, jobQueueErrorLogger, type JobQueueConnection } from './fallback/queue.ts'
import { ConcurrencyLimit } from './http/concurrency-limit.ts'
import { createFallbackService } from './fallback/service.ts'
import { loggerOptions, stdoutLogStream } from './logger.ts'
import { startScheduledJobs } from './maintenance/scheduler.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { apiKeyAuth } from './plugins/api-key-auth.ts'
import rateLimit from '@fastify/rate-limit'
import { loadShedding } from './plugins/load-shedding.ts'
import { storableBody } from './plugins/storable-body.ts'
import { metricsRoutes } from './routes/metrics.ts'
import { createWebhooksOut } from './delivery/service.ts'
import { subscriptionRoutes } from './routes/subscriptions.ts'
import { docsRoutes } from './routes/docs.ts'
import { healthRoutes } from './routes/health.ts'
import { createRecorder, type Recorder } from './ingest/recorder.ts'
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
import { resendWebhookOffRoute } from './webhooks/resend-off.ts'
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
  /**
   * Where reads that must not take the webhooks' connections run (`DatabaseHandle.readDb`): the
   * `/v1` reads, stats, the stream, `/metrics` figures. Default `db`.
   */
  readDb?: Kysely<Database>
  /** The read pool's state for `/metrics` (`DatabaseHandle.readPoolStats`). */
  readPoolStats?: DatabaseHandle['readPoolStats']
}

/**
 * Builds the Fastify app. Does not listen and does not migrate.
 * @param config - validated configuration (`loadConfig`).
 * @param deps - the open database and, optionally, a metrics registry.
 */
export async function buildApp (config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const readDb = deps.readDb ?? deps.db
  const metrics = deps.metrics ?? createMetrics(deps.poolStats, readDb, { cacheMs: config.resilience.metricsDatabaseCacheMs, readPoolStats: deps.readPoolStats })
  const app = Fastify({
    logger: { ...loggerOptions(config.logLevel), stream: deps.logStream ?? stdoutLogStream() },
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
    // One line per request instead of two (src/http/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } }
  }).withTypeProvider<TypeBoxTypeProvider>()

  installErrorHandler(app)
  installRequestLog(app)

  // The job queue (pg-boss) serves the WhatsApp → SMS fallback (docs/fallback.md), whose recording
  // hook goes to the webhook route below, and the scheduled reconciliation and retention.
  const jobs = deps.jobQueue === undefined
    ? undefined
    : createJobQueue(deps.jobQueue, { recoveryIntervalSeconds: config.fallback.recoveryIntervalSeconds, scheduleCheckIntervalSeconds: config.scheduleCheckIntervalS })
  const fallback = jobs === undefined ? undefined : createFallbackService(config, deps.db, jobs, app.log)
  // The one recorder: every path that records events goes through it, with every hook.
  const recorder = createRecorder({ db: deps.db, metrics, maxBatch: config.webhookBatch.max, concurrency: config.webhookBatch.concurrency })
  if (fallback !== undefined) recorder.use(fallback.hooks)
  // Outbound status webhooks (docs/webhooks-out.md), on when WEBHOOK_SECRETS_KEY is set: its hook
  // writes the deliveries of every recorded batch in the recording transaction.
  const webhooksOut = config.webhooksOut.secretsKeys.length === 0 ? undefined : createWebhooksOut({ config: config.webhooksOut, db: deps.db, log: app.log, metrics, listen: deps.listen, ingestBacklog: () => recorder.batcher.queued })
  if (webhooksOut !== undefined) {
    recorder.use(webhooksOut.hooks)
    app.addHook('onReady', async () => { await webhooksOut.start() })
    app.addHook('preClose', async () => { await webhooksOut.stop() })
  }
  app.decorate('recorder', recorder)
  if (jobs !== undefined && fallback !== undefined) {
    // pg-boss reports background failures (maintenance, polling) as events; unhandled they would crash.
    jobs.on('error', jobQueueErrorLogger(app.log))
    let started = false
    app.addHook('onReady', async () => {
      await jobs.start()
      started = true
      await fallback.start(recorder)
      await startScheduledJobs({ config, db: deps.db, boss: jobs, recorder, metrics, log: app.log })
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
  // Callback-style hooks on every request: no promise per request for a synchronous step.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })

  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpDuration.observe({
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status_code: String(reply.statusCode)
    }, reply.elapsedTime / 1000)
    done()
  })

  await app.register(loadShedding, { config, metrics, recorderBacklog: () => recorder.batcher.queued })

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
    await app.register(resendWebhookRoutes, { secrets: config.resendWebhookSecrets, db: deps.db, recorder, metrics, bodyLimit: config.limits.resendMaxBodyBytes })
  } else {
    await app.register(resendWebhookOffRoute)
  }
  await app.register(twilioStatusRoutes, { config, metrics, recorder })
  const listen = deps.listen
  const hub = new EventHub({
    db: readDb,
    log: app.log,
    listen: listen === undefined ? undefined : async (onNotify) => await listen('tidings_events', onNotify)
  })
  app.addHook('onReady', async () => { await hub.start() })
  // Before the server stops accepting: end open streams, or close would wait for them.
  app.addHook('preClose', async () => { await hub.stop() })

  // Heavy reads queue here, not on the database's connections (docs/reliability.md).
  const statsLimit = new ConcurrencyLimit({ max: config.resilience.statsMaxConcurrent, maxWaitMs: config.resilience.statsMaxWaitMs, what: 'statistics requests' })
  await app.register(async (v1) => {
    await v1.register(apiKeyAuth, { keys: config.apiKeys, session: async (token) => (await findSession(readDb, config.apiKeys, token))?.apiKeyName })
    await v1.register(storableBody, { metrics })
    // Per API key, after authentication (preHandler), per process. Webhooks are outside /v1.
    await v1.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: config.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => request.apiKeyName ?? request.ip,
      errorResponseBuilder: (_request, context) => new AppError('rate_limited', `Rate limit of ${context.max} requests per minute exceeded for this API key; retry in ${context.after}`)
    })
    await v1.register(messageRoutes, { db: readDb })
    await v1.register(sendRoutes, {
      db: deps.db,
      twilio: twilioClientsOf(config),
      statusCallbackUrl: `${config.publicBaseUrl}/webhooks/twilio/status`,
      recorder,
      idempotencyTtlMs: config.idempotencyTtlMs,
      // One create request (plus a list on a retry) and two short transactions.
      idempotencyLeaseMs: 2 * config.twilioRequestTimeoutMs + 5_000
    })
    await v1.register(statsRoutes, { db: readDb, limit: statsLimit })
    await v1.register(statsTimeseriesRoutes, { db: readDb, limit: statsLimit })
    await v1.register(streamRoutes, { hub, heartbeatMs: config.streamHeartbeatS * 1000, maxBufferBytes: config.streamMaxBufferBytes, streamsPerKey: config.limits.streamsPerKey })
    await v1.register(subscriptionRoutes, { db: deps.db, readDb, config: config.webhooksOut })
  }, { prefix: '/v1' })

  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    /** The app's one recorder (`src/ingest/recorder.ts`). */
    recorder: Recorder
    routeList: Array<{ method: string, url: string }>
  }
}
