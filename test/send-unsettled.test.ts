/**
 * `POST /v1/messages` with an `Idempotency-Key` when an earlier attempt under the key may still
 * reach Twilio (docs/fallback.md, rules 3 and 5, as the send path applies them), through the app,
 * the real twilio-node client against the fake Twilio API, and a proxy in front of PostgreSQL that
 * can hold a statement's answer. Invariant: one message at Twilio per key.
 */
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { API_KEY, contractChecker } from './helpers/app.ts'
import { proxiedTestDatabase } from './helpers/cut-proxy.ts'
import { fallbackEnv, randomNumber, sleep, SMS_FROM } from './helpers/fallback.ts'

t.setTimeout(3 * 60_000)

const TEXT = 'Your code is 481516'
// The key's lease is 2 x the request timeout + 5 s (src/app.ts): 5.6 s here.
const TIMEOUT_MS = 300
const LEASE_MS = 2 * TIMEOUT_MS + 5000

const fake = await startFakeTwilio()
t.teardown(async () => { await fake.close() })
// A held answer must not end in the client's query timeout: a paused process would not time out either.
const { url, handle, proxy, proxied } = await proxiedTestDatabase(t, { queryTimeoutMs: 60_000 })
const app = await buildApp(loadConfig(fallbackEnv(fake.url, { TWILIO_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) })), { db: proxied.db, jobQueue: { connectionString: url }, listen: handle.listen })
contractChecker(t)(app)
t.teardown(async () => { await app.close() })
await app.ready()

async function send (key: string, to: string): Promise<Awaited<ReturnType<typeof app.inject>>> {
  return await app.inject({ method: 'POST', url: '/v1/messages', headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': key }, payload: { to, from: SMS_FROM, body: TEXT } })
}

t.test('a retry with the key soon after a timeout, while Twilio may still accept the first request, sends nothing and says when to retry; the later retry adopts the late message', async (t) => {
  const to = randomNumber()
  const key = `k-late-${to}`
  // Twilio creates the first message 3 s after the request, long after the client's 300 ms timeout
  // but within the key's lease.
  fake.answerNextSendsTo(to, { kind: 'accept_late', delayMs: 3000 }, { kind: 'ok' })
  const firstAt = Date.now()
  const first = await send(key, to)
  t.equal(first.statusCode, 502, 'the first request timed out')
  t.match(first.json(), { code: 'twilio_unavailable' })

  const retry = await send(key, to)
  t.equal(retry.statusCode, 409, `the retry at once sends nothing and answers 409 (it answered ${retry.statusCode} ${retry.body})`)
  t.match(retry.json(), { code: 'idempotency_in_progress', message: /may still be accepted by Twilio/ })
  const wait = Number(retry.headers['retry-after'])
  t.ok(wait >= 1 && wait <= Math.ceil(LEASE_MS / 1000), `Retry-After ${wait} s: until the first request is a lease old`)
  t.equal(fake.requests.filter((r) => r.method === 'POST' && r.form?.To === to).length, 1, 'one create so far')

  let later = retry
  const deadline = Date.now() + 30_000
  while (later.statusCode !== 201 && Date.now() < deadline) {
    await sleep(Math.max(1, Number(later.headers['retry-after'] ?? 1)) * 1000)
    later = await send(key, to)
  }
  t.equal(later.statusCode, 201)
  // Count once the late message has landed.
  await sleep(Math.max(1000, firstAt + 4000 - Date.now()))
  const sent = fake.sent().filter((m) => m.to === to)
  t.equal(sent.length, 1, `one message at Twilio (saw ${sent.length})`)
  t.equal(later.json().sid, sent[0]?.sid, 'the late one, adopted')
})

t.test('a request stalled between "attempt started" and its create for longer than its lease sends nothing; the request that took the key over sends the one message', async (t) => {
  const to = randomNumber()
  const key = `k-stall-${to}`
  // The first request's "attempt started" commits, but it hears of it only after 2 leases (a
  // paused process). The retry takes the key over once the lease ran out, finds nothing, sends.
  proxy.holdAnswerTo('"locked_until" = now()', 2 * LEASE_MS)
  const first = send(key, to)
  await sleep(LEASE_MS + 500)
  let retry = await send(key, to)
  const deadline = Date.now() + 30_000
  while (retry.statusCode !== 201 && Date.now() < deadline) {
    await sleep(1000)
    retry = await send(key, to)
  }
  t.equal(retry.statusCode, 201, 'the retry sent it')
  const stalled = await first
  await sleep(1000)
  const sent = fake.sent().filter((m) => m.to === to)
  t.equal(sent.length, 1, `one message at Twilio (saw ${sent.length}; the stalled request answered ${stalled.statusCode} ${stalled.body})`)
  t.equal(retry.json().sid, sent[0]?.sid)
  t.equal(stalled.statusCode, 503, 'the stalled request says nothing was sent')
  t.match(stalled.json(), { code: 'overloaded' })
})
