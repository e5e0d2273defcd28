/**
 * One log line per request, written when the response has gone out: method, masked URL, status,
 * response time and whatever the route added with `addLogFields` (a callback's sid, status and
 * outcome; an error's code and message). Fastify's own "incoming request" / "request completed"
 * pair is turned off (`disableRequestLogging`): at thousands of callbacks a second, three lines a
 * callback cost a noticeable share of the CPU (docs/performance.md).
 *
 * The line is written by one logger made at start-up with a cheaper redaction
 * (`REQUEST_LINE_REDACT_PATHS`), not by `request.log`: bindings a hook adds to `request.log` are
 * therefore not on it. Add them with `addLogFields` as well (as api-key-auth.ts does for `apiKey`).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { REDACT_CENSOR, REQUEST_LINE_REDACT_PATHS } from '../logger.ts'

const FIELDS = Symbol('logFields')

interface WithFields { [FIELDS]?: Record<string, unknown> }

/** Adds fields to the request's one log line. */
export function addLogFields (request: FastifyRequest, fields: Record<string, unknown>): void {
  const r = request as FastifyRequest & WithFields
  r[FIELDS] = { ...r[FIELDS], ...fields }
}

/** Installs the one-line-per-request log on `app` (call on the root instance). */
export function installRequestLog (app: FastifyInstance): void {
  const lineLog = app.log.child({}, { redact: { paths: REQUEST_LINE_REDACT_PATHS, censor: REDACT_CENSOR } })
  app.addHook('onResponse', (request, reply, done) => {
    lineLog.info({
      reqId: request.id,
      req: request,
      res: { statusCode: reply.statusCode },
      responseTime: Math.round(reply.elapsedTime * 10) / 10,
      ...(request as FastifyRequest & WithFields)[FIELDS]
    }, 'request completed')
    done()
  })
}
