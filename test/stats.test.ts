import t from 'tap'
import { apiGet, buildTestApp } from './helpers/app.ts'
import { insertStoredMessage } from './helpers/seed.ts'

const DAY1 = '2026-11-01T10:00:00.000Z'
const DAY2 = '2026-11-02T10:00:00.000Z'
const at = (base: string, seconds: number): Date => new Date(Date.parse(base) + seconds * 1000)

const seed = insertStoredMessage

t.test('GET /v1/stats on a seeded set gives exact counts, rates, codes, fallbacks and delivery times', async (t) => {
  const { app, db } = await buildTestApp(t)
  // Day 1: 4 SMS delivered in 10, 20, 30, 40 s; 2 SMS undelivered 30003, 1 failed 21610; 1 SMS sent.
  for (const s of [10, 20, 30, 40]) await seed(db, { channel: 'sms', status: 'delivered', created_at: DAY1, sent_at: at(DAY1, 0), delivered_at: at(DAY1, s) })
  for (let i = 0; i < 2; i++) await seed(db, { channel: 'sms', status: 'undelivered', error_code: '30003', created_at: DAY1 })
  await seed(db, { channel: 'sms', status: 'failed', error_code: '21610', created_at: DAY1 })
  await seed(db, { channel: 'sms', status: 'sent', created_at: DAY1, sent_at: at(DAY1, 0) })
  // A delivered that arrived before its sent gives no delivery-time sample.
  await seed(db, { channel: 'sms', status: 'delivered', created_at: DAY1, sent_at: at(DAY1, 50), delivered_at: at(DAY1, 5) })
  // Day 2: WhatsApp: 2 read, 1 delivered (100 s), 2 failed 63016 (one with a fallback sent, one skipped), 1 failed 99999.
  for (let i = 0; i < 2; i++) await seed(db, { channel: 'whatsapp', status: 'read', created_at: DAY2 })
  await seed(db, { channel: 'whatsapp', status: 'delivered', created_at: DAY2, sent_at: at(DAY2, 0), delivered_at: at(DAY2, 100) })
  const wa1 = await seed(db, { channel: 'whatsapp', status: 'failed', error_code: '63016', created_at: DAY2 })
  const wa2 = await seed(db, { channel: 'whatsapp', status: 'failed', error_code: '63016', created_at: DAY2 })
  await seed(db, { channel: 'whatsapp', status: 'failed', error_code: '99999', created_at: DAY2 })
  await db.insertInto('fallbacks').values([
    { original_sid: wa1, state: 'sent', reason: null, trigger_error_code: '63016', to_address: null, sms_from: null, messaging_service_sid: null, fallback_sid: null, error_code: null, error_message: null, attempt_started_at: null, lease_until: null, job_id: null },
    { original_sid: wa2, state: 'skipped', reason: 'recipient_limit', trigger_error_code: '63016', to_address: null, sms_from: null, messaging_service_sid: null, fallback_sid: null, error_code: null, error_message: null, attempt_started_at: null, lease_until: null, job_id: null }
  ]).execute()
  // Day 2: emails: 3 delivered (2 opened, 1 clicked), 1 complained (opened), 1 bounced, 1 sent.
  await seed(db, { channel: 'email', status: 'email.delivered', created_at: DAY2, open_count: 2, click_count: 1 })
  await seed(db, { channel: 'email', status: 'email.delivered', created_at: DAY2, open_count: 1 })
  await seed(db, { channel: 'email', status: 'email.delivered', created_at: DAY2 })
  await seed(db, { channel: 'email', status: 'email.complained', created_at: DAY2, open_count: 1 })
  await seed(db, { channel: 'email', status: 'email.bounced', error_code: 'Permanent/General', created_at: DAY2 })
  await seed(db, { channel: 'email', status: 'email.sent', created_at: DAY2 })

  t.test('the whole range', async (t) => {
    const res = await apiGet(app, '/v1/stats')
    t.equal(res.statusCode, 200)
    const s = res.json()
    t.equal(s.total, 21)
    t.same(Object.fromEntries(s.by_status.map((b: { status: string, count: number }) => [b.status, b.count])), {
      delivered: 6, failed: 4, undelivered: 2, sent: 1, read: 2, 'email.delivered': 3, 'email.complained': 1, 'email.bounced': 1, 'email.sent': 1
    })
    // delivered: 5 SMS + 3 WhatsApp + 4 email = 12; failed: 3 SMS + 3 WhatsApp + 1 email = 7.
    t.same(s.delivery_rate, { numerator: 12, denominator: 19, rate: 12 / 19 })
    t.same(s.read_rate, { numerator: 2, denominator: 3, rate: 2 / 3 })
    t.same(s.open_rate, { numerator: 3, denominator: 4, rate: 0.75 })
    t.same(s.click_rate, { numerator: 1, denominator: 4, rate: 0.25 })
    t.same(s.failures_by_error_code, [
      { error_code: '30003', count: 2, meaning: 'Unreachable destination handset' },
      { error_code: '63016', count: 2, meaning: 'WhatsApp: free-form message outside the 24-hour window (use a template)' },
      { error_code: '21610', count: 1, meaning: 'Recipient has unsubscribed (replied STOP)' },
      { error_code: '99999', count: 1, meaning: null },
      { error_code: 'Permanent/General', count: 1, meaning: null }
    ])
    t.same(s.fallbacks, [{ state: 'sent', reason: null, count: 1 }, { state: 'skipped', reason: 'recipient_limit', count: 1 }])
    // Samples 10, 20, 30, 40, 100: median 30; p95 = 40 + 0.8 * (100 - 40) = 88.
    t.same(s.delivery_time_s, { samples: 5, median: 30, p95: 88 })
  })

  t.test('a window and a channel', async (t) => {
    const day1 = (await apiGet(app, '/v1/stats?since=2026-11-01T00:00:00Z&until=2026-11-02T00:00:00Z')).json()
    t.equal(day1.total, 9)
    t.same(day1.delivery_rate, { numerator: 5, denominator: 8, rate: 5 / 8 })
    t.same(day1.read_rate, { numerator: 0, denominator: 0, rate: null })
    t.same(day1.delivery_time_s, { samples: 4, median: 25, p95: 38.5 })
    t.same(day1.fallbacks, [])
    const wa = (await apiGet(app, '/v1/stats?channel=whatsapp')).json()
    t.equal(wa.total, 6)
    t.equal(wa.channel, 'whatsapp')
    t.same(wa.delivery_rate, { numerator: 3, denominator: 6, rate: 0.5 })
    t.same(wa.open_rate, { numerator: 0, denominator: 0, rate: null })
    t.same(wa.delivery_time_s, { samples: 1, median: 100, p95: 100 })
    const empty = (await apiGet(app, '/v1/stats?since=2030-01-01T00:00:00Z')).json()
    t.same(empty.delivery_time_s, { samples: 0, median: null, p95: null })
    t.equal(empty.total, 0)
  })

  t.test('400 when since is not before until, or a parameter is unknown', async (t) => {
    const res = await apiGet(app, '/v1/stats?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z')
    t.equal(res.statusCode, 400)
    t.match(res.json(), { code: 'invalid_payload', message: /since/ })
    t.equal((await apiGet(app, '/v1/stats?channel=fax')).statusCode, 400)
    t.equal((await apiGet(app, '/v1/stats?sinse=2026-11-01T00:00:00Z')).statusCode, 400)
  })
})
