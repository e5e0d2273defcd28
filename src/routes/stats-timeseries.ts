/**
 * `GET /v1/stats/timeseries`: delivery statistics per hour or UTC day over a window, for the
 * console's charts, read from the hourly rollup (`src/db/stats-rollup.ts`, where the definitions
 * and the refresh live) plus the hours since its last refresh.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { Channel, Database } from '../db/database.ts'
import { DELIVERY_TIME_BOUNDS_S, floorHour, readTimeseriesRows, type HourRow } from '../db/stats-rollup.ts'
import { TOP_ERROR_CODES } from '../db/stats.ts'
import { twilioErrorMeaning } from '../domain/twilio-error-codes.ts'
import { AppError } from '../errors.ts'
import type { ConcurrencyLimit } from '../http/concurrency-limit.ts'
import { timeQuery } from './query-time.ts'
import { ErrorBody } from './schemas.ts'

const HOUR = 3600_000
const DAY = 24 * HOUR
/** Most buckets one request may ask for: 31 days of hours, or 366 days. */
const MAX_BUCKETS = { hour: 31 * 24, day: 366 } as const
const CHANNELS = ['sms', 'mms', 'whatsapp', 'email'] as const

const NullableNumber = Type.Union([Type.Number(), Type.Null()])
const Outcomes = {
  delivered: Type.Integer(),
  failed: Type.Integer(),
  pending: Type.Integer({ description: 'Neither delivered nor failed yet (or canceled)' })
}
const DeliveryTime = Type.Object({
  samples: Type.Integer(),
  median: NullableNumber,
  p95: NullableNumber
}, { description: 'delivered_at - sent_at in seconds, estimated from a histogram' })
const Ratio = Type.Object({ numerator: Type.Integer(), denominator: Type.Integer(), rate: NullableNumber })

export const TimeseriesBody = Type.Object({
  bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
  since: Type.String({ format: 'date-time' }),
  until: Type.String({ format: 'date-time' }),
  channel: Type.Union([Type.String(), Type.Null()]),
  refreshed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  buckets: Type.Array(Type.Object({
    start: Type.String({ format: 'date-time' }),
    total: Type.Integer(),
    ...Outcomes,
    by_channel: Type.Array(Type.Object({ channel: Type.String(), ...Outcomes })),
    delivery_rate: NullableNumber,
    read_rate: NullableNumber,
    open_rate: NullableNumber,
    delivery_time_s: DeliveryTime,
    fallbacks_sent: Type.Integer(),
    fallbacks_recovered: Type.Integer()
  })),
  summary: Type.Object({
    total: Type.Integer(),
    ...Outcomes,
    delivery_rate: Ratio,
    read_rate: Ratio,
    open_rate: Ratio,
    delivery_time_s: DeliveryTime,
    fallbacks: Type.Object({ sent: Type.Integer(), recovered: Type.Integer() }),
    top_error_codes: Type.Array(Type.Object({ error_code: Type.Union([Type.String(), Type.Null()]), meaning: Type.Union([Type.String(), Type.Null()]), count: Type.Integer() }))
  })
})

/** A histogram's q-quantile: linear within the bucket it falls in; the open last bucket gives its lower bound. */
export function histogramQuantile (counts: readonly number[], q: number): number | null {
  const n = counts.reduce((a, b) => a + b, 0)
  if (n === 0) return null
  const target = q * n
  let seen = 0
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] ?? 0
    if (c > 0 && seen + c >= target) {
      const lower = i === 0 ? 0 : DELIVERY_TIME_BOUNDS_S[i - 1]
      const upper = DELIVERY_TIME_BOUNDS_S[i] as number | undefined
      if (upper === undefined) return lower
      return Math.round((lower + (upper - lower) * ((target - seen) / c)) * 1000) / 1000
    }
    seen += c
  }
  return null
}

const ratio = (numerator: number, denominator: number): { numerator: number, denominator: number, rate: number | null } =>
  ({ numerator, denominator, rate: denominator === 0 ? null : numerator / denominator })

/** Sums of a set of rows: what one bucket (or the whole window) reports. */
class Tally {
  readonly outcomes = { delivered: 0, failed: 0, pending: 0 }
  readonly byChannel = new Map<string, { delivered: number, failed: number, pending: number }>()
  readonly histogram: number[] = new Array(DELIVERY_TIME_BOUNDS_S.length + 1).fill(0)
  waDelivered = 0
  waRead = 0
  emailDelivered = 0
  emailOpened = 0
  fallbacksSent = 0
  fallbacksRecovered = 0

  add (r: HourRow): void {
    this.outcomes[r.outcome] += r.messages
    let c = this.byChannel.get(r.channel)
    if (c === undefined) { c = { delivered: 0, failed: 0, pending: 0 }; this.byChannel.set(r.channel, c) }
    c[r.outcome] += r.messages
    if (r.latency_bucket >= 0) this.histogram[r.latency_bucket] += r.messages
    if (r.outcome === 'delivered' && r.channel === 'whatsapp') { this.waDelivered += r.messages; this.waRead += r.whatsapp_read }
    if (r.outcome === 'delivered' && r.channel === 'email') { this.emailDelivered += r.messages; this.emailOpened += r.email_opened }
    this.fallbacksSent += r.fallbacks_sent
    this.fallbacksRecovered += r.fallbacks_recovered
  }

