import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { API_KEY, contractChecker, postCallback } from './helpers/app.ts'
import { proxiedTestDatabase } from './helpers/cut-proxy.ts'
import { createTestDatabase } from './helpers/database.ts'
import { fallbackEnv, randomNumber, sleep, storeWhatsAppMessage, waitForFallback, whatsappCallback, SMS_FROM, WA_FROM } from './helpers/fallback.ts'
import { claimIdempotencyKey, completeIdempotencyKey, IdempotencyLeaseLostError, startSendAttempt } from '../src/db/idempotency.ts'
import { claimFallback, finishFallback, insertFallback, LeaseLostError, linkSentFallback, releaseForRetry, startAttempt } from '../src/fallback/repository.ts'

// The file's time budget (tap's default is 120 s): lease run-outs and retries after cut connections.
t.setTimeout(8 * 60_000)

const TEXT = 'Your order has shipped'

interface Tap { teardown: (fn: () => unknown) => void }

/** The fallback app whose own database connections go through a proxy the test can cut (pg-boss connects directly). */
async function setup (t: Tap, env: Record<string, string> = {}) {
  const checkContract = contractChecker(t)
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const { db, url, handle, proxy, proxied } = await proxiedTestDatabase(t)
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

t.test('fallback worker: Twilio accepts the SMS only after the client gave up: the retry waits for it and adopts it, never a second SMS', async (t) => {
  // The create times out after 1 s; Twilio creates the message 4 s after the request. The retry
  // (a second or two later) finds nothing yet: sending then was a second SMS. It must wait until
  // the earlier attempt is a lease old (3 x 1,000 + 2,000 ms) before it trusts an empty lookup.
  const { app, db, fake } = await setup(t, { TWILIO_REQUEST_TIMEOUT_MS: '1000' })
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSendsTo(to, { kind: 'accept_late', delayMs: 4000 })
  t.equal((await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode: '63016' }))).statusCode, 200)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'], 60_000)
  t.equal(fallback.state, 'sent')
  await sleep(4500)
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, `exactly one SMS reached Twilio (saw ${sms.length})`)
  t.equal(fallback.fallback_sid, sms[0]?.sid, 'and it is the one recorded')
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

t.test('POST /v1/messages with fallback:false whose WhatsApp failure callback commits first: no SMS (skipped/opted_out_by_caller)', async (t) => {
  // The callback is recorded while Twilio's answer waits: a generous request timeout on a busy machine.
  const { app, db, fake } = await setup(t, { FALLBACK_POLL_INTERVAL_SECONDS: '2', TWILIO_REQUEST_TIMEOUT_MS: '20000' })
  const to = randomNumber()
  // Twilio has accepted the WhatsApp message; before it answers, the failure callback is recorded
  // (with the default flag, since the caller's has not been stored yet).
  fake.onAccepted(async (m) => {
    fake.onAccepted(null)
    let cb = await postCallback(app, whatsappCallback(m.sid, 'failed', { to, errorCode: '63016' }))
    // 503 (database busy) is what Twilio would be told to retry.
    for (let i = 0; cb.statusCode === 503 && i < 20; i++) {
      await sleep(250)
      cb = await postCallback(app, whatsappCallback(m.sid, 'failed', { to, errorCode: '63016' }))
    }
    t.equal(cb.statusCode, 200, 'failure recorded before the send returned')
  })
  const res = await app.inject({ method: 'POST', url: '/v1/messages', headers: { authorization: `Bearer ${API_KEY}` }, payload: { to: `whatsapp:${to}`, from: `whatsapp:${WA_FROM}`, body: TEXT, fallback: false } })
  t.equal(res.statusCode, 201)
  const fallback = await waitForFallback(db, res.json().sid, ['sent', 'failed', 'skipped'], 30_000)
  t.match(fallback, { state: 'skipped', reason: 'opted_out_by_caller' })
  await sleep(3000)
  t.equal(fake.sent().filter((m) => m.to === to).length, 0, 'no SMS')
})

