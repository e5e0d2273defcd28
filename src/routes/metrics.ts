/** `GET /metrics`: Prometheus text format, behind `METRICS_TOKEN` when it is set. */
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { AppError } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { matchApiKey } from '../plugins/api-key-auth.ts'

export async function metricsRoutes (app: FastifyInstance, opts: { config: Config, metrics: Metrics }): Promise<void> {
  const { config, metrics } = opts
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
}
