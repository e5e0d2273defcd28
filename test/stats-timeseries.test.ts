import t from 'tap'
import type { Kysely } from 'kysely'
import type { Database } from '../src/db/database.ts'
import { refreshStatsRollup } from '../src/db/stats-rollup.ts'
import { histogramQuantile } from '../src/routes/stats-timeseries.ts'
import { apiGet, buildTestApp } from './helpers/app.ts'
import { insertStoredMessage } from './helpers/seed.ts'

const DAY1 = '2026-11-01T10:15:00.000Z'
const DAY2 = '2026-11-02T22:40:00.000Z'
const at = (base: string, seconds: number): Date => new Date(Date.parse(base) + seconds * 1000)
// The rollup's automatic refresh is off: each test decides when the rollup is refreshed.
const NO_TIMER = { CONSOLE_STATS_REFRESH_INTERVAL: '0' }

const seed = insertStoredMessage

/** Day 1: SMS. Day 2: WhatsApp with a fallback whose SMS was delivered, and email. */
async function seedTwoDays (db: Kysely<Database>): Promise<void> {
  for (const s of [10, 20, 30, 40]) await seed(db, { channel: 'sms', status: 'delivered', created_at: DAY1, sent_at: at(DAY1, 0), delivered_at: at(DAY1, s) })
  for (let i = 0; i < 2; i++) await seed(db, { channel: 'sms', status: 'undelivered', error_code: '30003', created_at: DAY1 })
  await seed(db, { channel: 'sms', status: 'sent', created_at: DAY1, sent_at: at(DAY1, 0) })
  await seed(db, { channel: 'whatsapp', status: 'read', created_at: DAY2 })
  await seed(db, { channel: 'whatsapp', status: 'delivered', created_at: DAY2 })
  const wa = await seed(db, { channel: 'whatsapp', status: 'failed', error_code: '63016', created_at: DAY2 })
  const sms = await seed(db, { channel: 'sms', status: 'delivered', created_at: DAY2, fallback_of: wa })
  await db.insertInto('fallbacks').values({ original_sid: wa, state: 'sent', reason: null, trigger_error_code: '63016', to_address: null, sms_from: null, messaging_service_sid: null, fallback_sid: sms, error_code: null, error_message: null, attempt_started_at: null, lease_until: null, job_id: null }).execute()
  await seed(db, { channel: 'email', status: 'email.delivered', created_at: DAY2, open_count: 2 })
  await seed(db, { channel: 'email', status: 'email.delivered', created_at: DAY2 })
  await seed(db, { channel: 'email', status: 'email.bounced', error_code: 'Permanent/General', created_at: DAY2 })
}

const WINDOW = 'since=2026-11-01T00:00:00Z&until=2026-11-03T00:00:00Z'

t.test('GET /v1/stats/timeseries counts each day by outcome and channel, with rates, delivery times, fallbacks and top errors', async (t) => {
  const { app, db } = await buildTestApp(t, NO_TIMER)
  await seedTwoDays(db)

  // Before any refresh every hour is computed from messages; after it, from the rollup: same answer.
  const live = await apiGet(app, `/v1/stats/timeseries?bucket=day&${WINDOW}`)
  t.equal(live.statusCode, 200, live.body)
  t.equal(live.json().refreshed_at, null)
  t.ok(await refreshStatsRollup(db, { lookbackMs: 3600_000, now: new Date('2026-11-05T00:00:00Z') }) >= 48)
  const rolled = await apiGet(app, `/v1/stats/timeseries?bucket=day&${WINDOW}`)
  const body = rolled.json()
  t.equal(body.refreshed_at, '2026-11-05T00:00:00.000Z')
  t.same({ ...body, refreshed_at: null }, live.json(), 'the rollup answers what the messages answer')

  t.equal(body.since, '2026-11-01T00:00:00.000Z')
  t.equal(body.until, '2026-11-03T00:00:00.000Z')
  const [d1, d2] = body.buckets
  t.match(d1, { start: '2026-11-01T00:00:00.000Z', total: 7, delivered: 4, failed: 2, pending: 1, by_channel: [{ channel: 'sms', delivered: 4, failed: 2, pending: 1 }] })
  t.equal(d1.delivery_rate, 4 / 6)
  t.equal(d1.delivery_time_s.samples, 4)
  t.equal(d1.delivery_time_s.median, 30, 'median of 10, 20, 30, 40 s: the second sample falls in the [20, 30) bucket, read at its upper end (exact: 25)')
  t.match(d2, {
    start: '2026-11-02T00:00:00.000Z',
    total: 7,
    delivered: 5,
    failed: 2,
    pending: 0,
    by_channel: [
      { channel: 'email', delivered: 2, failed: 1, pending: 0 },
      { channel: 'sms', delivered: 1, failed: 0, pending: 0 },
      { channel: 'whatsapp', delivered: 2, failed: 1, pending: 0 }
    ],
    read_rate: 0.5,
    open_rate: 0.5,
    fallbacks_sent: 1,
    fallbacks_recovered: 1
  })
  t.match(body.summary, {
    total: 14,
    delivered: 9,
    failed: 4,
    pending: 1,
    delivery_rate: { numerator: 9, denominator: 13 },
    read_rate: { numerator: 1, denominator: 2, rate: 0.5 },
    open_rate: { numerator: 1, denominator: 2, rate: 0.5 },
    fallbacks: { sent: 1, recovered: 1 }
  })
  t.same(body.summary.top_error_codes, [
    { error_code: '30003', meaning: 'Unreachable destination handset', count: 2 },
    { error_code: '63016', meaning: 'WhatsApp: free-form message outside the 24-hour window (use a template)', count: 1 },
    { error_code: 'Permanent/General', meaning: null, count: 1 }
  ])

  // The counts agree with GET /v1/stats over the same window.
  const stats = (await apiGet(app, `/v1/stats?${WINDOW}`)).json()
  t.equal(stats.total, body.summary.total)
  t.same(stats.delivery_rate, body.summary.delivery_rate)

  t.test('hourly buckets, empty ones included, and one channel', async (t) => {
    const res = await apiGet(app, '/v1/stats/timeseries?bucket=hour&since=2026-11-02T21:00:00Z&until=2026-11-03T00:00:00Z&channel=whatsapp')
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json().buckets.map((b: { total: number }) => b.total), [0, 2 + 1, 0])
    t.equal(res.json().channel, 'whatsapp')
  })
})

