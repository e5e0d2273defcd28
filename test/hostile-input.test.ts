/**
 * Hostile input found by fuzzing (issue 10): each case was a 500, a 503 forever, or a value
 * accepted and then breaking a read. A value PostgreSQL or the response schema cannot hold is
 * dealt with at the door: normalised where nothing a user needs is lost, otherwise a 4xx naming
 * the field.
 */
import { connect } from 'node:net'
import t from 'tap'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback, STATUS_PATH } from './helpers/app.ts'
import { emailEvent, emailId, postResend } from './helpers/resend.ts'

/** Sends one raw HTTP/1.1 request and returns the status code of the answer. */
async function rawRequest (port: number, head: string, body: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.on('data', (chunk) => { data += chunk.toString() })
    socket.on('error', reject)
    socket.on('end', () => { resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)) })
    socket.write(`${head}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  })
}

/** A signed Resend delivery whose `data.tags` nests `depth` objects (built as text: JSON.stringify would overflow). */
function nestedDelivery (depth: number): string {
  const base = JSON.stringify(emailEvent('email.delivered', emailId(), { tags: 'HOLE' }))
  return base.replace('"HOLE"', '{"a":'.repeat(depth) + '"x"' + '}'.repeat(depth))
}

t.test('POST /webhooks/twilio/status with an absolute-form request target is a 403, not a 500', async (t) => {
  // With a port in PUBLIC_BASE_URL, base + target was no URL at all and twilio's check threw.
  const { app } = await buildTestApp(t, { PUBLIC_BASE_URL: 'http://localhost:3000' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const body = new URLSearchParams(smsCallback(messageSid(), 'sent')).toString()
  const status = await rawRequest(port, `POST http://x${STATUS_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\nx-twilio-signature: abc`, body)
  t.equal(status, 403)
  const unsigned = await rawRequest(port, `POST http://x${STATUS_PATH}?a=%ZZ HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded`, body)
  t.equal(unsigned, 403)
})

t.test('POST /webhooks/resend with deeply nested JSON is a 400 naming the limit, not a 500 or 503', async (t) => {
  const { app } = await buildTestApp(t)
  for (const depth of [200, 5000, 20000]) {
    const res = await postResend(app, nestedDelivery(depth))
    t.equal(res.statusCode, 400, `depth ${depth}`)
    t.match(res.json().message, /nest/)
  }
})

t.test('POST /webhooks/resend: a lone UTF-16 surrogate is stored as U+FFFD, and reads work', async (t) => {
  const { app } = await buildTestApp(t)
  const id = emailId()
  const body = JSON.stringify(emailEvent('email.delivered', id, { subject: 'Hi \ud800 there', tags: { '\udc00k': 'v\ud83d' } }))
  t.ok(body.includes('\\ud800'), 'the body carries the escaped lone surrogate')
  const res = await postResend(app, body)
  t.equal(res.statusCode, 200)
  const msg = await apiGet(app, `/v1/messages/${id}`)
  t.equal(msg.statusCode, 200)
  t.equal(msg.json().subject, 'Hi \ufffd there')
  const events = await apiGet(app, `/v1/messages/${id}/events`)
  t.equal(events.statusCode, 200)
  t.same(events.json().data[0].params.data.tags, { '\ufffdk': 'v\ufffd' })
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tidings_input_normalized_total\{source="resend",reason="lone_surrogate"\} 1/)
})

t.test('POST /webhooks/resend: an impossible created_at is treated as absent; GET and lists still work', async (t) => {
  const { app } = await buildTestApp(t)
  for (const createdAt of ['9999-12-31T23:59:59-01:00', '0000-01-01T00:00:00Z', '+275760-09-13T00:00:00Z']) {
    const id = emailId()
    const res = await postResend(app, emailEvent('email.delivered', id, {}, createdAt))
    t.equal(res.statusCode, 200, createdAt)
    t.equal((await apiGet(app, `/v1/messages/${id}`)).statusCode, 200)
    const events = await apiGet(app, `/v1/messages/${id}/events`)
    t.equal(events.statusCode, 200)
    t.equal(events.json().data[0].occurred_at, null)
    const opened = await postResend(app, emailEvent('email.opened', id, {}, createdAt))
    t.equal(opened.statusCode, 200)
    t.equal((await apiGet(app, `/v1/messages/${id}/events`)).statusCode, 200)
  }
  t.equal((await apiGet(app, '/v1/messages?limit=200')).statusCode, 200)
})

