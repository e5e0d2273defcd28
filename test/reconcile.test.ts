/**
 * Reconciliation end to end: real PostgreSQL, the app (fallback workers running), the real
 * twilio-node client against the FAKE Twilio API and the Resend client against the FAKE Resend API.
 */
import t from 'tap'
import { ACCOUNT_SID, apiGet, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { messageRow, randomNumber, SMS_FROM, storeWhatsAppMessage, waitForFallback, WA_FROM } from './helpers/fallback.ts'
import { age, buildReconcileApp, insertStuckMessage, twilioFetches } from './helpers/reconcile.ts'

const { app, db, fake, resend, reconcile } = await buildReconcileApp(t)
const TO = '+15558675310'

async function stuckSms (status = 'sent', minutes = 45): Promise<string> {
  const sid = messageSid()
  const res = await postCallback(app, smsCallback(sid, status))
  if (res.statusCode !== 200) throw new Error(`callback answered ${res.statusCode}`)
  await age(db, sid, minutes)
  return sid
}

async function metricsText (): Promise<string> {
  return (await app.inject({ method: 'GET', url: '/metrics' })).body
}

t.test('reconcile: a message stuck at sent gets delivered from Twilio, recorded with source reconcile', async (t) => {
  const sid = await stuckSms()
  fake.seed({ sid, account_sid: ACCOUNT_SID, to: TO, from: '+14155550100', status: 'delivered' })

  const summary = await reconcile()
  t.same(summary.changed, [{ sid, provider: 'twilio', before: 'sent', after: 'delivered' }])
  t.equal(twilioFetches(fake, sid), 1)
  t.equal(fake.requests.find((r) => r.path.endsWith(`/${sid}.json`))?.authUser, ACCOUNT_SID, 'fetched with the account of the message')
  const row = await messageRow(db, sid)
  t.equal(row?.status, 'delivered')
  t.equal(row?.reconcile_attempts, 1)
  t.ok(row?.reconciled_at instanceof Date)
  t.not(row?.delivered_at, null)
  const events = (await apiGet(app, `/v1/messages/${sid}/events`)).json() as { data: Array<{ status: string, source: string, params: Record<string, unknown> }> }
  t.same(events.data.map((e) => [e.status, e.source]), [['sent', 'webhook'], ['delivered', 'reconcile']])
  t.match(events.data[1].params, { sid, status: 'delivered', accountSid: ACCOUNT_SID }, 'the fetched resource is the raw event')
  t.match(await metricsText(), /tidings_reconcile_total\{provider="twilio",outcome="changed"\} 1/)

  await age(db, sid, 45)
  await reconcile()
  t.equal(twilioFetches(fake, sid), 1, 'a final message is never fetched again')
})

t.test('reconcile: a message Twilio still reports as sent is unchanged, and asked again only RECONCILE_AFTER later', async (t) => {
  const sid = await stuckSms()
  fake.seed({ sid, account_sid: ACCOUNT_SID, to: TO, status: 'sent' })
  const summary = await reconcile()
  t.equal(summary.outcomes.unchanged, 1)
  t.same(summary.changed, [])
  await reconcile()
  t.equal(twilioFetches(fake, sid), 1, 'not asked again right away')
  await db.updateTable('messages').set({ reconciled_at: new Date(Date.now() - 31 * 60_000) }).where('sid', '=', sid).execute()
  await reconcile()
  t.equal(twilioFetches(fake, sid), 2, 'asked again once RECONCILE_AFTER has passed since the last look')
  t.equal((await messageRow(db, sid))?.reconcile_attempts, 2)
  // Leave nothing due for the next tests.
  await db.updateTable('messages').set({ status: 'delivered' }).where('sid', '=', sid).execute()
})

t.test('reconcile: a message with a final status, or changed recently, is never fetched', async (t) => {
  const delivered = await stuckSms('delivered')
  const failed = await stuckSms('undelivered')
  const recent = await stuckSms('sent', 5)
  const summary = await reconcile()
  t.equal(summary.checked, 0)
  for (const sid of [delivered, failed, recent]) t.equal(twilioFetches(fake, sid), 0, sid)
  await db.updateTable('messages').set({ status: 'delivered' }).where('sid', '=', recent).execute()
})

t.test('reconcile: a WhatsApp message found failed (63049) gets its SMS fallback', async (t) => {
  const to = randomNumber()
  const text = 'Your order has shipped.'
  const sid = await storeWhatsAppMessage(db, { to, body: text })
  await age(db, sid, 60)
  fake.seed({ sid, account_sid: ACCOUNT_SID, to: `whatsapp:${to}`, from: `whatsapp:${WA_FROM}`, body: text, status: 'failed', error_code: 63049, error_message: 'Meta chose not to deliver this message' })

  const summary = await reconcile()
  t.same(summary.changed, [{ sid, provider: 'twilio', before: null, after: 'failed' }])
  const row = await messageRow(db, sid)
  t.equal(row?.error_code, '63049')
  const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'])
  t.equal(fallback.state, 'sent')
  t.equal(fallback.trigger_error_code, '63049')
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, 'one SMS')
  t.equal(sms[0].body, text)
  t.equal(sms[0].from, SMS_FROM)
  t.equal((await messageRow(db, sid))?.fallback_sid, sms[0].sid)
})

