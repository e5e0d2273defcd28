/**
 * Fuzzing every public route with fast-check against a real database (issue 10): correctly
 * signed provider bodies with random content as well as unsigned and malformed requests,
 * repeated and oversized parameters, deep nesting, odd Unicode (NUL, lone surrogates, BOM, RTL),
 * odd encodings, request targets, headers, query strings and cursors.
 *
 * Properties: never a 5xx and never a crash; whatever a webhook accepted can be read back
 * (`GET /v1/messages/:sid`, its events, and every list page); heap flat; and the logs of the
 * whole run hold no auth token, API key, signing secret, signature, or unmasked phone number or
 * e-mail address. Request counts per route are printed (docs/fuzzing.md records them);
 * FUZZ_RUNS overrides the 10,000 per route.
 */
import { connect } from 'node:net'
import { Writable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import type { InjectOptions } from 'fastify'
import t from 'tap'
import twilio from 'twilio'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import {
  ACCOUNT_SID, API_KEY, AUTH_TOKEN, OTHER_API_KEY, PUBLIC_BASE_URL, SECOND_TOKEN, STATUS_PATH,
  SUB_ACCOUNT_SID, SUB_ACCOUNT_TOKEN, testEnv
} from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { RESEND_PATH, RESEND_SECRET, svixHeaders } from './helpers/resend.ts'

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000)
// About 100,000 requests: more than the default 120 s per file on a loaded machine.
t.setTimeout(900_000)
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

// Personal data the generators use, so the log check knows exactly what must never appear.
const PHONES = ['+14155550100', '+15558675310', '+447700900123', '+819012345678']
const EMAILS = ['ada.lovelace@example.com', 'grace.hopper@example.org']
const SECRETS = [AUTH_TOKEN, SECOND_TOKEN, SUB_ACCOUNT_TOKEN, API_KEY, OTHER_API_KEY, RESEND_SECRET, RESEND_SECRET.slice(6)]

const fakeTwilio = await startFakeTwilio()
t.teardown(async () => { await fakeTwilio.close() })
const { db } = await createTestDatabase(t)

// Every log line is checked as it is written (keeping them all would grow the heap).
const logProblems: string[] = []
const sentSignatures = new Set<string>()
let logLines = 0
/** The last error lines, to explain a 5xx. */
const lastErrors: string[] = []
const logStream = new Writable({
  write (chunk: Buffer, _enc, cb) {
    for (const line of chunk.toString().split('\n')) {
      if (line === '') continue
      logLines++
      if (line.startsWith('{"level":50')) { lastErrors.push(line.slice(0, 1500)); if (lastErrors.length > 3) lastErrors.shift() }
      for (const s of [...SECRETS, ...PHONES, ...EMAILS]) if (line.includes(s)) logProblems.push(`${s.slice(0, 6)}… in ${line.slice(0, 300)}`)
      for (const m of line.matchAll(/[A-Za-z0-9+/]{27}=/g)) if (sentSignatures.has(m[0])) logProblems.push(`a signature in ${line.slice(0, 300)}`)
      if (/v1,[A-Za-z0-9+/]{43}=/.test(line)) logProblems.push(`an svix signature in ${line.slice(0, 300)}`)
    }
    cb()
  }
})
const app = await buildApp(loadConfig(testEnv({ LOG_LEVEL: 'info', TWILIO_API_BASE_URL: fakeTwilio.url, STREAMS_PER_KEY: '1000', RATE_LIMIT_PER_MINUTE: '1000000000' })), { db, logStream })
t.teardown(async () => { await app.close() })
await app.ready()

const counts: Record<string, number> = {}
const accepted: string[] = []

async function send (route: string, opts: InjectOptions): Promise<{ statusCode: number, body: string }> {
  counts[route] = (counts[route] ?? 0) + 1
  const res = await app.inject(opts)
  if (res.statusCode >= 500) throw new Error(`${route}: ${res.statusCode} ${res.body.slice(0, 300)} for ${JSON.stringify(opts).slice(0, 600)}; log: ${lastErrors.join('\n')}`)
  return res
}

