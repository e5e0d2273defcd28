import t from 'tap'
import { ACCOUNT_SID, PUBLIC_BASE_URL, STATUS_PATH, apiGet, buildTestApp, formBody, messageSid, postCallback, sign, smsCallback } from './helpers/app.ts'

t.test('POST /webhooks/twilio/status recording', async (t) => {
  const { app, db } = await buildTestApp(t)
  const eventsOf = async (sid: string): Promise<Array<{ message_status: string }>> =>
    await db.selectFrom('message_events').select(['message_status']).where('message_sid', '=', sid).orderBy('id').execute()
  const messageOf = async (sid: string) => await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirstOrThrow()

  t.test('stores the same callback sent 20 times concurrently over real HTTP once', async (t) => {
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    const sid = messageSid()
    const params = smsCallback(sid, 'delivered', { RawDlrDoneDate: '2611241015' })
    const responses = await Promise.all(Array.from({ length: 20 }, async () => await fetch(`${address}${STATUS_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign(params) },
      body: formBody(params)
    })))
    t.same(responses.map((r) => r.status), Array(20).fill(200), 'every delivery is acknowledged')
    const outcomes = await Promise.all(responses.map(async (r) => (await r.json() as { outcome: string }).outcome))
    t.equal(outcomes.filter((o) => o === 'recorded').length, 1, 'exactly one is recorded')
    t.equal(outcomes.filter((o) => o === 'duplicate').length, 19)
    t.same((await eventsOf(sid)).map((e) => e.message_status), ['delivered'])
    const row = await messageOf(sid)
    t.equal(row.status, 'delivered')
    t.ok(row.delivered_at)
    const event = await db.selectFrom('message_events').selectAll().where('message_sid', '=', sid).executeTakeFirstOrThrow()
    t.same(event.carrier_at, new Date('2026-11-24T10:15:00Z'), 'RawDlrDoneDate is kept as the carrier time')
    t.equal(event.raw.RawDlrDoneDate, '2611241015', 'the raw parameters are kept')
    t.equal(event.source, 'webhook')
  })

  t.test('a delivered that arrives before sent keeps delivered, and both are in the timeline', async (t) => {
    const sid = messageSid()
    t.equal((await postCallback(app, smsCallback(sid, 'delivered'))).statusCode, 200)
    t.equal((await postCallback(app, smsCallback(sid, 'sent'))).statusCode, 200)
    t.equal((await postCallback(app, smsCallback(sid, 'queued'))).statusCode, 200)
    const row = await messageOf(sid)
    t.equal(row.status, 'delivered')
    t.ok(row.sent_at, 'sent_at is filled from the late sent')
    t.same((await eventsOf(sid)).map((e) => e.message_status), ['delivered', 'sent', 'queued'], 'timeline in order received')
  })

  t.test('a failure keeps its ErrorCode and a late sent does not revive it', async (t) => {
    const sid = messageSid()
    await postCallback(app, smsCallback(sid, 'undelivered', { ErrorCode: '30007', ErrorMessage: 'Carrier violation' }))
    await postCallback(app, smsCallback(sid, 'sent'))
    const row = await messageOf(sid)
    t.equal(row.status, 'undelivered')
    t.equal(row.error_code, '30007')
    t.equal(row.error_message, 'Carrier violation')
    t.ok(row.failed_at)
  })

  t.test('an unknown status is recorded in the timeline and leaves the current status alone', async (t) => {
    const sid = messageSid()
    await postCallback(app, smsCallback(sid, 'sent'))
    const res = await postCallback(app, smsCallback(sid, 'teleported'))
    t.equal(res.statusCode, 200)
    t.equal((await messageOf(sid)).status, 'sent')
    t.same((await eventsOf(sid)).map((e) => e.message_status), ['sent', 'teleported'])
  })

  t.test('detects WhatsApp from the address prefix and strips it; MMS from the SID', async (t) => {
    const wa = messageSid()
    await postCallback(app, smsCallback(wa, 'read', {
      From: 'whatsapp:+14155238886', To: 'whatsapp:+15551234567', ChannelPrefix: 'whatsapp', EventType: 'READ'
    }))
    const waRow = await messageOf(wa)
    t.equal(waRow.channel, 'whatsapp')
    t.equal(waRow.from_address, '+14155238886')
    t.equal(waRow.to_address, '+15551234567')
    t.ok(waRow.read_at)
    const mms = messageSid('MM')
    await postCallback(app, smsCallback(mms, 'sent'))
    t.equal((await messageOf(mms)).channel, 'mms')
    const sms = messageSid()
    await postCallback(app, smsCallback(sms, 'sent'))
    t.equal((await messageOf(sms)).channel, 'sms')
  })

  t.test('keeps the Messaging Service SID and the AccountSid', async (t) => {
    const sid = messageSid()
    await postCallback(app, smsCallback(sid, 'accepted', { MessagingServiceSid: 'MG' + '1'.repeat(32) }))
    const row = await messageOf(sid)
    t.equal(row.messaging_service_sid, 'MG' + '1'.repeat(32))
    t.equal(row.account_sid, ACCOUNT_SID)
  })

  t.test('GET /v1/messages/:sid/events returns the timeline for what the webhook recorded', async (t) => {
    const sid = messageSid()
    await postCallback(app, smsCallback(sid, 'sent'))
    await postCallback(app, smsCallback(sid, 'delivered'))
    const res = await apiGet(app, `/v1/messages/${sid}/events`)
    t.equal(res.statusCode, 200)
    t.same(res.json().data.map((e: { status: string }) => e.status), ['sent', 'delivered'])
    const ids = res.json().data.map((e: { id: string }) => BigInt(e.id))
    t.ok(ids[0] < ids[1], 'event ids increase')
    const msg = await apiGet(app, `/v1/messages/${sid}`)
    t.equal(msg.json().status, 'delivered')
    t.equal(msg.json().to, '+15558675310')
  })
})

t.test('POST /webhooks/twilio/status never answers bad input with a 500', async (t) => {
  const { app, db } = await buildTestApp(t)
  const totalEvents = async (): Promise<number> => Number((await db.selectFrom('message_events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

  t.test('empty body, unsigned: 403', async (t) => {
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '' })
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('empty body, validly signed: 400 naming MessageSid', async (t) => {
    const res = await app.inject({
      method: 'POST',
      url: STATUS_PATH,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign({}) },
      payload: ''
    })
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'invalid_payload')
    t.match(res.json().message, /MessageSid/)
  })

  t.test('no body and no content type: 403, not 500', async (t) => {
    const res = await app.inject({ method: 'POST', url: STATUS_PATH })
    t.equal(res.statusCode, 403)
  })

  t.test('wrong content type: 415 unsupported_media_type', async (t) => {
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/json' }, payload: JSON.stringify(smsCallback(messageSid(), 'sent')) })
    t.equal(res.statusCode, 415)
    t.equal(res.json().code, 'unsupported_media_type')
    t.type(res.json().message, 'string')
  })

  t.test('malformed percent-encoding: refused cleanly', async (t) => {
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'abc' }, payload: 'MessageSid=%ZZ&MessageStatus=%E0%A4%A&AccountSid=' + ACCOUNT_SID })
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('malformed percent-encoding that is validly signed: 400, not 500', async (t) => {
    const payload = `MessageSid=%ZZ&MessageStatus=sent&AccountSid=${ACCOUNT_SID}`
    const params = Object.fromEntries(new URLSearchParams(payload))
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign({ ...params, MessageSid: '%ZZ' }) }, payload })
    t.equal(res.statusCode, 400)
    t.match(res.json().message, /MessageSid/)
  })

  t.test('oversized body (over 64 KiB): 413 payload_too_large', async (t) => {
    const params = smsCallback(messageSid(), 'sent', { Padding: 'x'.repeat(70 * 1024) })
    const res = await postCallback(app, params)
    t.equal(res.statusCode, 413)
    t.equal(res.json().code, 'payload_too_large')
  })

  t.test('missing MessageStatus: 400 naming the field', async (t) => {
    const { MessageStatus: _a, SmsStatus: _b, ...params } = smsCallback(messageSid(), 'sent')
    const res = await postCallback(app, params)
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'invalid_payload')
    t.match(res.json().message, /MessageStatus/)
  })

  t.test('a MessageSid that is not a Twilio message SID: 400 naming the field', async (t) => {
    const res = await postCallback(app, smsCallback('SM123', 'sent'))
    t.equal(res.statusCode, 400)
    t.match(res.json().message, /MessageSid/)
    const call = await postCallback(app, smsCallback('CA' + 'a'.repeat(32), 'sent'))
    t.equal(call.statusCode, 400)
  })

  t.test('a parameter repeated: 400 naming it', async (t) => {
    const sid = messageSid()
    const body = formBody(smsCallback(sid, 'sent')) + '&MessageStatus=delivered'
    const params: Record<string, string | string[]> = { ...smsCallback(sid, 'sent'), MessageStatus: ['sent', 'delivered'] }
    const { default: twilio } = await import('twilio')
    const signature = twilio.getExpectedTwilioSignature('test_auth_token_primary_0001', PUBLIC_BASE_URL + STATUS_PATH, params as unknown as Record<string, string>)
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature }, payload: body })
    t.equal(res.statusCode, 400)
    t.match(res.json().message, /MessageStatus/)
  })

  t.test('nothing was recorded by any of the above', async (t) => {
    t.equal(await totalEvents(), 0)
  })

  t.test('an unknown route: 404 not_found with the error shape', async (t) => {
    const res = await app.inject({ method: 'POST', url: '/webhooks/twilio/nope' })
    t.equal(res.statusCode, 404)
    t.equal(res.json().code, 'not_found')
  })
})

t.test('POST /webhooks/twilio/status: a value with a NUL character is a 400 naming it, not a 503 forever', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await postCallback(app, smsCallback(messageSid(), 'undelivered', { ErrorMessage: 'bad\u0000byte' }))
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'invalid_payload')
  t.match(res.json().message, /ErrorMessage contains a NUL/)
})
