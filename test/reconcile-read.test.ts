/**
 * Reconciliation recovers the last word of a delivered message: a WhatsApp `read`, an email's
 * complaint or bounce, whose callback never came.
 */
import t from 'tap'
import { sql } from 'kysely'
import { ACCOUNT_SID, messageSid, postCallback } from './helpers/app.ts'
import { messageRow, randomNumber, whatsappCallback, WA_FROM } from './helpers/fallback.ts'
import { buildReconcileApp, insertStuckMessage, twilioFetches } from './helpers/reconcile.ts'

const { app, db, fake, resend, reconcile } = await buildReconcileApp(t, { RECONCILE_READ_CHECKS: '2' })

/** A WhatsApp message whose `delivered` callback came `minutes` ago (and whose `read` never did); Twilio says `atTwilio`. */
async function deliveredWhatsApp (atTwilio: string, minutes = 45): Promise<string> {
  const sid = messageSid()
  const to = randomNumber()
  fake.seed({ sid, account_sid: ACCOUNT_SID, to: `whatsapp:${to}`, from: `whatsapp:${WA_FROM}`, status: atTwilio, body: 'hi' })
  for (const status of ['sent', 'delivered']) {
    const res = await postCallback(app, whatsappCallback(sid, status, { to }))
    if (res.statusCode !== 200) throw new Error(`callback answered ${res.statusCode}`)
  }
  await db.updateTable('messages')
    .set({ updated_at: sql`now() - make_interval(mins => ${minutes})`, delivered_at: sql`now() - make_interval(mins => ${minutes})` })
    .where('sid', '=', sid).execute()
  return sid
}

async function metricsText (): Promise<string> {
  return (await app.inject({ method: 'GET', url: '/metrics' })).body
}

t.test('reconcile: a WhatsApp message left at delivered (its read callback dropped) is found read, and counted as corrected', async (t) => {
  const sid = await deliveredWhatsApp('read')
  const summary = await reconcile()
  t.same(summary.changed.filter((c) => c.sid === sid).map((c) => [c.before, c.after]), [['delivered', 'read']])
  const row = await messageRow(db, sid)
  t.equal(row?.status, 'read')
  t.ok(row?.read_at)
  t.match(await metricsText(), /tidings_reconcile_corrections_total\{provider="twilio",from="delivered",to="read"\} 1/)
  await reconcile()
  t.equal(twilioFetches(fake, sid), 1, 'read is final: never looked up again')
})

t.test('reconcile: a delivered WhatsApp message is looked up again at most RECONCILE_READ_CHECKS times, spaced out', async (t) => {
  const sid = await deliveredWhatsApp('delivered', 45)
  await reconcile()
  t.equal(twilioFetches(fake, sid), 1, 'first look RECONCILE_AFTER (30 min) after delivery')
  await reconcile()
  t.equal(twilioFetches(fake, sid), 1, 'not again before RECONCILE_AFTER x 4')
  await db.updateTable('messages').set({ reconciled_at: sql`now() - interval '3 hours'` }).where('sid', '=', sid).execute()
  await reconcile()
  t.equal(twilioFetches(fake, sid), 2, 'second look 2 h later')
  await db.updateTable('messages').set({ reconciled_at: sql`now() - interval '20 hours'` }).where('sid', '=', sid).execute()
  await reconcile()
  t.equal(twilioFetches(fake, sid), 2, 'no third look: RECONCILE_READ_CHECKS=2')
  t.equal((await messageRow(db, sid))?.status, 'delivered')
})

t.test('reconcile: a WhatsApp message delivered longer ago than RECONCILE_READ_WINDOW (24 h) is not looked up', async (t) => {
  const sid = await deliveredWhatsApp('read', 25 * 60)
  await reconcile()
  t.equal(twilioFetches(fake, sid), 0)
  t.equal((await messageRow(db, sid))?.status, 'delivered')
})

t.test('reconcile: an email left at email.delivered is found complained (within RECONCILE_EMAIL_WINDOW)', async (t) => {
  const complained = resend.seed({ last_event: 'complained' })
  const old = resend.seed({ last_event: 'bounced' })
  for (const [id, minutes] of [[complained.id, 45], [old.id, 3 * 60]] as const) {
    await insertStuckMessage(db, {
      sid: id,
      provider: 'resend',
      channel: 'email',
      from_address: 'onboarding@example.com',
      to_address: 'someone@example.com',
      status: 'email.delivered',
      status_rank: 7,
      sent_at: sql<Date>`now() - make_interval(mins => ${minutes})` as unknown as Date,
      delivered_at: sql<Date>`now() - make_interval(mins => ${minutes})` as unknown as Date
    }, minutes)
  }
  const summary = await reconcile()
  t.same(summary.changed.filter((c) => c.provider === 'resend').map((c) => [c.sid, c.before, c.after]), [[complained.id, 'email.delivered', 'email.complained']])
  t.equal((await messageRow(db, complained.id))?.status, 'email.complained')
  t.equal((await messageRow(db, old.id))?.status, 'email.delivered', 'delivered 3 h ago: outside the 2 h window')
  t.match(await metricsText(), /tidings_reconcile_corrections_total\{provider="resend",from="email.delivered",to="email.complained"\} 1/)
})
