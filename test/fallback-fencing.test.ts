import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { API_KEY, contractChecker, postCallback } from './helpers/app.ts'
import { proxiedDatabase, startCutProxy } from './helpers/cut-proxy.ts'
import { createTestDatabase } from './helpers/database.ts'
import { fallbackEnv, randomNumber, sleep, storeWhatsAppMessage, waitForFallback, whatsappCallback, SMS_FROM } from './helpers/fallback.ts'

const TEXT = 'Your order has shipped'

interface Tap { teardown: (fn: () => unknown) => void }

/** The fallback app whose own database connections go through a proxy the test can cut (pg-boss connects directly). */
async function setup (t: Tap, env: Record<string, string> = {}) {
  const checkContract = contractChecker(t)
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const { db, url, handle } = await createTestDatabase(t)
  const proxy = await startCutProxy(url)
  t.teardown(async () => { await proxy.close() })
  const proxied = proxiedDatabase(proxy.url)
  t.teardown(async () => { await proxied.close() })
  const config = loadConfig(fallbackEnv(fake.url, { FALLBACK_MAX_ATTEMPTS: '12', ...env }))
  const app = await buildApp(config, { db: proxied.db, jobQueue: { connectionString: url }, listen: handle.listen })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  await app.ready()
  return { app, db, fake, proxy }
}

t.test('fallback worker: a refused database connection while recording the SMS it just sent does not send a second SMS', async (t) => {
  const { app, db, fake, proxy } = await setup(t)
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  // The moment Twilio accepts the SMS, the database refuses connections for a while.
  fake.onAccepted(async () => { fake.onAccepted(null); proxy.refuse(400).catch(() => {}) })
  const res = await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode: '63016' }))
  t.equal(res.statusCode, 200)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'], 60_000)
  t.equal(fallback.state, 'sent')
  await sleep(1500)
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, 'exactly one SMS reached Twilio')
  t.equal(fallback.fallback_sid, sms[0]?.sid, 'and it is the one recorded')
  t.ok(fake.requests.some((r) => r.method === 'GET' && r.query.To === to && r.query.From === SMS_FROM && r.query['DateSent>'] === undefined),
    'looked for it by To and From, without DateSent (still queued, it has none)')
})

t.test('PUT /v1/messages/:sid with fallback:false after the WhatsApp failure was recorded: no SMS (skipped/opted_out_by_caller)', async (t) => {
  const { app, db, fake } = await setup(t, { FALLBACK_POLL_INTERVAL_SECONDS: '2' })
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  const res = await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode: '63016' }))
  t.equal(res.statusCode, 200)
  const put = await app.inject({ method: 'PUT', url: `/v1/messages/${sid}`, headers: { authorization: `Bearer ${API_KEY}` }, payload: { to: `whatsapp:${to}`, fallback: false } })
  t.equal(put.statusCode, 200)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'], 30_000)
  t.match(fallback, { state: 'skipped', reason: 'opted_out_by_caller' })
  t.match(put.json(), { fallback_enabled: false, fallback: { state: 'skipped', reason: 'opted_out_by_caller' } })
  await sleep(3000)
  t.equal(fake.sent().filter((m) => m.to === to).length, 0, 'no SMS')
})
