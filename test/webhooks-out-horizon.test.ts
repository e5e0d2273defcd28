import pg from 'pg'
import t from 'tap'
import { buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { startReceiver } from './fakes/webhook-receiver.ts'

// A change recorded in a transaction that is still open holds back every later id (the horizon);
// rolled back, it is never sent; committed late, it is still sent.
for (const ending of ['rollback', 'commit'] as const) {
  t.test(`an event whose transaction ends late (${ending}) is ${ending === 'commit' ? 'delivered, not skipped' : 'never delivered'}`, async (t) => {
    const { app, url } = await buildTestApp(t, webhooksEnv())
    const receiver = await startReceiver()
    t.teardown(receiver.close)
    await subscribe(app, receiver)
    await app.ready()

    const slow = new pg.Client({ connectionString: url })
    await slow.connect()
    t.teardown(async () => { await slow.end() })
    const late = messageSid()
    await slow.query('begin')
    // As the recorder does: the message row first (the transaction's xid), then the event (its id).
    await slow.query("insert into messages (sid, provider, channel, status) values ($1, 'twilio', 'sms', 'sent')", [late])
    const { rows: [held] } = await slow.query("insert into message_events (message_sid, message_status, channel, raw, source) values ($1, 'sent', 'sms', '{}', 'webhook') returning id::text as id", [late])

    const early = messageSid()
    t.equal((await postCallback(app, smsCallback(early, 'sent'))).statusCode, 200)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.equal(receiver.received.length, 0, 'the later, committed event waits for the open transaction')

    await slow.query(ending)
    await receiver.waitUntil((r) => r.some((x) => x.payload.data.message_sid === early))
    if (ending === 'commit') await receiver.waitUntil((r) => r.some((x) => x.payload.data.event_id === held.id))
    else {
      await new Promise((resolve) => setTimeout(resolve, 500))
      t.notOk(receiver.received.some((x) => x.payload.data.message_sid === late), 'nothing sent for the rolled-back event')
    }
    t.same(receiver.unverified(), [])
  })
}
