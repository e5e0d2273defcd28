/**
 * `buildApp(config, deps)`: the whole HTTP application, with every server option, so that tests
 * (`app.inject`) and production run the same thing. `src/server.ts` only loads config, opens the
 * database, builds, listens and shuts down.
 */
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import type { Config } from './config/config.ts'
import type { Database } from './db/database.ts'
import { isDatabaseUnavailableError } from './db/errors.ts'
import { AppError, databaseUnavailable } from './errors.ts'
import type { JobQueueConnection } from './fallback/queue.ts'
import { createFallbackService } from './fallback/service.ts'
import { loggerOptions } from './logger.ts'
import { createMetrics, type Metrics } from './metrics.ts'
import { apiKeyAuth } from './plugins/api-key-auth.ts'
import { healthRoutes } from './routes/health.ts'
import { messageRoutes } from './routes/messages.ts'
import { twilioStatusRoutes } from './webhooks/twilio-status.ts'
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

/**
 * Builds the Fastify app. Does not listen and does not migrate.
 * @param config - validated configuration (`loadConfig`).
 * @param deps - the open database and, optionally, a metrics registry.
 */
export async function buildApp (config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const metrics = deps.metrics ?? createMetrics()
  const app = Fastify({
    logger: loggerOptions(config.logLevel),
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID()
    },
    requestIdLogLabel: 'reqId',
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
    if (err instanceof AppError) {
      status = err.statusCode; code = err.code; message = err.message
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
          ? `${err.validationContext ?? 'request'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? 'is invalid'}`.replace(/\//g, '.')
          : err.message
      } else {
        status = 500; code = 'internal_error'; message = 'Internal server error'
      }
    }
    if (status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ code, status }, message)
    return reply.code(status).send({ code, message })
  })

  app.setNotFoundHandler((request, reply) => reply.code(404).send({
    code: 'not_found', message: `Route ${request.method} ${request.url.split('?')[0]} not found`
  }))

  // WhatsApp → SMS fallback (docs/fallback.md): its recording hook goes to the webhook route below.
  const fallback = deps.jobQueue === undefined ? undefined : createFallbackService(config, deps.db, deps.jobQueue, app.log)
  if (fallback !== undefined) {
    app.addHook('onReady', fallback.start)
    app.addHook('onClose', fallback.stop)
  }
  app.decorate('metrics', metrics)

  await app.register(healthRoutes, { db: deps.db, version: pkg.version })
  app.get('/metrics', async (_request, reply) => {
    return await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  await app.register(twilioStatusRoutes, { config, db: deps.db, metrics, hooks: fallback?.hooks })
  await app.register(async (v1) => {
    await v1.register(apiKeyAuth, { keys: config.apiKeys })
    await v1.register(messageRoutes, { db: deps.db })
  }, { prefix: '/v1' })

  return app
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}
