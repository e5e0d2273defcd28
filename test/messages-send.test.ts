import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startFakeTwilio, type FakeTwilio } from './fakes/fake-twilio.ts'
import { API_KEY, OTHER_API_KEY, PUBLIC_BASE_URL, apiGet, buildTestApp } from './helpers/app.ts'
import { randomNumber } from './helpers/fallback.ts'

const FROM = '+14155550100'
const SERVICE = 'MG' + 'd'.repeat(32)
const CONTENT = 'HX' + 'e'.repeat(32)

interface Tap { teardown: (fn: () => unknown) => void }

/** The app (PostgreSQL) with its real twilio client pointed at a FAKE Twilio API on loopback. */
async function setup (t: Tap, env: Record<string, string> = {}) {
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const built = await buildTestApp(t, { TWILIO_API_BASE_URL: fake.url, TWILIO_REQUEST_TIMEOUT_MS: '1000', ...env })
  return { ...built, fake }
}

async function send (app: FastifyInstance, payload: Record<string, unknown>, opts: { key?: string, idempotencyKey?: string } = {}): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { authorization: `Bearer ${opts.key ?? API_KEY}` }
  if (opts.idempotencyKey !== undefined) headers['idempotency-key'] = opts.idempotencyKey
  return await app.inject({ method: 'POST', url: '/v1/messages', headers, payload })
}

const creates = (fake: FakeTwilio) => fake.requests.filter((r) => r.method === 'POST')

t.test('POST /v1/messages sends through Twilio, stores the message and records the initial status', async (t) => {
  const { app, db, fake } = await setup(t)
  const to = randomNumber()
  const res = await send(app, { to, from: FROM, body: 'Your code is 1234', external_id: 'order-1', metadata: { order: 1, tags: ['a'] }, fallback: false })
  t.equal(res.statusCode, 201)
  const sent = fake.sent()
  t.equal(sent.length, 1)
  const [request] = creates(fake)
  t.same(request.form, { To: to, From: FROM, Body: 'Your code is 1234', StatusCallback: `${PUBLIC_BASE_URL}/webhooks/twilio/status` })
  t.match(res.json(), { sid: sent[0].sid, channel: 'sms', to, from: FROM, status: 'queued', external_id: 'order-1', metadata: { order: 1, tags: ['a'] }, fallback_enabled: false })
  t.equal(res.headers.location, `/v1/messages/${sent[0].sid}`)

  const row = await db.selectFrom('messages').selectAll().where('sid', '=', sent[0].sid).executeTakeFirstOrThrow()
  t.match(row, { body: 'Your code is 1234', external_id: 'order-1', fallback: false, status: 'queued', account_sid: 'AC' + 'a'.repeat(32) })
  const events = await apiGet(app, `/v1/messages/${sent[0].sid}/events`)
  t.match(events.json().data, [{ status: 'queued', source: 'api' }])
  t.equal(events.json().data.length, 1)
  const byExternal = await apiGet(app, '/v1/messages?external_id=order-1')
  t.same(byExternal.json().data.map((m: { sid: string }) => m.sid), [sent[0].sid])
})

t.test('POST /v1/messages sends a WhatsApp template from a Messaging Service', async (t) => {
  const { app, db, fake } = await setup(t)
  const to = randomNumber()
  const res = await send(app, { to: `whatsapp:${to}`, messaging_service_sid: SERVICE, content_sid: CONTENT, content_variables: { 1: 'Ada' } })
  t.equal(res.statusCode, 201)
  t.match(creates(fake)[0].form, { To: `whatsapp:${to}`, MessagingServiceSid: SERVICE, ContentSid: CONTENT, ContentVariables: '{"1":"Ada"}' })
  t.match(res.json(), { channel: 'whatsapp', to, messaging_service_sid: SERVICE, fallback_enabled: true })
  const row = await db.selectFrom('messages').select(['body', 'fallback']).where('sid', '=', res.json().sid).executeTakeFirstOrThrow()
  t.same(row, { body: null, fallback: true }, 'no text stored for a template: the fallback fetches it from Twilio')
})