// --- arbitraries -------------------------------------------------------------------------------
const oddChar = fc.constantFrom('\u0000', '\ud800', '\udfff', '\ufeff', '\u202e', '\u2028', '%', '&', '=', '+', '?', '#', 'é', '😀', '\\', '"', "'", '\n', '\r', '<', ' ', '\u00a0', '\uffff')
const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: oddChar, maxLength: 20 }),
  fc.string({ unit: fc.oneof(oddChar, fc.constantFrom('a', '1', '-', '_', '.')), maxLength: 40 })
)
const hex32 = fc.stringMatching(/^[0-9a-f]{32}$/)
const twilioSid = fc.oneof({ weight: 4, arbitrary: fc.tuple(fc.constantFrom('SM', 'MM'), hex32).map(([p, h]) => p + h) }, { weight: 1, arbitrary: nasty })
const status = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('queued', 'sent', 'delivered', 'undelivered', 'failed', 'read', 'accepted', 'scheduled', 'canceled') }, { weight: 1, arbitrary: nasty })
const phone = fc.oneof(fc.constantFrom(...PHONES), fc.constantFrom(...PHONES).map((p) => `whatsapp:${p}`), nasty)
const dateish = fc.oneof(
  fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('9999-12-31T23:59:59-01:00', '2016-12-31T23:59:60Z', '2024-01-01T00:00:00+05', '0000-01-01T00:00:00Z', '2024-02-30T00:00:00Z', '+275760-09-13T00:00:00Z', '2024-01-01T24:00:00Z', '1970-01-01T00:00:00Z', ''),
  nasty
)

/** Form parameters as pairs (names may repeat). */
const twilioPairs = fc.record({
  sid: twilioSid,
  status,
  account: fc.constantFrom(ACCOUNT_SID, SUB_ACCOUNT_SID, 'AC' + 'c'.repeat(32), ''),
  to: phone,
  from: phone,
  extra: fc.array(fc.tuple(fc.oneof(fc.constantFrom('ErrorCode', 'ErrorMessage', 'RawDlrDoneDate', 'ChannelPrefix', 'MessageStatus', 'To', 'Body', 'MessagingServiceSid'), nasty), nasty), { maxLength: 8 }),
  many: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 90, max: 400 }) }),
  big: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1000, max: 40_000 }) })
}).map((r) => {
  const pairs: Array<[string, string]> = [['MessageSid', r.sid], ['MessageStatus', r.status], ['To', r.to], ['From', r.from], ...r.extra]
  if (r.account !== '') pairs.push(['AccountSid', r.account])
  for (let i = 0; i < r.many; i++) pairs.push([`P${i}`, String(i)])
  if (r.big > 0) pairs.push(['Body', 'x'.repeat(r.big)])
  return { pairs, account: r.account, sid: r.sid }
})

function formOf (pairs: Array<[string, string]>): string {
  const form = new URLSearchParams()
  for (const [k, v] of pairs) form.append(k, v)
  return form.toString()
}

/** Parameters as twilio-node signs them: repeated names as arrays. */
function paramsOf (pairs: Array<[string, string]>): Record<string, string | string[]> {
  // What the server's parser sees after a URLSearchParams round trip (lone surrogates become U+FFFD).
  const parsed = new URLSearchParams(formOf(pairs))
  const params: Record<string, string | string[]> = {}
  for (const [k, v] of parsed) {
    const had = params[k]
    params[k] = had === undefined ? v : [had, v].flat()
  }
  return params
}

const query = fc.oneof(fc.constant(''), fc.string({ unit: fc.constantFrom('a', '=', '&', '%', '2', 'F', '?', '#', '+'), maxLength: 20 }).map((q) => `?${q}`), nasty.map((q) => `?x=${encodeURIComponent(q.toWellFormed())}`))