  get total (): number { return this.outcomes.delivered + this.outcomes.failed + this.outcomes.pending }
  get deliveryRate (): ReturnType<typeof ratio> { return ratio(this.outcomes.delivered, this.outcomes.delivered + this.outcomes.failed) }
  get deliveryTime (): { samples: number, median: number | null, p95: number | null } {
    return { samples: this.histogram.reduce((a, b) => a + b, 0), median: histogramQuantile(this.histogram, 0.5), p95: histogramQuantile(this.histogram, 0.95) }
  }
}

/**
 * @param db - the read pool's handle (`readDb`): the rollup read must not take the webhooks' connections.
 * @param limit - shared with `GET /v1/stats`: how many statistics are computed at once (more wait
 *   briefly, then get 503 `overloaded`).
 */
export const statsTimeseriesRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database>, limit?: ConcurrencyLimit }> = async (app, { db, limit }) => {
  app.get('/stats/timeseries', {
    schema: {
      summary: 'Delivery statistics per hour or day, for charts',
      querystring: Type.Object({
        bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')], { description: 'Bucket size; days are UTC days' }),
        since: Type.Optional(Type.String({ format: 'date-time', description: 'Start (rounded down to the bucket); default: 7 days before until' })),
        until: Type.Optional(Type.String({ format: 'date-time', description: 'End, exclusive (rounded up to the bucket); default: the end of the current bucket' })),
        channel: Type.Optional(Type.Union(CHANNELS.map((c) => Type.Literal(c))))
      }, { additionalProperties: false }),
      response: { 200: TimeseriesBody, 400: ErrorBody, 401: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => {
    const q = request.query
    const size = q.bucket === 'day' ? DAY : HOUR
    const floor = (t: number): number => Math.floor(t / size) * size
    const ceil = (t: number): number => Math.ceil(t / size) * size
    // As strict as GET /v1/stats: a leap second or an hour-only offset is a 400, not an Invalid Date.
    const givenSince = timeQuery('since', q.since)
    const givenUntil = timeQuery('until', q.until)
    const until = new Date(givenUntil === undefined ? floor(Date.now()) + size : ceil(givenUntil.getTime()))
    const since = new Date(givenSince === undefined ? until.getTime() - 7 * DAY : floor(givenSince.getTime()))
    if (since >= until) throw new AppError('invalid_payload', 'querystring.since must be before querystring.until')
    if (until.getUTCFullYear() > 9999) throw new AppError('invalid_payload', 'querystring.until, rounded up to the bucket, must stay before the year 10000')
    const count = (until.getTime() - since.getTime()) / size
    if (count > MAX_BUCKETS[q.bucket]) {
      throw new AppError('invalid_payload', `querystring.since..until spans ${count} ${q.bucket}s; ask for at most ${MAX_BUCKETS[q.bucket]} (use bucket=day for long windows)`)
    }
    const read = async (): ReturnType<typeof readTimeseriesRows> => await readTimeseriesRows(db, floorHour(since), until, q.channel as Channel | undefined)
    const rows = limit === undefined ? await read() : await limit.run(read)

    const tallies = Array.from({ length: count }, () => new Tally())
    const all = new Tally()
    for (const r of rows.hours) {
      const i = Math.floor((floor(new Date(r.hour).getTime()) - since.getTime()) / size)
      tallies[i]?.add(r)
      all.add(r)
    }
    const errors = new Map<string, number>()
    for (const e of rows.errors) errors.set(e.error_code, (errors.get(e.error_code) ?? 0) + e.messages)
    const top = [...errors].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, TOP_ERROR_CODES)

    return {
      bucket: q.bucket,
      since: since.toISOString(),
      until: until.toISOString(),
      channel: q.channel ?? null,
      refreshed_at: rows.refreshedAt?.toISOString() ?? null,
      buckets: tallies.map((t, i) => ({
        start: new Date(since.getTime() + i * size).toISOString(),
        total: t.total,
        ...t.outcomes,
        by_channel: [...t.byChannel].map(([channel, o]) => ({ channel, ...o })).sort((a, b) => a.channel.localeCompare(b.channel)),
        delivery_rate: t.deliveryRate.rate,
        read_rate: ratio(t.waRead, t.waDelivered).rate,
        open_rate: ratio(t.emailOpened, t.emailDelivered).rate,
        delivery_time_s: t.deliveryTime,
        fallbacks_sent: t.fallbacksSent,
        fallbacks_recovered: t.fallbacksRecovered
      })),
      summary: {
        total: all.total,
        ...all.outcomes,
        delivery_rate: all.deliveryRate,
        read_rate: ratio(all.waRead, all.waDelivered),
        open_rate: ratio(all.emailOpened, all.emailDelivered),
        delivery_time_s: all.deliveryTime,
        fallbacks: { sent: all.fallbacksSent, recovered: all.fallbacksRecovered },
        top_error_codes: top.map(([code, n]) => ({ error_code: code === '' ? null : code, meaning: twilioErrorMeaning(code === '' ? null : code), count: n }))
      }
    }
  })
}
