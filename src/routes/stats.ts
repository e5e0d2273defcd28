/**
 * `GET /v1/stats`: delivery statistics computed in PostgreSQL (`src/db/stats.ts`, where every rate
 * is defined), with the meaning of each Twilio error code where Tidings knows it.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { Channel, Database } from '../db/database.ts'
import { computeStats } from '../db/stats.ts'
import { twilioErrorMeaning } from '../domain/twilio-error-codes.ts'
import { AppError } from '../errors.ts'
import { timeQuery } from './query-time.ts'
import type { ConcurrencyLimit } from '../http/concurrency-limit.ts'
import { ErrorBody } from './schemas.ts'

const Nullable = <T extends ReturnType<typeof Type.String | typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()])
const Ratio = Type.Object({
  numerator: Type.Integer(),
  denominator: Type.Integer(),
  rate: Nullable(Type.Number({ description: 'numerator / denominator; null when the denominator is 0' }))
})

export const StatsBody = Type.Object({
  since: Nullable(Type.String({ format: 'date-time' })),
  until: Nullable(Type.String({ format: 'date-time' })),
  channel: Nullable(Type.String()),
  total: Type.Integer(),
  by_status: Type.Array(Type.Object({ status: Nullable(Type.String()), count: Type.Integer() })),
  delivery_rate: Ratio,
  read_rate: Ratio,
  open_rate: Ratio,
  click_rate: Ratio,
  failures_by_error_code: Type.Array(Type.Object({ error_code: Nullable(Type.String()), count: Type.Integer(), meaning: Nullable(Type.String()) })),
  fallbacks: Type.Array(Type.Object({ state: Type.String(), reason: Nullable(Type.String()), count: Type.Integer() })),
  delivery_time_s: Type.Object({ samples: Type.Integer(), median: Nullable(Type.Number()), p95: Nullable(Type.Number()) })
})

/** `limit`: how many stats are computed at once (more wait briefly, then get 503 `overloaded`). */
export const statsRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database>, limit?: ConcurrencyLimit }> = async (app, { db, limit }) => {
  app.get('/stats', {
    schema: {
      summary: 'Delivery statistics',
      querystring: Type.Object({
        since: Type.Optional(Type.String({ format: 'date-time', description: 'Messages created at or after (ISO 8601)' })),
        until: Type.Optional(Type.String({ format: 'date-time', description: 'Messages created before (ISO 8601)' })),
        channel: Type.Optional(Type.Union(['sms', 'mms', 'whatsapp', 'email'].map((c) => Type.Literal(c))))
      }, { additionalProperties: false }),
      response: { 200: StatsBody, 400: ErrorBody, 401: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => {
    const q = request.query
    const since = timeQuery('since', q.since)
    const until = timeQuery('until', q.until)
    if (since !== undefined && until !== undefined && since.getTime() >= until.getTime()) {
      throw new AppError('invalid_payload', 'querystring.since must be before querystring.until')
    }
    const filter = { since, until, channel: q.channel as Channel | undefined }
    const s = limit === undefined ? await computeStats(db, filter) : await limit.run(async () => await computeStats(db, filter))
    return {
      since: since?.toISOString() ?? null,
      until: until?.toISOString() ?? null,
      channel: q.channel ?? null,
      total: s.total,
      by_status: s.byStatus,
      delivery_rate: s.delivery,
      read_rate: s.read,
      open_rate: s.open,
      click_rate: s.click,
      failures_by_error_code: s.failuresByErrorCode.map((f) => ({ error_code: f.errorCode, count: f.count, meaning: twilioErrorMeaning(f.errorCode) })),
      fallbacks: s.fallbacks,
      delivery_time_s: { samples: s.deliveryTime.samples, median: s.deliveryTime.medianS, p95: s.deliveryTime.p95S }
    }
  })
}