// --- POST /webhooks/twilio/status ---------------------------------------------------------------
t.test(`POST ${STATUS_PATH}: ${RUNS} generated callbacks, signed and not`, async (t) => {
  let heapAfterWarmup = 0
  let n = 0
  await fc.assert(fc.asyncProperty(twilioPairs, fc.constantFrom('signed', 'signed', 'signed', 'unsigned', 'bad-signature', 'wrong-type', 'query'), query, async (cb, how, q) => {
    if (++n === Math.min(1000, Math.ceil(RUNS / 10))) { gc(); heapAfterWarmup = process.memoryUsage().heapUsed }
    const path = how === 'query' ? STATUS_PATH + q : STATUS_PATH
    const token = cb.account === SUB_ACCOUNT_SID ? SUB_ACCOUNT_TOKEN : AUTH_TOKEN
    const signature = twilio.getExpectedTwilioSignature(token, PUBLIC_BASE_URL + path, paramsOf(cb.pairs))
    sentSignatures.add(signature)
    const headers: Record<string, string> = { 'content-type': how === 'wrong-type' ? 'application/json' : 'application/x-www-form-urlencoded' }
    if (how === 'signed' || how === 'query' || how === 'wrong-type') headers['x-twilio-signature'] = signature
    if (how === 'bad-signature') headers['x-twilio-signature'] = signature.slice(1) + 'A'
    const res = await send('twilio', { method: 'POST', url: path, headers, payload: formOf(cb.pairs) })
    if (res.statusCode === 200) {
      if (how !== 'signed' && how !== 'query') throw new Error(`accepted without a valid signature: ${how}`)
      accepted.push(cb.sid)
    }
  }), { numRuns: RUNS })
  gc()
  const growth = process.memoryUsage().heapUsed - heapAfterWarmup
  t.ok(growth < 64 * 1024 * 1024, `heap flat: ${(growth / 1048576).toFixed(1)} MiB after warm-up`)
  t.ok(accepted.length > RUNS / 20, `${accepted.length} accepted`)
})

// --- POST /webhooks/resend ---------------------------------------------------------------------
const jsonish = fc.jsonValue({ maxDepth: 4 })
const resendPayload = fc.record({
  type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('email.sent', 'email.delivered', 'email.bounced', 'email.opened', 'email.clicked', 'email.failed', 'email.complained', 'email.delivery_delayed', 'email.suppressed', 'contact.created') }, { weight: 1, arbitrary: nasty }),
  created_at: dateish,
  data: fc.record({
    email_id: fc.oneof({ weight: 4, arbitrary: fc.uuid() }, { weight: 1, arbitrary: nasty }),
    from: fc.oneof(fc.constantFrom(...EMAILS), nasty),
    to: fc.oneof(fc.array(fc.oneof(fc.constantFrom(...EMAILS), nasty), { maxLength: 3 }), nasty, jsonish),
    subject: fc.oneof(nasty, jsonish),
    tags: jsonish,
    bounce: fc.record({ type: nasty, subType: nasty, message: nasty }),
    click: fc.record({ link: nasty, timestamp: dateish, ipAddress: nasty, userAgent: nasty })
  }, { requiredKeys: ['email_id'] })
})

function deep (depth: number): string {
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
}