t.test('GET /v1/messages: hostile query values are a 400 naming the field', async (t) => {
  const { app } = await buildTestApp(t)
  await postCallback(app, smsCallback(messageSid(), 'sent'))
  const cases: Array<[string, RegExp]> = [
    ['to=%00', /querystring\.to/],
    ['external_id=a%00b', /querystring\.external_id/],
    ['since=2016-12-31T23:59:60Z', /querystring\.since/],
    ['since=2024-01-01T00:00:00%2B05', /querystring\.since/],
    ['until=9999-12-31T23:59:59-01:00', /querystring\.until/],
    ['until=2024-01-01T00:00:00%2B05', /querystring\.until/],
    ['limit=Infinity', /querystring\.limit/],
    ['limit=1e400', /querystring\.limit/],
    ['cursor=' + Buffer.from(JSON.stringify(['2024-13-45T99:99:99.000000', 'SMx'])).toString('base64url'), /querystring\.cursor/],
    ['cursor=' + Buffer.from(JSON.stringify(['2024-01-01T00:00:00.000000', 'S\u0000'])).toString('base64url'), /querystring\.cursor/],
    ['cursor=' + Buffer.from(JSON.stringify(['99999-01-01T00:00:00.000000', 'SM1'])).toString('base64url'), /querystring\.cursor/],
    ['cursor=bnVsbA', /querystring\.cursor/]
  ]
  for (const [query, field] of cases) {
    const res = await apiGet(app, `/v1/messages?${query}`)
    t.equal(res.statusCode, 400, query)
    t.match(res.json().message, field, query)
  }
})

t.test('GET /v1/stats: times the schema admits but Date or the response cannot hold are a 400', async (t) => {
  const { app } = await buildTestApp(t)
  for (const query of ['since=2016-12-31T23:59:60Z', 'until=2024-01-01T00:00:00%2B05', 'since=9999-12-31T23:59:59-01:00']) {
    const res = await apiGet(app, `/v1/stats?${query}`)
    t.equal(res.statusCode, 400, query)
    t.match(res.json().message, /querystring\.(since|until)/)
  }
})

t.test('PUT /v1/messages/:sid: NUL, a lone surrogate or deep nesting in a JSON body is a 400 naming the field', async (t) => {
  const { app } = await buildTestApp(t)
  const put = async (body: string): Promise<{ statusCode: number, json: () => { message: string } }> =>
    await app.inject({ method: 'PUT', url: `/v1/messages/${messageSid()}`, headers: { authorization: 'Bearer k_test_billing_0123456789abcdef', 'content-type': 'application/json' }, payload: body })
  const nul = await put(JSON.stringify({ to: '+15558675310', external_id: 'a\u0000b' }))
  t.equal(nul.statusCode, 400)
  t.match(nul.json().message, /external_id contains a NUL/)
  const deep = await put(`{"to":"+15558675310","metadata":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`)
  t.equal(deep.statusCode, 400)
  t.match(deep.json().message, /metadata\.a.*nests/)
  const sid = messageSid()
  const res = await app.inject({ method: 'PUT', url: `/v1/messages/${sid}`, headers: { authorization: 'Bearer k_test_billing_0123456789abcdef', 'content-type': 'application/json' }, payload: JSON.stringify({ to: '+15558675310', metadata: { note: 'x\ud800' } }) })
  t.equal(res.statusCode, 400)
  t.match(res.json().message, /body\.metadata\.note contains a lone UTF-16 surrogate/)
  t.equal((await apiGet(app, `/v1/messages/${sid}`)).statusCode, 404, 'nothing was stored')
})

