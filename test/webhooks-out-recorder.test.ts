/**
 * Outbound webhooks ride on the one recorder (`src/delivery/on-recorded.ts`, added with
 * `recorder.use`): every path that records events produces deliveries, in one statement per batch,
 * committed (or rolled back) with the events.
 */
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import t from 'tap'
import type { Database } from '../src/db/database.ts'
import { webhookRecordHooks } from '../src/delivery/on-recorded.ts'
import { twilioCallbackToEvent } from '../src/domain/twilio-callback.ts'
import { recordEvents, type IncomingEvent } from '../src/ingest/record-events.ts'
import { ACCOUNT_SID, API_KEY, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { randomNumber, SMS_FROM, storeWhatsAppMessage, waitForFallback, whatsappCallback } from './helpers/fallback.ts'
import { age, buildReconcileApp } from './helpers/reconcile.ts'
import { emailEvent, emailId, postResend } from './helpers/resend.ts'
import { subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { startReceiver } from './fakes/webhook-receiver.ts'

const event = (sid: string, status: string): IncomingEvent => twilioCallbackToEvent(smsCallback(sid, status), new Date())

t.test('every recording path reaches the outbound-webhook hook: Twilio, Resend, POST /v1/messages, reconciliation, the fallback worker', async (t) => {
  const { app, db, fake, reconcile } = await buildReconcileApp(t, webhooksEnv())
  const receiver = await startReceiver()
  t.teardown(receiver.close)
  await subscribe(app, receiver, { event_types: ['message.status'] })
  const seen = (sid: string, status: string, source: string) => (r: typeof receiver.received): boolean =>
    r.some((x) => x.payload.data.message_sid === sid && x.payload.data.status === status && x.payload.data.source === source)

  const twilioSid = messageSid()
  t.equal((await postCallback(app, smsCallback(twilioSid, 'sent'))).statusCode, 200)
  await receiver.waitUntil(seen(twilioSid, 'sent', 'webhook'))

  const email = emailId()
  t.equal((await postResend(app, emailEvent('email.sent', email))).statusCode, 200)
  await receiver.waitUntil(seen(email, 'email.sent', 'webhook'))

  const sent = await app.inject({
    method: 'POST',
    url: '/v1/messages',
    headers: { authorization: `Bearer ${API_KEY}` },
    payload: { to: randomNumber(), from: SMS_FROM, body: 'Your code is 1234', external_id: 'order-77', fallback: false }
  })
  t.equal(sent.statusCode, 201)
  const sentSid = sent.json().sid as string
  await receiver.waitUntil(seen(sentSid, 'queued', 'api'))
  t.equal(receiver.received.find((x) => x.payload.data.message_sid === sentSid)?.payload.data.external_id, 'order-77', 'the send stores its fields before the hook reads the message')

  const stuck = messageSid()
  t.equal((await postCallback(app, smsCallback(stuck, 'sent'))).statusCode, 200)
  await age(db, stuck, 45)
  fake.seed({ sid: stuck, account_sid: ACCOUNT_SID, to: '+15558675310', from: '+14155550100', status: 'delivered' })
  t.equal((await reconcile()).changed.length, 1)
  await receiver.waitUntil(seen(stuck, 'delivered', 'reconcile'))

  const to = randomNumber()
  const wa = await storeWhatsAppMessage(db, { to, body: 'Your order shipped' })
  t.equal((await postCallback(app, whatsappCallback(wa, 'undelivered', { to, errorCode: '63016' }))).statusCode, 200)
  const fallback = await waitForFallback(db, wa, ['sent'])
  await receiver.waitUntil((r) => r.some((x) => x.payload.data.message_sid === fallback.fallback_sid), 20_000)
  t.same(receiver.unverified(), [])
})

t.test('the hook costs one statement per batch, whatever its size', async (t) => {
  const { url } = await createTestDatabase(t)
  let statements = 0
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }), log: () => { statements++ } })
  t.teardown(async () => { await db.destroy() })
  await sql`insert into webhook_subscriptions (id, api_key_name, url, event_types, secret_ciphertext)
    values (gen_random_uuid(), 'billing', 'https://hooks.example.com/a', '{message.status,message.final}', 'x')`.execute(db)
  const cost = async (n: number, withHook: boolean): Promise<number> => {
    statements = 0
    await recordEvents(db, Array.from({ length: n }, () => event(messageSid(), 'delivered')), withHook ? webhookRecordHooks() : {})
    return statements
  }
  t.equal(await cost(1, true), await cost(1, false) + 1, 'one event: one more statement')
  t.equal(await cost(200, true), await cost(200, false) + 1, '200 events: still one more statement')
  const { rows: [n] } = await sql<{ status: number, final: number }>`
    select count(*) filter (where event_type = 'message.status')::int as status, count(*) filter (where event_type = 'message.final')::int as final
    from webhook_deliveries`.execute(db)
  t.same(n, { status: 201, final: 201 }, 'a delivery per event and type')
})

