import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { API_KEY, buildTestApp, messageSid } from './helpers/app.ts'
import { randomNumber } from './helpers/fallback.ts'

// The file's time budget (tap's default is 120 s): many apps and requests.
t.setTimeout(5 * 60_000)

const FROM = '+14155550100'

async function call (app: FastifyInstance, method: 'POST' | 'PUT', url: string, payload: string | Record<string, unknown>, idempotencyKey?: string): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }
  if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey
  return await app.inject({ method, url, headers, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) })
}

/** `{"metadata":{"a":{"a":…{}…}}}` nested `depth` times, built as text (JSON.stringify would overflow first). */
function deepMetadata (base: Record<string, unknown>, depth: number): string {
  const json = JSON.stringify(base)
  return `${json.slice(0, -1)},"metadata":${'{"a":'.repeat(depth)}{}${'}'.repeat(depth)}}`
}

t.test('POST and PUT /v1/messages: text a database cannot store is a 400 naming the field, before Twilio is called', async (t) => {
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const { app, db } = await buildTestApp(t, { TWILIO_API_BASE_URL: fake.url, TWILIO_REQUEST_TIMEOUT_MS: '1000' })

  const base = (): Record<string, unknown> => ({ to: randomNumber(), from: FROM, body: 'hello' })
  const cases: Array<[string, (b: Record<string, unknown>) => string | Record<string, unknown>, RegExp]> = [
    ['NUL in external_id', (b) => ({ ...b, external_id: 'order\u00001' }), /body\.external_id/],
    ['NUL in body', (b) => ({ ...b, body: 'hi\u0000there' }), /body\.body/],
    ['NUL in a metadata value', (b) => ({ ...b, metadata: { note: 'a\u0000b' } }), /body\.metadata\.note/],
    ['NUL in a metadata key', (b) => ({ ...b, metadata: { 'k\u0000': 1 } }), /body\.metadata/],
    ['a lone surrogate in metadata', (b) => ({ ...b, metadata: { emoji: '\ud83d' } }), /body\.metadata\.emoji/],
    ['a lone surrogate in body', (b) => ({ ...b, body: 'x\udc00' }), /body\.body/],
    ['a lone surrogate in external_id', (b) => ({ ...b, external_id: '\ud800' }), /body\.external_id/],
    ['metadata nested 5000 deep', (b) => deepMetadata(b, 5000), /body\.metadata.*deep/],
    ['metadata nested 33 deep', (b) => deepMetadata(b, 33), /body\.metadata.*deep/],
    ['metadata over 16 KiB', (b) => ({ ...b, metadata: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'x'.repeat(1000)])) }), /body\.metadata.*16384 bytes/]
  ]
  for (const [i, [name, make, field]] of cases.entries()) {
    const post = await call(app, 'POST', '/v1/messages', make(base()), `k-validation-${i}`)
    t.equal(post.statusCode, 400, `POST: ${name}`)
    t.equal(post.json().code, 'invalid_payload', `POST: ${name}`)
    t.match(post.json().message, field, `POST: ${name}`)
    const retry = await call(app, 'POST', '/v1/messages', make(base()))
    t.equal(retry.statusCode, 400, `POST again without a key: ${name}`)

    const sid = messageSid()
    const put = await call(app, 'PUT', `/v1/messages/${sid}`, make(base()))
    t.equal(put.statusCode, 400, `PUT: ${name}`)
    t.equal(put.json().code, 'invalid_payload', `PUT: ${name}`)
    t.match(put.json().message, field, `PUT: ${name}`)
    t.equal(await db.selectFrom('messages').select('sid').where('sid', '=', sid).executeTakeFirst(), undefined, `PUT stored nothing: ${name}`)
  }
  t.equal(fake.requests.length, 0, 'Twilio was never called')
  const stored = await db.selectFrom('messages').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  t.equal(Number(stored.n), 0)
})

t.test('PUT /v1/messages/:sid caps metadata at 16 KiB like POST (900 KiB was accepted)', async (t) => {
  const { app } = await buildTestApp(t)
  const big = Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`k${i}`, 'x'.repeat(20_000)]))
  const res = await call(app, 'PUT', `/v1/messages/${messageSid()}`, { to: randomNumber(), from: FROM, metadata: big })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'invalid_payload', message: /body\.metadata.*16384 bytes/ })
})

t.test('PUT /v1/messages/:sid with valid unicode (emoji, accents) is stored as given', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await call(app, 'PUT', `/v1/messages/${messageSid()}`, { to: randomNumber(), from: FROM, body: 'Grüße 👋', metadata: { e: '😀', nested: { a: [1, { b: 'ü' }] } } })
  t.equal(res.statusCode, 201)
  t.match(res.json(), { metadata: { e: '😀', nested: { a: [1, { b: 'ü' }] } } })
})
