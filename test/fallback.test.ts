/**
 * WhatsApp → SMS fallback end to end: real PostgreSQL, the app through `app.inject`, pg-boss
 * workers, and the real twilio-node client talking to the FAKE Twilio API on loopback.
 */
import t, { type Test as Tap } from 'tap'
import { ACCOUNT_SID, apiGet, messageSid, postCallback, PUBLIC_BASE_URL, smsCallback } from './helpers/app.ts'
import {
  buildFallbackApp, messageRow, randomNumber, SERVICE_SID, sleep, SMS_FROM, storeWhatsAppMessage,
  WA_FROM_SERVICE, WA_FROM_UNMAPPED, waitForFallback, whatsappCallback
} from './helpers/fallback.ts'

const { app, db, fake } = await buildFallbackApp(t)
const TEXT = 'Your code is 4721. Reply STOP to opt out.'

/** POSTs to the fake's Messages.json for `to` (send attempts that reached "Twilio"). */
const sendAttempts = (to: string): number => fake.requests.filter((r) => r.method === 'POST' && r.form.To === to).length
const smsTo = (to: string): typeof fake.sent extends () => infer R ? R : never => fake.sent().filter((m) => m.to === to)

async function failWhatsApp (t: Tap, sid: string, to: string, errorCode = '63049', from?: string): Promise<void> {
  const res = await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode, from }))
  t.equal(res.statusCode, 200, 'failure callback acknowledged')
}

t.test('POST /webhooks/twilio/status: a 63049 WhatsApp failure sends exactly one SMS with the text, sender and callback URL, linked both ways', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  await postCallback(app, whatsappCallback(sid, 'sent', { to }))
  await failWhatsApp(t, sid, to)

  const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'])
  t.equal(fallback.state, 'sent')
  t.equal(fallback.trigger_error_code, '63049')
  const sms = smsTo(to)
  t.equal(sms.length, 1, 'one SMS reached Twilio')
  t.equal(sms[0].body, TEXT)
  t.equal(sms[0].from, SMS_FROM)
  t.equal(sms[0].to, to, 'sent to the number, without whatsapp:')
  t.equal(sms[0].status_callback, `${PUBLIC_BASE_URL}/webhooks/twilio/status`)
  t.equal(fake.requests.find((r) => r.method === 'POST')?.authUser, ACCOUNT_SID, 'sent with the account of the message')
  t.equal(fallback.fallback_sid, sms[0].sid)

  const original = await messageRow(db, sid)
  t.equal(original?.fallback_sid, sms[0].sid, 'the original points at the SMS')
  const smsRow = await messageRow(db, sms[0].sid)
  t.equal(smsRow?.channel, 'sms')
  t.equal(smsRow?.fallback_of, sid, 'the SMS points at the original')
  t.equal(smsRow?.status, 'queued', 'initial status from the create response')
  t.equal(smsRow?.body, TEXT)

  const shown = (await apiGet(app, `/v1/messages/${sid}`)).json()
  t.match(shown, { sid, status: 'failed', fallback_enabled: true, fallback: { state: 'sent', reason: null, sid: sms[0].sid, status: 'queued', trigger_error_code: '63049', attempts: 1 } })
  const shownSms = (await apiGet(app, `/v1/messages/${sms[0].sid}`)).json()
  t.match(shownSms, { sid: sms[0].sid, channel: 'sms', fallback_of: sid, fallback: null })
})

t.test('POST /webhooks/twilio/status: the fallback SMS\'s own status callbacks update the fallback message', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  await failWhatsApp(t, sid, to, '63016')
  const fallback = await waitForFallback(db, sid, ['sent'])
  const smsSid = fallback.fallback_sid ?? ''
  for (const status of ['sent', 'delivered']) {
    const res = await postCallback(app, smsCallback(smsSid, status, { From: SMS_FROM, To: to }))
    t.equal(res.statusCode, 200)
  }
  t.equal((await messageRow(db, smsSid))?.status, 'delivered')
  const shown = (await apiGet(app, `/v1/messages/${sid}`)).json()
  t.match(shown, { fallback: { state: 'sent', sid: smsSid, status: 'delivered' } })
  const events = (await apiGet(app, `/v1/messages/${smsSid}/events`)).json() as { data: Array<{ status: string, source: string }> }
  t.same(events.data.map((e) => [e.status, e.source]), [['queued', 'api'], ['sent', 'webhook'], ['delivered', 'webhook']])
  t.equal(smsTo(to).length, 1, 'the SMS\'s callbacks cause no further SMS')
})

t.test('POST /webhooks/twilio/status: the same failure callback 20 times concurrently sends one SMS', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  const params = whatsappCallback(sid, 'failed', { to, errorCode: '63049' })
  const responses = await Promise.all(Array.from({ length: 20 }, async () => await postCallback(app, params)))
  t.same([...new Set(responses.map((r) => r.statusCode))], [200])
  await waitForFallback(db, sid, ['sent'])
  await sleep(1500)
  t.equal(smsTo(to).length, 1, 'exactly one SMS')
  t.equal(sendAttempts(to), 1)
  const rows = await db.selectFrom('fallbacks').selectAll().where('original_sid', '=', sid).execute()
  t.equal(rows.length, 1)
})