t.test(`POST ${RESEND_PATH}: ${RUNS} generated deliveries, signed and not`, async () => {
  await fc.assert(fc.asyncProperty(resendPayload, fc.constantFrom('signed', 'signed', 'signed', 'deep', 'latin1', 'unsigned', 'stale', 'garbage'), fc.integer({ min: 30, max: 5000 }), async (payload, how, depth) => {
    let body: string | Buffer = JSON.stringify(payload)
    if (how === 'deep') body = body.replace(/^\{/, `{"deep":${deep(depth)},`)
    if (how === 'latin1') body = Buffer.concat([Buffer.from(body.slice(0, -1)), Buffer.from(',"x":"\xe9\xff"}', 'latin1')])
    if (how === 'garbage') body = body.slice(0, Math.floor(body.length / 2))
    const signed = svixHeaders(body.toString('latin1'), { at: how === 'stale' ? new Date(Date.now() - 3600_000) : new Date() })
    if (how === 'latin1') Object.assign(signed, svixHeaders(body as unknown as string))
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(how === 'unsigned' ? {} : signed) }
    const res = await send('resend', { method: 'POST', url: RESEND_PATH, headers, payload: body })
    if (res.statusCode === 200) {
      if (how === 'unsigned' || how === 'stale') throw new Error(`accepted without a valid signature: ${how}`)
      const sid = (payload.data as { email_id: unknown }).email_id
      if (typeof sid === 'string' && JSON.parse(res.body).outcome !== 'ignored') accepted.push(sid)
    }
  }), { numRuns: RUNS })
})

// --- reads -------------------------------------------------------------------------------------
const auth = fc.oneof({ weight: 8, arbitrary: fc.constant(`Bearer ${API_KEY}`) }, { weight: 1, arbitrary: fc.constantFrom('', 'Bearer', `bearer ${API_KEY}`, `Bearer ${API_KEY} x`, 'Basic eDp5') }, { weight: 1, arbitrary: nasty.map((s) => `Bearer ${s.replace(/[^\x20-\x7e]/g, '')}`) })
const cursor = fc.oneof(
  fc.tuple(dateish, nasty).map(([d, s]) => Buffer.from(JSON.stringify([d, s])).toString('base64url')),
  fc.tuple(fc.date({ noInvalidDate: true }), twilioSid).map(([d, s]) => Buffer.from(JSON.stringify([d.toISOString().replace('Z', '000').replace('T', 'T'), s])).toString('base64url')),
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? '').toString('base64url')),
  nasty
)
const listParam = fc.oneof(
  fc.tuple(fc.constant('status'), fc.oneof(status, fc.constantFrom('email.delivered', 'other'))),
  fc.tuple(fc.constant('channel'), fc.oneof(fc.constantFrom('sms', 'whatsapp', 'email', 'mms'), nasty)),
  fc.tuple(fc.constant('to'), phone),
  fc.tuple(fc.constant('external_id'), nasty),
  fc.tuple(fc.constantFrom('since', 'until'), dateish),
  fc.tuple(fc.constant('limit'), fc.oneof(fc.integer({ min: -5, max: 300 }).map(String), fc.constantFrom('Infinity', '-Infinity', 'NaN', '1e400', '0x10', '1.5', '', '50 ', ' 5'), nasty)),
  fc.tuple(fc.constant('cursor'), cursor),
  fc.tuple(nasty, nasty)
)
/** A query string: mostly well encoded, sometimes raw bytes and broken escapes. */
const listQuery = fc.tuple(fc.array(listParam, { maxLength: 5 }), fc.boolean()).map(([params, raw]) =>
  raw ? params.map(([k, v]) => `${k}=${v.replace(/[^\x21-\x7e]/g, '%')}`).join('&') : params.map(([k, v]) => `${encodeURIComponent(k.toWellFormed())}=${encodeURIComponent(v.toWellFormed())}`).join('&'))

t.test(`GET /v1/messages: ${RUNS} generated queries`, async () => {
  await fc.assert(fc.asyncProperty(listQuery, auth, async (q, authorization) => {
    await send('GET /v1/messages', { method: 'GET', url: `/v1/messages?${q}`, headers: { authorization } })
  }), { numRuns: RUNS })
})