t.test('POST /v1/messages: the database refused after Twilio accepted: send_not_recorded with the SID; the retry with the key records that message, never a second', async (t) => {
  const { app, db, fake, proxy } = await setup(t)
  const to = randomNumber()
  const payload = { to, from: SMS_FROM, body: TEXT }
  const headers = { authorization: `Bearer ${API_KEY}`, 'idempotency-key': 'k-refused' }
  fake.onAccepted(async () => { fake.onAccepted(null); proxy.refuse(300).catch(() => {}) })
  const first = await app.inject({ method: 'POST', url: '/v1/messages', headers, payload })
  t.equal(first.statusCode, 503)
  const sent = fake.sent().filter((m) => m.to === to)
  t.equal(sent.length, 1)
  t.match(first.json(), { code: 'send_not_recorded', message_sid: sent[0]?.sid })
  t.ok(Number(first.headers['retry-after']) >= 1)

  let retry = await app.inject({ method: 'POST', url: '/v1/messages', headers, payload })
  const deadline = Date.now() + 30_000
  while (retry.statusCode !== 201 && Date.now() < deadline) {
    // 503 while the database is still away, then 409 until the first claim's lease runs out.
    t.ok([409, 503].includes(retry.statusCode), `retry answered ${retry.statusCode}`)
    await sleep(1000)
    retry = await app.inject({ method: 'POST', url: '/v1/messages', headers, payload })
  }
  t.equal(retry.statusCode, 201)
  t.equal(retry.json().sid, sent[0]?.sid, 'the message Twilio accepted')
  t.equal(fake.sent().filter((m) => m.to === to).length, 1, 'sent once')
  t.ok(await db.selectFrom('messages').select('sid').where('sid', '=', sent[0].sid).executeTakeFirst())

  // Without a key, the caller still learns what was sent.
  const to2 = randomNumber()
  fake.onAccepted(async () => { fake.onAccepted(null); proxy.refuse(300).catch(() => {}) })
  const unkeyed = await app.inject({ method: 'POST', url: '/v1/messages', headers: { authorization: `Bearer ${API_KEY}` }, payload: { ...payload, to: to2 } })
  t.equal(unkeyed.statusCode, 503)
  t.match(unkeyed.json(), { code: 'send_not_recorded', message_sid: fake.sent().find((m) => m.to === to2)?.sid })
})

t.test('fencing: an attempt whose lease was taken over can neither start, link nor release; a request whose key was taken over can neither start nor complete', async (t) => {
  const { db } = await createTestDatabase(t)
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  const fallbackId = await insertFallback(db, { originalSid: sid, state: 'pending', reason: null, triggerErrorCode: '63016', to, sender: { from: SMS_FROM } }) as string
  const old = await claimFallback(db, fallbackId, 1)
  if (old.kind !== 'claimed') throw new Error('not claimed')
  await sleep(20)
  const current = await claimFallback(db, fallbackId, 60_000)
  if (current.kind !== 'claimed') throw new Error('not claimed again')
  t.not(current.generation, old.generation)
  t.equal(await startAttempt(db, fallbackId, old.generation, 60_000), 'fenced')
  await t.rejects(linkSentFallback(db, old.fallback, sid, TEXT, old.generation), LeaseLostError)
  await releaseForRetry(db, fallbackId, old.generation, { code: 'x', message: 'x' }, { outcomeUnknown: false, previouslyAmbiguous: false })
  await t.rejects(finishFallback(db, fallbackId, 'failed', 'twilio_error', undefined, old.generation), LeaseLostError)
  t.match(await db.selectFrom('fallbacks').selectAll().where('id', '=', fallbackId).executeTakeFirstOrThrow(), { state: 'sending', fallback_sid: null, error_code: null })
  t.equal(await startAttempt(db, fallbackId, current.generation, 60_000), 'go')

  const claim = { apiKeyName: 'billing', key: 'k-fenced', requestHash: 'h', leaseMs: 1, ttlMs: 60_000 }
  const first = await claimIdempotencyKey(db, claim)
  await sleep(20)
  const second = await claimIdempotencyKey(db, { ...claim, leaseMs: 60_000 })
  if (first.kind !== 'claimed' || second.kind !== 'claimed') throw new Error('not claimed')
  const stale = { apiKeyName: 'billing', key: 'k-fenced', generation: first.generation }
  await t.rejects(startSendAttempt(db, stale, 60_000), IdempotencyLeaseLostError)
  await t.rejects(completeIdempotencyKey(db, stale, 201, {}, 'SM' + '0'.repeat(32)), IdempotencyLeaseLostError)
  await completeIdempotencyKey(db, { ...stale, generation: second.generation }, 201, { ok: true }, null)
  t.match(await claimIdempotencyKey(db, claim), { kind: 'replay', body: { ok: true } })
})
