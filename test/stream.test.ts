import net from 'node:net'
import { sql } from 'kysely'
import t from 'tap'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { startServer } from './helpers/process.ts'
import { openStream } from './helpers/sse.ts'

const auth = { authorization: `Bearer ${API_KEY}` }

t.test('GET /v1/stream', async (t) => {
  const { app, db, url } = await buildTestApp(t, { STREAM_HEARTBEAT_S: '1', STREAM_MAX_BUFFER_BYTES: '1024' })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })

  t.test('requires an API key', async (t) => {
    const res = await fetch(`${base}/v1/stream`)
    t.equal(res.status, 401)
  })

  t.test('streams changes committed by another Tidings process, with event ids', async (t) => {
    const stream = await openStream(`${base}/v1/stream`, auth)
    t.teardown(stream.close)
    const other = await startServer({
      DATABASE_URL: url, MIGRATE_ON_START: 'false', PUBLIC_BASE_URL, TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: AUTH_TOKEN
    })
    t.teardown(async () => { await other.stop() })
    await new Promise((resolve) => setTimeout(resolve, 200))
    const sid = messageSid()
    const { default: twilio } = await import('twilio')
    for (const status of ['sent', 'delivered']) {
      const params = smsCallback(sid, status)
      const res = await fetch(`${other.address}/webhooks/twilio/status`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${PUBLIC_BASE_URL}/webhooks/twilio/status`, params) },
        body: new URLSearchParams(params).toString()
      })
      t.equal(res.status, 200)
    }
    const events = await stream.waitFor(2)
    t.same(events.map((e) => [e.event, e.data.sid, e.data.status]), [['status', sid, 'sent'], ['status', sid, 'delivered']])
    t.equal(events[1].data.current_status, 'delivered')
    t.ok(BigInt(events[0].id) < BigInt(events[1].id), 'ids increase')
    t.equal(events[0].id, events[0].data.id)
  })

  t.test('resumes with Last-Event-ID after a disconnect with nothing missed or repeated', async (t) => {
    const sid = messageSid()
    const first = await openStream(`${base}/v1/stream?sid=${sid}`, auth)
    await postCallback(app, smsCallback(sid, 'queued'))
    await postCallback(app, smsCallback(sid, 'sending'))
    const got = await first.waitFor(2)
    first.close()
    await postCallback(app, smsCallback(sid, 'sent'))
    await postCallback(app, smsCallback(sid, 'delivered'))
    await postCallback(app, smsCallback(sid, 'read'))
    const resumed = await openStream(`${base}/v1/stream?sid=${sid}`, { ...auth, 'last-event-id': got[1].id })
    t.teardown(resumed.close)
    const rest = await resumed.waitFor(3)
    t.same(rest.map((e) => e.data.status), ['sent', 'delivered', 'read'])
    await postCallback(app, smsCallback(sid, 'canceled'))
    await resumed.waitFor(4)
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.same(resumed.events.map((e) => e.data.status), ['sent', 'delivered', 'read', 'canceled'], 'live events follow the replay, once each')
  })

  t.test('filters by channel and sid', async (t) => {
    const wa = await openStream(`${base}/v1/stream?channel=whatsapp`, auth)
    t.teardown(wa.close)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await postCallback(app, smsCallback(messageSid(), 'sent'))
    const waSid = messageSid()
    await postCallback(app, smsCallback(waSid, 'read', { From: 'whatsapp:+14155238886', To: 'whatsapp:+15551234567' }))
    const [e] = await wa.waitFor(1)
    t.equal(e.data.sid, waSid)
    t.equal(e.data.channel, 'whatsapp')
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(wa.events.length, 1, 'the SMS was filtered out')
  })

  t.test('sends a heartbeat comment', async (t) => {
    const s = await openStream(`${base}/v1/stream`, auth)
    t.teardown(s.close)
    await new Promise((resolve) => setTimeout(resolve, 1300))
    t.ok(s.comments.includes('heartbeat'))
  })

  t.test('delivers concurrent commits in id order, every one exactly once', async (t) => {
    const s = await openStream(`${base}/v1/stream?channel=mms`, auth)
    t.teardown(s.close)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const sids = Array.from({ length: 40 }, () => messageSid('MM'))
    await Promise.all(sids.flatMap((sid) => ['sent', 'delivered'].map(async (status) => await postCallback(app, smsCallback(sid, status)))))
    const events = await s.waitFor(80)
    const ids = events.map((e) => BigInt(e.id))
    t.same(ids, [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), 'in id order')
    t.equal(new Set(ids).size, 80, 'no repeats')
    const stored = await db.selectFrom('message_events').select('id').where('channel', '=', 'mms').execute()
    t.same(new Set(ids.map(String)), new Set(stored.map((r) => String(r.id))), 'exactly the stored events')
  })

  t.test('a client that stops reading is disconnected instead of buffering without bound', async (t) => {
    const port = Number(new URL(base).port)
    const socket = net.connect(port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\n\r\n`)
    let received = 0
    socket.on('data', (d) => { received += d.length })
    socket.on('error', () => {})
    await new Promise((resolve) => setTimeout(resolve, 300))
    socket.pause()
    const closed = new Promise((resolve) => socket.once('close', resolve))
    // Commit far more than the socket buffers hold: 30 000 events of ~300 bytes, in one statement.
    const sid = messageSid()
    await db.insertInto('messages').values({ sid, provider: 'twilio', channel: 'sms' }).execute()
    await sql`insert into message_events (message_sid, message_status, channel, raw)
      select ${sid}, 'bulk_' || g || repeat('x', 200), 'sms', '{}'::jsonb from generate_series(1, 30000) g`.execute(db)
    const total = 30000 * 300
    await new Promise((resolve) => setTimeout(resolve, 4000))
    socket.resume() // read whatever the server still holds for us
    const result = await Promise.race([closed.then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('still open'), 15_000))])
    t.equal(result, 'closed', 'the server dropped the slow client')
    t.ok(received < total / 2, `the client got ${received} of ~${total} bytes before being dropped`)
    socket.destroy()
  })
})