const sidPath = fc.oneof(twilioSid, fc.uuid(), nasty).map((s) => encodeURIComponent(s.toWellFormed()))
for (const suffix of ['', '/events']) {
  t.test(`GET /v1/messages/:sid${suffix}: ${RUNS} generated sids`, async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(sidPath, fc.constantFrom(...accepted.slice(0, 500)).map(encodeURIComponent)), auth, async (sid, authorization) => {
      await send(`GET /v1/messages/:sid${suffix}`, { method: 'GET', url: `/v1/messages/${sid}${suffix}`, headers: { authorization } })
    }), { numRuns: RUNS })
  })
}

t.test(`GET /v1/stats: ${RUNS} generated queries`, async () => {
  const statsParam = fc.oneof(fc.tuple(fc.constantFrom('since', 'until'), dateish), fc.tuple(fc.constant('channel'), fc.oneof(fc.constantFrom('sms', 'email'), nasty)), fc.tuple(nasty, nasty))
  await fc.assert(fc.asyncProperty(fc.array(statsParam, { maxLength: 3 }), auth, async (params, authorization) => {
    const q = params.map(([k, v]) => `${encodeURIComponent(k.toWellFormed())}=${encodeURIComponent(v.toWellFormed())}`).join('&')
    await send('GET /v1/stats', { method: 'GET', url: `/v1/stats?${q}`, headers: { authorization } })
  }), { numRuns: RUNS })
})

const sendBody = fc.record({
  to: phone,
  from: phone,
  body: nasty,
  external_id: nasty,
  metadata: fc.oneof(jsonish, fc.integer({ min: 30, max: 3000 }).map((d) => JSON.parse(deep(d)) as unknown)),
  fallback: fc.oneof(fc.boolean(), nasty),
  messaging_service_sid: fc.oneof(fc.constant('MG' + 'a'.repeat(32)), nasty),
  account_sid: fc.constantFrom(ACCOUNT_SID, SUB_ACCOUNT_SID)
}, { requiredKeys: [] })

t.test(`POST /v1/messages and PUT /v1/messages/:sid: ${RUNS} generated bodies each`, async () => {
  await fc.assert(fc.asyncProperty(sendBody, fc.constantFrom('json', 'text', 'form', 'broken'), auth, async (body, how, authorization) => {
    const payload = how === 'broken' ? JSON.stringify(body).slice(0, -2) : how === 'form' ? 'to=%2B1&body=x' : JSON.stringify(body)
    const type = how === 'text' ? 'text/plain' : how === 'form' ? 'application/x-www-form-urlencoded' : 'application/json'
    await send('POST /v1/messages', { method: 'POST', url: '/v1/messages', headers: { authorization, 'content-type': type }, payload })
  }), { numRuns: RUNS })
  await fc.assert(fc.asyncProperty(sendBody, sidPath, auth, async (body, sid, authorization) => {
    await send('PUT /v1/messages/:sid', { method: 'PUT', url: `/v1/messages/${Math.random() < 0.5 ? sid : 'SM' + 'a'.repeat(32)}`, headers: { authorization, 'content-type': 'application/json' }, payload: JSON.stringify(body) })
  }), { numRuns: RUNS })
})

t.test(`GET /health, /openapi.yaml, /metrics and unknown routes: ${RUNS} generated requests`, async () => {
  await fc.assert(fc.asyncProperty(fc.constantFrom('/health', '/openapi.yaml', '/metrics', '/v1/stream', '/webhooks/twilio/status', '/'), query, fc.constantFrom('GET', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH'), async (path, q, method) => {
    // GET /v1/stream would stay open: only its refusals are fuzzed here (wrong method or no key).
    if (path === '/v1/stream' && method === 'GET') method = 'DELETE'
    await send('other', { method: method as 'GET', url: path + q })
  }), { numRuns: RUNS })
})