t.test('POST /webhooks/twilio/status: no SMS for a code not in the list, delivered, a failure after delivered, or an SMS failure', async (t) => {
  const to = randomNumber()
  const rateLimited = await storeWhatsAppMessage(db, { to, body: TEXT })
  await failWhatsApp(t, rateLimited, to, '63018')

  const delivered = messageSid()
  await postCallback(app, whatsappCallback(delivered, 'delivered', { to }))

  const lateFailure = await storeWhatsAppMessage(db, { to, body: TEXT })
  await postCallback(app, whatsappCallback(lateFailure, 'delivered', { to }))
  await failWhatsApp(t, lateFailure, to, '63049')

  const sms = messageSid()
  const res = await postCallback(app, smsCallback(sms, 'failed', { To: to, ErrorCode: '63049' }))
  t.equal(res.statusCode, 200)
  const smsUndelivered = messageSid()
  await postCallback(app, smsCallback(smsUndelivered, 'undelivered', { To: to, ErrorCode: '30007' }))

  await sleep(2000)
  t.equal(smsTo(to).length, 0, 'no SMS was sent')
  const rows = await db.selectFrom('fallbacks').select('original_sid')
    .where('original_sid', 'in', [rateLimited, delivered, lateFailure, sms, smsUndelivered]).execute()
  t.same(rows, [], 'no fallback was recorded')
  t.equal((await apiGet(app, `/v1/messages/${lateFailure}`)).json().fallback, null)
})

t.test('fallback worker: 429 then success sends one SMS after a retry', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'http', status: 429 })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'])
  t.equal(fallback.state, 'sent')
  t.equal(fallback.attempts, 2)
  t.equal(sendAttempts(to), 2, 'the 429 and the retry')
  t.equal(smsTo(to).length, 1, 'one SMS')
  t.equal(fake.requests.filter((r) => r.method === 'GET' && r.query.To === to).length, 0, 'a 429 created nothing, so no lookup was needed')
})

t.test('fallback worker: Twilio 21610 (unsubscribed) fails the fallback with its code, without retrying', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'twilio_error', code: 21610, message: 'Attempt to send to unsubscribed recipient' })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'])
  t.match(fallback, { state: 'failed', reason: 'twilio_error', error_code: '21610', attempts: 1 })
  await sleep(2500)
  t.equal(sendAttempts(to), 1, 'no retry')
  t.match((await apiGet(app, `/v1/messages/${sid}`)).json(), { fallback: { state: 'failed', reason: 'twilio_error', error_code: '21610', sid: null } })
})

t.test('fallback worker: Twilio refusing every attempt ends failed/retries_exhausted, dead-lettered and visible', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'http', status: 429 }, { kind: 'http', status: 429 }, { kind: 'http', status: 429 })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'], 30_000)
  t.match(fallback, { state: 'failed', reason: 'retries_exhausted', error_code: '20429', attempts: 3 })
  t.equal(sendAttempts(to), 3, 'FALLBACK_MAX_ATTEMPTS=3')
  t.equal(smsTo(to).length, 0)
})

t.test('fallback worker: after a 503 (maybe accepted) the next attempt waits until that one is a lease old before sending again', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'http', status: 503 }, { kind: 'http', status: 429 })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'], 30_000)
  // Attempt 1: 503. A retry that comes while the 503'd request is less than a lease (3 x 1,000 +
  // 2,000 ms) old finds nothing at Twilio and waits, keeping the 503 as the last error; one that
  // comes later sends (429). Which retries fall in the lease depends on pg-boss's backoff, so the
  // test checks the rule: no create while the first could still land. FALLBACK_MAX_ATTEMPTS=3.
  t.match(fallback, { state: 'failed', reason: 'retries_exhausted', attempts: 3 })
  t.ok(['20500', '20429'].includes(fallback.error_code ?? ''), `the last error is Twilio's (${fallback.error_code})`)
  const creates = fake.requests.filter((r) => r.method === 'POST' && r.form.To === to).map((r) => r.at.getTime())
  t.ok(creates.length >= 1 && creates.slice(1).every((at) => at - creates[0] >= 4500),
    `no second create within a lease of the 503'd one (creates at +${creates.map((at) => at - creates[0]).join(', +')} ms)`)
  t.equal(smsTo(to).length, 0)
})

