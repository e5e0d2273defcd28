import t from 'tap'
import { API_KEY, OTHER_API_KEY, apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'

t.test('GET /v1/messages/:sid', async (t) => {
  const { app } = await buildTestApp(t)
  const sid = messageSid()
  await postCallback(app, smsCallback(sid, 'sent'))
  await postCallback(app, smsCallback(sid, 'undelivered', { ErrorCode: '30003', ErrorMessage: 'Unreachable destination handset' }))

  t.test('requires an API key: 401 unauthorized without, with a wrong one, or with another scheme', async (t) => {
    for (const headers of [{}, { authorization: 'Bearer k_wrong_key_0000000000000' }, { authorization: `Basic ${API_KEY}` }, { authorization: 'Bearer' }]) {
      const res = await app.inject({ method: 'GET', url: `/v1/messages/${sid}`, headers })
      t.equal(res.statusCode, 401)
      t.same(Object.keys(res.json()).sort(), ['code', 'message'])
      t.equal(res.json().code, 'unauthorized')
    }
    const events = await app.inject({ method: 'GET', url: `/v1/messages/${sid}/events` })
    t.equal(events.statusCode, 401)
  })

  t.test('accepts every configured key (rotation)', async (t) => {
    t.equal((await apiGet(app, `/v1/messages/${sid}`, API_KEY)).statusCode, 200)
    t.equal((await apiGet(app, `/v1/messages/${sid}`, OTHER_API_KEY)).statusCode, 200)
  })

  t.test('returns the current status, channel, addresses, error and timestamps', async (t) => {
    const res = await apiGet(app, `/v1/messages/${sid}`)
    t.match(res.json(), {
      sid,
      provider: 'twilio',
      channel: 'sms',
      from: '+14155550100',
      to: '+15558675310',
      status: 'undelivered',
      error_code: '30003',
      error_message: 'Unreachable destination handset',
      delivered_at: null
    })
    t.ok(Date.parse(res.json().sent_at))
    t.ok(Date.parse(res.json().failed_at))
  })

  t.test('unknown SID: 404 message_not_found, for the message and its events', async (t) => {
    const unknown = messageSid()
    for (const url of [`/v1/messages/${unknown}`, `/v1/messages/${unknown}/events`]) {
      const res = await apiGet(app, url)
      t.equal(res.statusCode, 404)
      t.equal(res.json().code, 'message_not_found')
    }
  })

  t.test('a malformed SID: 400 invalid_payload naming the parameter', async (t) => {
    const res = await apiGet(app, '/v1/messages/not%20a%20sid')
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'invalid_payload')
    t.match(res.json().message, /sid/)
  })

  t.test('GET /health: 200 with version and uptime', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/health' })
    t.equal(res.statusCode, 200)
    t.match(res.json(), { status: 'ok', database: 'ok', version: String, uptime_s: Number })
  })
})

t.test('/v1 rate limit is per API key; webhooks are never rate limited', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_PER_MINUTE: '3' })
  const sid = messageSid()
  for (let i = 0; i < 3; i++) t.equal((await apiGet(app, `/v1/messages/${sid}`)).statusCode, 404)
  const limited = await apiGet(app, `/v1/messages/${sid}`)
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'rate_limited')
  t.match(limited.json().message, /per minute/)
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is set')
  t.equal((await apiGet(app, `/v1/messages/${sid}`, OTHER_API_KEY)).statusCode, 404, 'another key has its own budget')
  for (let i = 0; i < 6; i++) t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
})