// --- every accepted message reads back ------------------------------------------------------------
t.test('everything accepted reads back: each message, its events, and every list page', async (t) => {
  const unique = [...new Set(accepted)]
  for (const sid of unique) {
    const one = await send('read-back', { method: 'GET', url: `/v1/messages/${encodeURIComponent(sid)}`, headers: { authorization: `Bearer ${API_KEY}` } })
    if (one.statusCode !== 200) throw new Error(`accepted ${sid} reads as ${one.statusCode}: ${one.body.slice(0, 200)}`)
    const events = await send('read-back', { method: 'GET', url: `/v1/messages/${encodeURIComponent(sid)}/events`, headers: { authorization: `Bearer ${API_KEY}` } })
    if (events.statusCode !== 200) throw new Error(`events of ${sid}: ${events.statusCode}`)
  }
  let next: string | null = ''
  let pages = 0
  let rows = 0
  while (next !== null) {
    const res = await send('read-back', { method: 'GET', url: `/v1/messages?limit=200${next === '' ? '' : `&cursor=${next}`}`, headers: { authorization: `Bearer ${API_KEY}` } })
    t.equal(res.statusCode, 200)
    const page = JSON.parse(res.body) as { data: unknown[], next_cursor: string | null }
    rows += page.data.length
    pages++
    next = page.next_cursor
  }
  t.ok(rows >= unique.length, `${unique.length} accepted messages read back, ${rows} rows in ${pages} list pages`)
})

// --- request targets over real HTTP --------------------------------------------------------------
async function raw (port: number, request: string): Promise<number> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.setTimeout(5000, () => socket.destroy())
    socket.on('data', (chunk) => { data += chunk.toString('latin1') })
    socket.on('error', () => resolve(0))
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)))
    socket.end(request)
  })
}

t.test('request targets over real HTTP: absolute-form, asterisk, odd paths and bytes', async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const target = fc.oneof(
    fc.tuple(fc.constantFrom('http://', 'https://', 'HTTP://', 'x://', '//'), fc.string({ unit: fc.constantFrom('a', '.', ':', '@', '[', ']', '1', '%'), maxLength: 12 }), fc.constantFrom(STATUS_PATH, RESEND_PATH, '/v1/messages', '/health', '')).map(([s, h, p]) => `${s}${h}${p}`),
    fc.constantFrom('*', '/webhooks/twilio/status/', '/webhooks//twilio/status', '/webhooks/twilio/status?%', '/webhooks/twilio/status?a=%ZZ', '/%2e%2e/webhooks/twilio/status', '/v1/messages/%00', '/v1/messages/%ZZ'),
    fc.string({ unit: fc.constantFrom('/', 'a', '%', '?', '#', ';', '.', '\u00e9'), minLength: 1, maxLength: 30 }).map((p) => `/${p}`)
  )
  let statuses = 0
  await fc.assert(fc.asyncProperty(target, fc.constantFrom('POST', 'GET'), async (tgt, method) => {
    counts['raw HTTP'] = (counts['raw HTTP'] ?? 0) + 1
    const body = formOf([['MessageSid', 'SM' + 'a'.repeat(32)], ['MessageStatus', 'sent'], ['AccountSid', ACCOUNT_SID]])
    const status = await raw(port, `${method} ${tgt} HTTP/1.1\r\nhost: hooks.example.com\r\ncontent-type: application/x-www-form-urlencoded\r\nx-twilio-signature: ${'A'.repeat(27)}=\r\nauthorization: Bearer ${API_KEY}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
    if (status >= 500) throw new Error(`${method} ${tgt}: ${status}`)
    if (status !== 0) statuses++
  }), { numRuns: 300 })
  t.ok(statuses > 0, 'the server answered')
})

t.test('the logs of the whole run hold no secret, signature, or unmasked phone number or e-mail', async (t) => {
  t.ok(logLines > RUNS, `${logLines} log lines checked`)
  t.same(logProblems.slice(0, 5), [], `${logProblems.length} problems`)
  t.comment(`requests per route: ${JSON.stringify(counts)}`)
})