t.test('message.final goes with the event that takes a message into a final status, in any batching and order; payloads carry the status the batch left', async (t) => {
  const { url } = await createTestDatabase(t)
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) })
  t.teardown(async () => { await db.destroy() })
  await sql`insert into webhook_subscriptions (id, api_key_name, url, event_types, secret_ciphertext)
    values (gen_random_uuid(), 'billing', 'https://hooks.example.com/a', '{message.status,message.final}', 'x')`.execute(db)
  const hooks = webhookRecordHooks()
  const failed = (sid: string): IncomingEvent => twilioCallbackToEvent(smsCallback(sid, 'failed', { ErrorCode: '30003' }), new Date())
  const [oneBatch, readFirst, failedThenDelivered, neverFinal] = [messageSid(), messageSid(), messageSid(), messageSid()]
  await recordEvents(db, [event(oneBatch, 'sent'), event(oneBatch, 'delivered'), event(oneBatch, 'read')], hooks)
  await recordEvents(db, [event(readFirst, 'read')], hooks)
  await recordEvents(db, [event(readFirst, 'delivered'), event(readFirst, 'sent')], hooks)
  await recordEvents(db, [failed(failedThenDelivered)], hooks)
  await recordEvents(db, [event(failedThenDelivered, 'delivered')], hooks)
  await recordEvents(db, [event(neverFinal, 'sent'), event(neverFinal, 'queued')], hooks)

  const { rows } = await sql<{ event_type: string, payload: any, received_at: Date }>`
    select d.event_type, d.payload, e.received_at from webhook_deliveries d
    join message_events e on e.id = (d.payload -> 'data' ->> 'event_id')::bigint order by e.id, d.event_type`.execute(db)
  const finals = rows.filter((r) => r.event_type === 'message.final').map((r) => [r.payload.data.message_sid, r.payload.data.status])
  t.same(finals, [[oneBatch, 'delivered'], [readFirst, 'read'], [failedThenDelivered, 'failed']], 'one message.final per message that reached a final status, for the event that took it there')
  t.equal(rows.filter((r) => r.event_type === 'message.status').length, 10, 'one message.status per event')
  t.same(rows.filter((r) => r.payload.data.message_sid === oneBatch).map((r) => r.payload.data.current_status), ['read', 'read', 'read', 'read'], 'current_status: the status the whole batch left')
  t.same(rows.filter((r) => r.payload.data.message_sid === readFirst).map((r) => r.payload.data.current_status), ['read', 'read', 'read', 'read'], 'a late lower status leaves current_status alone')
  const failure = rows.find((r) => r.payload.data.message_sid === failedThenDelivered && r.event_type === 'message.final')?.payload
  t.match(failure, { type: 'message.final', data: { status: 'failed', current_status: 'failed', error_code: '30003', error_meaning: String, provider: 'twilio', channel: 'sms', source: 'webhook' } })
  for (const r of rows) {
    t.equal(Date.parse(r.payload.data.received_at), r.received_at.getTime(), 'received_at is the stored event\'s')
    t.equal(r.payload.data.sequence, Number(r.payload.data.event_id))
  }
})

// Deliveries commit with their events: a batch still open holds nothing else back; rolled back, its
// deliveries never existed; committed late, they are sent.
for (const ending of ['rollback', 'commit'] as const) {
  t.test(`a batch whose transaction ends late (${ending}): others are delivered meanwhile, and it is ${ending === 'commit' ? 'delivered' : 'never delivered'}`, async (t) => {
    const { app } = await buildTestApp(t, webhooksEnv())
    const receiver = await startReceiver()
    t.teardown(receiver.close)
    await subscribe(app, receiver)
    await app.ready()

    let release = (): void => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    let inside = (): void => {}
    const entered = new Promise<void>((resolve) => { inside = resolve })
    const late = messageSid()
    const held = app.recorder.record([event(late, 'sent')], {
      finish: async () => {
        inside()
        await gate
        if (ending === 'rollback') throw new Error('rolled back by the test')
      }
    })
    await entered

    const early = messageSid()
    t.equal((await postCallback(app, smsCallback(early, 'sent'))).statusCode, 200)
    await receiver.waitUntil((r) => r.some((x) => x.payload.data.message_sid === early))
    t.notOk(receiver.received.some((x) => x.payload.data.message_sid === late), 'nothing of the open batch is sent')

    release()
    if (ending === 'commit') {
      await held
      await receiver.waitUntil((r) => r.some((x) => x.payload.data.message_sid === late))
    } else {
      await t.rejects(held)
      await new Promise((resolve) => setTimeout(resolve, 500))
      t.notOk(receiver.received.some((x) => x.payload.data.message_sid === late), 'nothing sent for the rolled-back batch')
    }
    t.same(receiver.unverified(), [])
  })
}
