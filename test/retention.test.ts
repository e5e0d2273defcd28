/**
 * Retention on real PostgreSQL: old events and engagement go, in small batches; message rows and
 * recent entries stay.
 */
import { sql } from 'kysely'
import t from 'tap'
import { runRetention } from '../src/maintenance/retention.ts'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { emailEvent, emailId, postResend } from './helpers/resend.ts'

t.test('retention deletes events and engagement older than RETENTION_DAYS, keeps message rows and recent entries', async (t) => {
  const { app, db } = await buildTestApp(t)
  const old = messageSid()
  const recent = messageSid()
  for (const status of ['queued', 'sent', 'delivered']) {
    t.equal((await postCallback(app, smsCallback(old, status))).statusCode, 200)
    t.equal((await postCallback(app, smsCallback(recent, status))).statusCode, 200)
  }
  const email = emailId()
  for (const type of ['email.sent', 'email.delivered', 'email.opened', 'email.opened', 'email.clicked']) {
    t.equal((await postResend(app, emailEvent(type, email))).statusCode, 200)
  }
  await db.updateTable('message_events').set({ received_at: sql`now() - interval '100 days'` }).where('message_sid', 'in', [old, email]).execute()
  await db.updateTable('email_engagements').set({ received_at: sql`now() - interval '100 days'` }).where('kind', '=', 'opened').execute()

  const deleted = await runRetention(db, { days: 90, batchSize: 2, pauseMs: 1, metrics: app.metrics })
  t.same(deleted, { message_events: 5, email_engagements: 2 }, 'in batches of 2')

  const left = await db.selectFrom('message_events').select(['message_sid', 'message_status']).execute()
  t.same(left.map((e) => e.message_sid), [recent, recent, recent], 'recent events stay')
  t.same((await db.selectFrom('email_engagements').select('kind').execute()).map((e) => e.kind), ['clicked'])
  for (const [sid, status] of [[old, 'delivered'], [recent, 'delivered'], [email, 'email.delivered']]) {
    const res = await apiGet(app, `/v1/messages/${sid}`)
    t.equal(res.statusCode, 200, `${sid} is still there`)
    t.equal(res.json().status, status, 'with its final status')
  }
  t.same((await apiGet(app, `/v1/messages/${old}/events`)).json().data, [], 'its timeline is gone')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /tidings_retention_deleted_total\{table="message_events"\} 5/)
  t.match(metrics, /tidings_retention_deleted_total\{table="email_engagements"\} 2/)

  t.same(await runRetention(db, { days: 90 }), { message_events: 0, email_engagements: 0 }, 'nothing left to delete')
  t.same(await runRetention(db, { days: 0 }), { message_events: 0, email_engagements: 0 }, 'RETENTION_DAYS=0 keeps everything')
})