t.test('POST /v1/messages: 400 invalid_payload naming the field, and nothing sent', async (t) => {
  const { app, fake } = await setup(t)
  const to = randomNumber()
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ from: FROM, body: 'x' }, /to/],
    [{ to: '5551234', from: FROM, body: 'x' }, /body\.to/],
    [{ to, body: 'x' }, /from or body\.messaging_service_sid/],
    [{ to, from: FROM, messaging_service_sid: SERVICE, body: 'x' }, /from or body\.messaging_service_sid/],
    [{ to, from: FROM }, /body\.body or body\.content_sid/],
    [{ to, from: FROM, body: 'x', content_sid: CONTENT }, /body\.body or body\.content_sid/],
    [{ to, from: FROM, body: 'x', content_variables: { 1: 'a' } }, /content_variables/],
    [{ to: `whatsapp:${to}`, from: FROM, body: 'x' }, /body\.from/],
    [{ to, from: FROM, body: 'x'.repeat(1601) }, /body\.body/],
    [{ to, from: FROM, body: 'x', metadata: { big: 'x'.repeat(17 * 1024) } }, /metadata/],
    [{ to, from: FROM, body: 'x', metadata: 'not an object' }, /metadata/],
    [{ to, from: FROM, body: 'x', status_callback: 'https://elsewhere' }, /status_callback/],
    [{ to, from: FROM, body: 'x', external_id: '' }, /external_id/]
  ]
  for (const [payload, field] of cases) {
    const res = await send(app, payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 80))
    t.equal(res.json().code, 'invalid_payload')
    t.match(res.json().message, field)
  }
  const badKey = await send(app, { to, from: FROM, body: 'x' }, { idempotencyKey: 'x'.repeat(256) })
  t.equal(badKey.statusCode, 400)
  t.match(badKey.json().message, /idempotency-key/)
  t.equal(fake.requests.length, 0)
})

t.test('POST/PUT /v1/messages and GET /v1/stats require an API key', async (t) => {
  const { app, fake } = await setup(t)
  const payload = { to: randomNumber(), from: FROM, body: 'x' }
  const requests = [
    { method: 'POST' as const, url: '/v1/messages', payload },
    { method: 'PUT' as const, url: `/v1/messages/SM${'1'.repeat(32)}`, payload },
    { method: 'GET' as const, url: '/v1/stats' }
  ]
  for (const r of requests) {
    for (const headers of [{}, { authorization: 'Bearer k_wrong_key_0000000000000' }]) {
      const res = await app.inject({ ...r, headers })
      t.equal(res.statusCode, 401, `${r.method} ${r.url}`)
      t.equal(res.json().code, 'unauthorized')
    }
  }
  t.equal(fake.requests.length, 0)
})

t.test('POST /v1/messages with an Idempotency-Key', async (t) => {
  const { app, fake } = await setup(t)

  t.test('a retry returns the first result without a second send; without a key, each call sends', async (t) => {
    const payload = { to: randomNumber(), from: FROM, body: 'once', metadata: { a: 1, b: 2 } }
    const first = await send(app, payload, { idempotencyKey: 'k-retry' })
    // Same body with its keys in another order: the same request.
    const again = await send(app, { metadata: { b: 2, a: 1 }, body: 'once', from: FROM, to: payload.to }, { idempotencyKey: 'k-retry' })
    t.equal(first.statusCode, 201)
    t.equal(again.statusCode, 201)
    t.same(again.json(), first.json())
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(fake.sent().filter((m) => m.to === payload.to).length, 1, 'one Twilio request')

    const unkeyed = { to: randomNumber(), from: FROM, body: 'twice' }
    t.equal((await send(app, unkeyed)).statusCode, 201)
    t.equal((await send(app, unkeyed)).statusCode, 201)
    t.equal(fake.sent().filter((m) => m.to === unkeyed.to).length, 2)
  })

  t.test('the same key with another body: 422 idempotency_key_reused; keys are per API key', async (t) => {
    const to = randomNumber()
    t.equal((await send(app, { to, from: FROM, body: 'first' }, { idempotencyKey: 'k-reuse' })).statusCode, 201)
    const reused = await send(app, { to, from: FROM, body: 'second' }, { idempotencyKey: 'k-reuse' })
    t.equal(reused.statusCode, 422)
    t.equal(reused.json().code, 'idempotency_key_reused')
    const otherKey = await send(app, { to, from: FROM, body: 'first' }, { idempotencyKey: 'k-reuse', key: OTHER_API_KEY })
    t.equal(otherKey.statusCode, 201)
    t.equal(otherKey.headers['idempotent-replayed'], undefined)
    t.equal(fake.sent().filter((m) => m.to === to).length, 2)
  })

  t.test('concurrent duplicates send once: one 201, the others 409 idempotency_in_progress, then the replay', async (t) => {
    const payload = { to: randomNumber(), from: FROM, body: 'concurrent' }
    fake.answerNextSends({ kind: 'slow', delayMs: 600 })
    const results = await Promise.all(Array.from({ length: 5 }, async () => await send(app, payload, { idempotencyKey: 'k-concurrent' })))
    const statuses = results.map((r) => r.statusCode).sort()
    t.same(statuses, [201, 409, 409, 409, 409])
    for (const r of results.filter((r) => r.statusCode === 409)) {
      t.equal(r.json().code, 'idempotency_in_progress')
      t.ok(Number(r.headers['retry-after']) >= 1)
    }
    t.equal(fake.sent().filter((m) => m.to === payload.to).length, 1, 'one Twilio request')
    const later = await send(app, payload, { idempotencyKey: 'k-concurrent' })
    t.equal(later.statusCode, 201)
    t.equal(later.json().sid, results.find((r) => r.statusCode === 201)?.json().sid)
  })
})

