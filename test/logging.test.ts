import { Writable } from 'node:stream'
import Fastify, { LogController } from 'fastify'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { addLogFields, installRequestLog } from '../src/http/request-log.ts'
import { loggerOptions } from '../src/logger.ts'
import { API_KEY, AUTH_TOKEN, apiGet, messageSid, postCallback, sign, smsCallback, testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'

t.test('logs carry request ids and never secrets, signatures or phone numbers', async (t) => {
  const { db } = await createTestDatabase(t)
  const lines: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const app = await buildApp(loadConfig(testEnv({ LOG_LEVEL: 'debug' })), { db, logStream })
  t.teardown(async () => { await app.close() })

  const sid = messageSid()
  const params = smsCallback(sid, 'undelivered', { ErrorCode: '30003', To: '+15559876543' })
  await postCallback(app, params)
  await postCallback(app, { ...params, MessageStatus: 'failed' }, { signParams: params }) // rejected, logged at warn
  await apiGet(app, `/v1/messages/${sid}`)
  await app.inject({ method: 'GET', url: '/v1/messages?to=%2B15559876543', headers: { authorization: `Bearer ${API_KEY}` } })
  await app.inject({ method: 'GET', url: `/v1/messages/${sid}`, headers: { 'x-request-id': 'req-from-caller-42', authorization: `Bearer ${API_KEY}` } })

  const all = lines.join('')
  const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.ok(entries.length > 5, 'something was logged')
  t.notMatch(all, '15559876543', 'the recipient number is not in any log line')
  t.notMatch(all, AUTH_TOKEN, 'the auth token is not logged')
  t.notMatch(all, sign(params), 'the signature is not logged')
  t.notMatch(all, API_KEY, 'the API key is not logged')
  t.ok(entries.filter((e) => e.req !== undefined).every((e) => typeof e.reqId === 'string'), 'request logs carry reqId')
  t.ok(entries.some((e) => e.reqId === 'req-from-caller-42'), "a caller's X-Request-Id is used")
  t.ok(entries.some((e) => e.apiKey === 'billing'), 'the API key name is logged')
  t.ok(entries.some((e) => e.level === 40 && e.verdict === 'invalid_signature'), 'a rejected callback is logged at warn')
  t.ok(entries.some((e) => e.to === '+155******43'), 'addresses appear masked')
})

t.test('the one line per request redacts the fields a route adds and keeps its request id', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const app = Fastify({ logger: { ...loggerOptions('info'), stream }, logController: new LogController({ disableRequestLogging: true }) })
  installRequestLog(app)
  app.get('/x', async (request) => {
    addLogFields(request, { sid: 'SM1', body: 'Your code is 123456', Body: 'Your code is 123456', token: 'tok_secret', params: { To: '+15551112222' } })
    return { ok: true }
  })
  t.teardown(async () => { await app.close() })
  await app.inject({ method: 'GET', url: '/x?to=%2B15559876543', headers: { 'x-request-id': 'r-1' } })
  const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'request completed')
  t.ok(line, 'the request line was written')
  t.equal(line?.sid, 'SM1', 'a route field is on it')
  t.equal(line?.body, '[redacted]', 'body is redacted')
  t.equal(line?.Body, '[redacted]', 'Body is redacted')
  t.equal(line?.token, '[redacted]', 'token is redacted')
  t.same(line?.params, { To: '[redacted]' }, 'params.To is redacted')
  t.equal(typeof line?.reqId, 'string', 'it carries the request id')
  t.notMatch(lines.join(''), '15559876543', 'the number in the query string is masked')
  t.notMatch(lines.join(''), '123456', 'the body is in no line')
  t.notMatch(lines.join(''), '15551112222', 'nor the number in params')
})
