/**
 * One log line per request, written when the response has gone out: method, masked URL, status,
 * response time and whatever the route added with `addLogFields` (a callback's sid, status and
 * outcome; an error's code and message). Fastify's own "incoming request" / "request completed"
 * pair is turned off (`disableRequestLogging`): at thousands of callbacks a second, three lines a
 * callback cost a noticeable share of the CPU (docs/performance.md).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'

const FIELDS = Symbol('logFields')

interface WithFields { [FIELDS]?: Record<string, unknown> }

/** Adds fields to the request's one log line. */
export function addLogFields (request: FastifyRequest, fields: Record<string, unknown>): void {
  const r = request as FastifyRequest & WithFields
  r[FIELDS] = { ...r[FIELDS], ...fields }
}

/** Installs the one-line-per-request log on `app` (call on the root instance). */
export function installRequestLog (app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({
      req: request,
      res: { statusCode: reply.statusCode },
      responseTime: Math.round(reply.elapsedTime * 10) / 10,
      ...(request as FastifyRequest & WithFields)[FIELDS]
    }, 'request completed')
  })
}