t.test('POST /v1/messages maps Twilio errors', async (t) => {
  const { app, fake } = await setup(t)

  t.test('21211 and 21610: 422 twilio_error with twilio_code; replayed under the same key', async (t) => {
    for (const code of [21211, 21610]) {
      fake.answerNextSends({ kind: 'twilio_error', code, message: `Twilio says ${code}` })
      const payload = { to: randomNumber(), from: FROM, body: 'x' }
      const res = await send(app, payload, { idempotencyKey: `k-${code}` })
      t.equal(res.statusCode, 422)
      t.match(res.json(), { code: 'twilio_error', twilio_code: String(code), message: new RegExp(`Twilio says ${code}`) })
      const before = creates(fake).length
      const again = await send(app, payload, { idempotencyKey: `k-${code}` })
      t.equal(again.statusCode, 422)
      t.same(again.json(), res.json())
      t.equal(creates(fake).length, before, 'the replay does not call Twilio')
    }
  })

  t.test("Twilio's 429: 503 twilio_rate_limited with Retry-After, and the key is free for the retry", async (t) => {
    fake.answerNextSends({ kind: 'http', status: 429 })
    const payload = { to: randomNumber(), from: FROM, body: 'x' }
    const res = await send(app, payload, { idempotencyKey: 'k-429' })
    t.equal(res.statusCode, 503)
    t.match(res.json(), { code: 'twilio_rate_limited', twilio_code: '20429' })
    t.ok(Number(res.headers['retry-after']) >= 1)
    const retry = await send(app, payload, { idempotencyKey: 'k-429' })
    t.equal(retry.statusCode, 201)
    t.equal(fake.sent().filter((m) => m.to === payload.to).length, 1)
  })

  t.test("Twilio's 500: 502 twilio_unavailable with Retry-After", async (t) => {
    fake.answerNextSends({ kind: 'http', status: 500 })
    const res = await send(app, { to: randomNumber(), from: FROM, body: 'x' })
    t.equal(res.statusCode, 502)
    t.match(res.json(), { code: 'twilio_unavailable', twilio_code: '20500' })
    t.ok(Number(res.headers['retry-after']) >= 1)
  })

  for (const behaviour of [{ kind: 'slow', delayMs: 1500 }, { kind: 'accept_then_drop' }] as const) {
    t.test(`${behaviour.kind}: 502, and a retry with the same key finds the message at Twilio instead of sending again`, async (t) => {
      fake.answerNextSends(behaviour)
      const payload = { to: randomNumber(), from: FROM, body: `uncertain ${behaviour.kind}` }
      const res = await send(app, payload, { idempotencyKey: `k-${behaviour.kind}` })
      t.equal(res.statusCode, 502)
      t.equal(res.json().code, 'twilio_unavailable')
      t.match(res.json().message, /may or may not have been sent/)
      const accepted = fake.sent().filter((m) => m.to === payload.to)
      t.equal(accepted.length, 1, 'Twilio did accept it')
      const retry = await send(app, payload, { idempotencyKey: `k-${behaviour.kind}` })
      t.equal(retry.statusCode, 201)
      t.equal(retry.json().sid, accepted[0].sid, 'the earlier message is adopted')
      t.equal(fake.sent().filter((m) => m.to === payload.to).length, 1, 'no second send')
      const replay = await send(app, payload, { idempotencyKey: `k-${behaviour.kind}` })
      t.equal(replay.json().sid, accepted[0].sid)
    })
  }
})