t.test('fallback worker: the text is fetched from Twilio when Tidings never saw it; none anywhere is skipped/no_body', async (t) => {
  const to = randomNumber()
  const known = messageSid()
  fake.seed({ sid: known, account_sid: ACCOUNT_SID, to: `whatsapp:${to}`, from: 'whatsapp:+14155238886', body: 'Fetched text' })
  await failWhatsApp(t, known, to)
  const fetched = await waitForFallback(db, known, ['sent', 'skipped', 'failed'])
  t.equal(fetched.state, 'sent')
  t.same(smsTo(to).map((m) => m.body), ['Fetched text'])
  t.ok(fake.requests.some((r) => r.method === 'GET' && r.path.endsWith(`/Messages/${known}.json`)), 'fetched the original')

  const to2 = randomNumber()
  const unknown = messageSid()
  await failWhatsApp(t, unknown, to2)
  const skipped = await waitForFallback(db, unknown, ['sent', 'skipped', 'failed'])
  t.match(skipped, { state: 'skipped', reason: 'no_body' })
  t.equal(smsTo(to2).length, 0)
})

t.test('POST /webhooks/twilio/status: without a sender for the WhatsApp number the fallback is skipped/no_sender', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT, from: WA_FROM_UNMAPPED })
  await failWhatsApp(t, sid, to, '63049', WA_FROM_UNMAPPED)
  const rows = await db.selectFrom('fallbacks').selectAll().where('original_sid', '=', sid).execute()
  t.match(rows, [{ state: 'skipped', reason: 'no_sender', job_id: null }], 'recorded in the same transaction, no job')
  t.match((await apiGet(app, `/v1/messages/${sid}`)).json(), { fallback: { state: 'skipped', reason: 'no_sender' } })
  await sleep(1000)
  t.equal(smsTo(to).length, 0)
})

t.test('GET /metrics: fallbacks by state and reason, and the queues, read from the database', async (t) => {
  const body = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(body, /tidings_fallbacks\{state="skipped",reason="no_sender"\} [1-9]/, 'the no_sender fallback above is counted')
  t.match(body, /tidings_fallbacks\{state="sent",reason=""\} [1-9]/, 'sent fallbacks are counted')
  t.match(body, /# TYPE tidings_queue_jobs gauge/)
  t.match(body, /# TYPE tidings_queue_oldest_job_age_seconds gauge/)
})

t.test('fallback worker: a WhatsApp sender mapped to a Messaging Service sends through it', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT, from: WA_FROM_SERVICE })
  await failWhatsApp(t, sid, to, '63024', WA_FROM_SERVICE)
  await waitForFallback(db, sid, ['sent'])
  t.match(smsTo(to), [{ messaging_service_sid: SERVICE_SID, from: null, body: TEXT }])
})

t.test('POST /webhooks/twilio/status: a message that opted out gets no SMS (skipped/opted_out)', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT, fallback: false })
  await failWhatsApp(t, sid, to)
  t.match(await db.selectFrom('fallbacks').selectAll().where('original_sid', '=', sid).execute(), [{ state: 'skipped', reason: 'opted_out' }])
  t.match((await apiGet(app, `/v1/messages/${sid}`)).json(), { fallback_enabled: false, fallback: { state: 'skipped', reason: 'opted_out' } })
  await sleep(1000)
  t.equal(smsTo(to).length, 0)
})

t.test('POST /webhooks/twilio/status: a recipient over the daily cap (3) is skipped/recipient_limit', async (t) => {
  const to = randomNumber()
  const sids: string[] = []
  for (let i = 0; i < 4; i++) sids.push(await storeWhatsAppMessage(db, { to, body: `${TEXT} #${i}` }))
  await Promise.all(sids.map(async (sid) => { await failWhatsApp(t, sid, to) }))
  const rows = await db.selectFrom('fallbacks').selectAll().where('original_sid', 'in', sids).execute()
  t.equal(rows.filter((r) => r.state === 'skipped' && r.reason === 'recipient_limit').length, 1, 'the fourth is over the cap')
  for (const row of rows.filter((r) => r.state !== 'skipped')) await waitForFallback(db, row.original_sid, ['sent'])
  await sleep(1000)
  t.equal(smsTo(to).length, 3, 'three SMS')
})

t.test('fallback worker: Twilio accepts, then the connection drops before Tidings records: the retry adopts the SMS, still exactly one', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'accept_then_drop' })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'])
  t.equal(fallback.state, 'sent')
  const sms = smsTo(to)
  t.equal(sms.length, 1, 'exactly one SMS')
  t.equal(sendAttempts(to), 1, 'not sent again')
  t.equal(fallback.fallback_sid, sms[0].sid, 'its SID is recorded')
  t.ok(fake.requests.some((r) => r.method === 'GET' && r.query.To === to && r.query.From === SMS_FROM && r.query['DateSent>'] === undefined), 'looked it up with To and From (not DateSent: a queued message has none)')
  t.equal((await messageRow(db, sms[0].sid))?.fallback_of, sid)
  t.equal(fallback.attempts, 2)
})

t.test('fallback worker: a send that times out after Twilio accepted it is adopted, not sent twice', async (t) => {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  fake.answerNextSends({ kind: 'slow', delayMs: 3000 })
  await failWhatsApp(t, sid, to)
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'])
  t.equal(fallback.state, 'sent')
  t.equal(smsTo(to).length, 1)
  t.equal(sendAttempts(to), 1)
  t.equal(fallback.fallback_sid, smsTo(to)[0].sid)
})