t.test('the rollup follows a status that changes after a refresh, within the lookback', async (t) => {
  const { app, db } = await buildTestApp(t, NO_TIMER)
  const recent = new Date(Date.now() - 5 * 3600_000).toISOString()
  const sid = await seed(db, { channel: 'sms', status: 'sent', created_at: recent })
  await refreshStatsRollup(db, { lookbackMs: 24 * 3600_000 })
  const before = (await apiGet(app, '/v1/stats/timeseries?bucket=day')).json()
  t.match(before.summary, { total: 1, pending: 1, delivered: 0 })
  await db.updateTable('messages').set({ status: 'delivered' }).where('sid', '=', sid).execute()
  await refreshStatsRollup(db, { lookbackMs: 24 * 3600_000 })
  const after = (await apiGet(app, '/v1/stats/timeseries?bucket=day')).json()
  t.match(after.summary, { total: 1, pending: 0, delivered: 1 })
  t.equal(after.buckets.length, 7, 'the default window is the last 7 days')
})

t.test('GET /v1/stats/timeseries refuses a window it cannot answer with a 400 that says why', async (t) => {
  const { app } = await buildTestApp(t, NO_TIMER)
  const cases: Array<[string, RegExp]> = [
    ['/v1/stats/timeseries', /bucket/],
    ['/v1/stats/timeseries?bucket=week', /bucket/],
    ['/v1/stats/timeseries?bucket=hour&since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z', /since must be before/],
    ['/v1/stats/timeseries?bucket=hour&since=2026-01-01T00:00:00Z&until=2026-11-01T00:00:00Z', /at most 744/],
    ['/v1/stats/timeseries?bucket=day&since=yesterday', /since/],
    // As strict as GET /v1/stats (src/routes/query-time.ts): these were Invalid Dates.
    ['/v1/stats/timeseries?bucket=day&since=2016-12-31T23:59:60Z', /querystring\.since/],
    ['/v1/stats/timeseries?bucket=day&until=2024-01-01T00:00:00%2B05', /querystring\.until/],
    ['/v1/stats/timeseries?bucket=day&until=9999-12-31T12:00:00Z', /year 10000/]
  ]
  for (const [url, message] of cases) {
    const res = await apiGet(app, url)
    t.equal(res.statusCode, 400, url)
    t.equal(res.json().code, 'invalid_payload')
    t.match(res.json().message, message, url)
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/stats/timeseries?bucket=day' })).statusCode, 401)
})

t.test('histogramQuantile interpolates within a bucket and reports the open last bucket by its lower bound', async (t) => {
  t.equal(histogramQuantile([], 0.5), null)
  t.equal(histogramQuantile([0, 0, 4], 0.5), 2.5, 'four samples in [2, 3): the median is half-way')
  const last = new Array(23).fill(0); last[22] = 1
  t.equal(histogramQuantile(last, 0.95), 86400)
})

t.test('GET /v1/stats/timeseries shares GET /v1/stats\' limit: beyond STATS_MAX_CONCURRENT, with no wait, 503 overloaded', async (t) => {
  const { app } = await buildTestApp(t, { ...NO_TIMER, STATS_MAX_CONCURRENT: '1', STATS_MAX_WAIT: '0' })
  const answers = await Promise.all(Array.from({ length: 12 }, async (_, i) =>
    await apiGet(app, i % 2 === 0 ? `/v1/stats/timeseries?bucket=hour&${WINDOW}` : '/v1/stats')))
  t.ok(answers.every((r) => r.statusCode === 200 || (r.statusCode === 503 && r.json().code === 'overloaded')), 'each answers 200 or 503 overloaded')
  t.ok(answers.some((r) => r.statusCode === 503), 'one slot for both routes: some were refused')
  t.ok(answers.some((r) => r.statusCode === 200), 'and some answered')
})