t.test('metrics: an unknown status name is counted as "other", so label cardinality stays bounded', async (t) => {
  const { app } = await buildTestApp(t)
  for (let i = 0; i < 5; i++) t.equal((await postCallback(app, smsCallback(messageSid(), `made_up_${'abcde'[i]}`))).statusCode, 200)
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.notMatch(metrics, /made_up/)
  t.match(metrics, /tidings_events_recorded_total\{channel="sms",status="other"\} 5/)
})

t.test('POST /webhooks/twilio/status: an unsigned request is bounded before the signature check', async (t) => {
  const { app } = await buildTestApp(t)
  const many: Record<string, string> = smsCallback(messageSid(), 'sent')
  for (let i = 0; i < 100; i++) many[`P${i}`] = 'x'
  const tooMany = await postCallback(app, many)
  t.equal(tooMany.statusCode, 400, 'more than WEBHOOK_MAX_PARAMS parameters: refused even when signed')
  t.match(tooMany.json().message, /WEBHOOK_MAX_PARAMS/)
  const big = await postCallback(app, smsCallback(messageSid(), 'sent', { Body: 'x'.repeat(16 * 1024) }))
  t.equal(big.statusCode, 413)
  const fits = await postCallback(app, smsCallback(messageSid(), 'sent', { Body: 'x'.repeat(12 * 1024) }))
  t.equal(fits.statusCode, 200, 'a large but plausible callback is still accepted')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /tidings_input_refused_total\{source="twilio",reason="too_many_params"\} 1/)
})

t.test('POST /webhooks/twilio/status: a rejected signature names the checked URL and hints at PUBLIC_BASE_URL', async (t) => {
  const lines: string[] = []
  const { Writable } = await import('node:stream')
  const { buildApp } = await import('../src/app.ts')
  const { loadConfig } = await import('../src/config/config.ts')
  const { testEnv } = await import('./helpers/app.ts')
  const { createTestDatabase } = await import('./helpers/database.ts')
  const { db } = await createTestDatabase(t)
  const app = await buildApp(loadConfig(testEnv({ LOG_LEVEL: 'info' })), {
    db, logStream: new Writable({ write (chunk, _enc, cb) { lines.push(chunk.toString()); cb() } })
  })
  t.teardown(async () => { await app.close() })
  const res = await postCallback(app, smsCallback(messageSid(), 'sent'), { signature: 'A'.repeat(27) + '=' })
  t.equal(res.statusCode, 403)
  t.match(res.json().message, /README\.md, section "403 invalid_signature from Twilio"/)
  const warn = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'rejected Twilio callback')
  t.equal(warn.checkedUrl, `https://hooks.example.com${STATUS_PATH}`)
  t.match(warn.hint, /PUBLIC_BASE_URL/)
  t.match(warn.hint, /http:\/\/localhost:80/)
})

t.test('POST /webhooks/twilio/status: a "__proto__" parameter is stored as a plain field, prototypes untouched', async (t) => {
  const { app } = await buildTestApp(t)
  const sid = messageSid()
  // A computed key: an own property named "__proto__", as querystring.parse gives it.
  const params = { ...smsCallback(sid, 'delivered'), ['__proto__']: 'x', constructor: 'y' }
  const res = await postCallback(app, params)
  t.equal(res.statusCode, 200)
  const events = await apiGet(app, `/v1/messages/${sid}/events`)
  t.equal(events.statusCode, 200)
  const stored = events.json().data[0].params
  t.ok(Object.hasOwn(stored, '__proto__'), 'an own field named "__proto__"')
  t.equal(stored.__proto__, 'x') // eslint-disable-line no-proto
  t.equal(stored.constructor, 'y')
  t.equal(Object.getPrototypeOf({}).x, undefined, 'Object.prototype gained nothing')
})