t.test('reconcile: messages older than RECONCILE_MAX_AGE are given up on, not fetched', async (t) => {
  const old = await stuckSms('sent', 60)
  await age(db, old, 60, { created: 4 * 24 * 60 })
  const summary = await reconcile()
  t.equal(summary.outcomes.gave_up, 1)
  t.equal(twilioFetches(fake, old), 0)
  const row = await messageRow(db, old)
  t.ok(row?.reconcile_gave_up_at instanceof Date, 'marked given up')
  t.equal(row?.status, 'sent', 'its status is left as it was')
  t.match(await metricsText(), /tidings_reconcile_total\{provider="twilio",outcome="gave_up"\} 1/)
  t.equal((await reconcile()).outcomes.gave_up, 0, 'given up once')
})

t.test('reconcile: at most RECONCILE_BATCH messages per pass, least recently changed first', async (t) => {
  const sids: string[] = []
  for (let i = 0; i < 5; i++) {
    const sid = await stuckSms('sent', 100 - i * 10)
    fake.seed({ sid, account_sid: ACCOUNT_SID, to: TO, status: 'delivered' })
    sids.push(sid)
  }
  const first = await reconcile({ batch: 3 })
  t.equal(first.checked, 3)
  t.same(sids.map((sid) => twilioFetches(fake, sid)), [1, 1, 1, 0, 0], 'the three oldest')
  const second = await reconcile({ batch: 3 })
  t.equal(second.checked, 2)
  t.same(sids.map((sid) => twilioFetches(fake, sid)), [1, 1, 1, 1, 1])
})

t.test('reconcile: a 429 from Twilio stops the pass; the rest wait for the next pass', async (t) => {
  const sids: string[] = []
  for (let i = 0; i < 3; i++) {
    const sid = await stuckSms('sent', 50 - i)
    fake.seed({ sid, account_sid: ACCOUNT_SID, to: TO, status: 'delivered' })
    sids.push(sid)
  }
  fake.answerNextFetches(429)
  const limited = await reconcile()
  t.same(limited.rateLimited, ['twilio'])
  t.equal(limited.outcomes.rate_limited, 1)
  t.equal(limited.checked, 0)
  t.same(sids.map((sid) => twilioFetches(fake, sid)), [1, 0, 0], 'no request after the 429')
  t.equal((await messageRow(db, sids[0]))?.reconcile_attempts, 0, 'a rate-limited look does not count as an attempt')
  t.match(await metricsText(), /tidings_reconcile_total\{provider="twilio",outcome="rate_limited"\} 1/)

  const next = await reconcile()
  t.equal(next.changed.length, 3, 'the next pass does them all')
})

t.test('reconcile: an unknown message (404) and a Twilio 500 are counted and retried later', async (t) => {
  const flaky = await stuckSms('sent', 41)
  const missing = await stuckSms('sent', 40)
  fake.seed({ sid: flaky, account_sid: ACCOUNT_SID, to: TO, status: 'delivered' })
  fake.answerNextFetches(500)
  const summary = await reconcile()
  t.equal(summary.outcomes.not_found, 1)
  t.equal(summary.outcomes.error, 1)
  t.equal((await messageRow(db, flaky))?.reconcile_attempts, 1)
  t.equal((await messageRow(db, missing))?.status, 'sent')
  for (const sid of [missing, flaky]) await db.updateTable('messages').set({ status: 'delivered' }).where('sid', '=', sid).execute()
})

t.test('reconcile: a Resend email stuck at email.sent is reconciled from the Resend API', async (t) => {
  const insertEmail = async (id: string): Promise<void> => {
    await insertStuckMessage(db, {
      sid: id,
      provider: 'resend',
      channel: 'email',
      from_address: 'onboarding@example.com',
      to_address: 'someone@example.com',
      status: 'email.sent',
      status_rank: 2,
      sent_at: new Date()
    })
  }
  const delivered = resend.seed({ last_event: 'delivered' })
  const opened = resend.seed({ last_event: 'opened' })
  const bounced = resend.seed({ last_event: 'bounced' })
  for (const e of [delivered, opened, bounced]) await insertEmail(e.id)

  resend.answerNext({ kind: 'http', status: 429, retryAfterS: 2 })
  const limited = await reconcile()
  t.same(limited.rateLimited, ['resend'])
  t.equal(resend.requests.length, 1)

  const summary = await reconcile()
  t.same(summary.changed.map((c) => [c.sid, c.before, c.after]).sort(), [
    [delivered.id, 'email.sent', 'email.delivered'],
    [opened.id, 'email.sent', 'email.delivered'],
    [bounced.id, 'email.sent', 'email.bounced']
  ].sort())
  t.ok(resend.requests.every((r) => r.authorized), 'sent RESEND_API_KEY as a bearer token')
  const shown = (await apiGet(app, `/v1/messages/${bounced.id}`)).json()
  t.match(shown, { sid: bounced.id, status: 'email.bounced', channel: 'email' })
  const events = (await apiGet(app, `/v1/messages/${delivered.id}/events`)).json() as { data: Array<{ status: string, source: string }> }
  t.same(events.data.map((e) => [e.status, e.source]), [['email.delivered', 'reconcile']])
  t.match(await metricsText(), /tidings_reconcile_total\{provider="resend",outcome="changed"\} 3/)
})
