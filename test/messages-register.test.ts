import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { API_KEY, apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { buildFallbackApp, messageRow, randomNumber, waitForFallback, whatsappCallback, WA_FROM, SMS_FROM } from './helpers/fallback.ts'

async function register (app: FastifyInstance, sid: string, payload: Record<string, unknown>): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'PUT', url: `/v1/messages/${sid}`, headers: { authorization: `Bearer ${API_KEY}` }, payload })
}

t.test('PUT /v1/messages/:sid', async (t) => {
  const { app, db } = await buildTestApp(t)

  t.test('before any callback: 201, then callbacks fill the status; a repeat is 200 and changes nothing', async (t) => {
    const sid = messageSid()
    const payload = { to: '+15558675310', from: '+14155550100', body: 'Hello', external_id: 'crm-1', metadata: { campaign: 'x' }, fallback: false }
    const created = await register(app, sid, payload)
    t.equal(created.statusCode, 201)
    t.match(created.json(), { sid, provider: 'twilio', channel: 'sms', status: null, to: '+15558675310', external_id: 'crm-1', metadata: { campaign: 'x' }, fallback_enabled: false })
    await postCallback(app, smsCallback(sid, 'sent'))
    await postCallback(app, smsCallback(sid, 'delivered'))
    const again = await register(app, sid, payload)
    t.equal(again.statusCode, 200)
    t.match(again.json(), { status: 'delivered', external_id: 'crm-1', metadata: { campaign: 'x' }, fallback_enabled: false })
    t.ok(again.json().delivered_at)
    const row = await messageRow(db, sid)
    t.equal(row?.body, 'Hello')
    t.same((await apiGet(app, '/v1/messages?external_id=crm-1')).json().data.map((m: { sid: string }) => m.sid), [sid])
  })

  t.test('after callbacks: 200, fills empty fields, never touches status, error or timestamps', async (t) => {
    const sid = messageSid()
    await postCallback(app, smsCallback(sid, 'sent'))
    await postCallback(app, smsCallback(sid, 'undelivered', { ErrorCode: '30003' }))
    const before = await messageRow(db, sid)
    const res = await register(app, sid, { to: '+15558675310', body: 'Late text', external_id: 'crm-2' })
    t.equal(res.statusCode, 200)
    const after = await messageRow(db, sid)
    t.match(after, { status: 'undelivered', error_code: '30003', body: 'Late text', external_id: 'crm-2', from_address: '+14155550100', channel: 'sms' })
    t.same([after?.sent_at, after?.failed_at, after?.status_rank], [before?.sent_at, before?.failed_at, before?.status_rank])
  })

  t.test('a different value for a field already set: 409 registration_conflict naming it', async (t) => {
    const sid = messageSid()
    t.equal((await register(app, sid, { to: '+15558675310', external_id: 'a' })).statusCode, 201)
    for (const [payload, field] of [
      [{ to: '+15558675310', external_id: 'b' }, 'external_id'],
      [{ to: '+15550000000' }, 'to'],
      [{ to: 'whatsapp:+15558675310' }, 'to'],
      [{ to: '+15558675310', metadata: { a: 1 } }, null]
    ] as const) {
      const res = await register(app, sid, payload)
      if (field === null) { t.equal(res.statusCode, 200, 'metadata was empty: filled'); continue }
      t.equal(res.statusCode, 409)
      t.equal(res.json().code, 'registration_conflict')
      t.match(res.json().message, new RegExp(`body\\.${field}`))
    }
    t.equal((await register(app, sid, { to: '+15558675310', metadata: { a: 2 } })).statusCode, 409)
    t.equal((await register(app, sid, { to: '+15558675310', metadata: { a: 1 } })).statusCode, 200)
  })

  t.test('the channel comes from the addresses; 400 for a SID that is not a message SID', async (t) => {
    const sid = messageSid()
    const res = await register(app, sid, { to: 'whatsapp:+15558675310', from: `whatsapp:${WA_FROM}` })
    t.match(res.json(), { channel: 'whatsapp', to: '+15558675310', from: WA_FROM })
    const bad = await register(app, 'XX123', { to: '+15558675310' })
    t.equal(bad.statusCode, 400)
    t.match(bad.json().message, /sid/)
  })
})

t.test('fallback uses the text and flag of a sent or registered WhatsApp message', async (t) => {
  const { app, db, fake } = await buildFallbackApp(t)

  t.test('POST /v1/messages then a 63016 failure: the SMS fallback resends the stored text', async (t) => {
    const to = randomNumber()
    const res = await app.inject({
      method: 'POST',
      url: '/v1/messages',
      headers: { authorization: `Bearer ${API_KEY}` },
      payload: { to: `whatsapp:${to}`, from: `whatsapp:${WA_FROM}`, body: 'Your parcel arrives today' }
    })
    t.equal(res.statusCode, 201)
    const sid = res.json().sid
    await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode: '63016' }))
    const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'])
    t.equal(fallback.state, 'sent')
    const sms = fake.sent().find((m) => m.sid === fallback.fallback_sid)
    t.match(sms, { to, from: SMS_FROM, body: 'Your parcel arrives today' })
    t.equal(fake.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`${sid}.json`)).length, 0, 'the text was not fetched from Twilio')
  })

  t.test('PUT with fallback false before the failure: skipped/opted_out', async (t) => {
    const to = randomNumber()
    const sid = messageSid()
    t.equal((await register(app, sid, { to: `whatsapp:${to}`, from: `whatsapp:${WA_FROM}`, body: 'x', fallback: false })).statusCode, 201)
    await postCallback(app, whatsappCallback(sid, 'failed', { to, errorCode: '63049' }))
    const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'])
    t.match(fallback, { state: 'skipped', reason: 'opted_out' })
  })
})
