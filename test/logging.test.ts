import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
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
