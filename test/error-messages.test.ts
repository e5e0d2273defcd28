/**
 * Error answers that say what to fix: the content type a route takes, the body limit, the allowed
 * values of a query parameter, the known statuses, and how to turn the Resend route on.
 */
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { STATUS_PATH, apiGet, buildTestApp, contractChecker, formBody, messageSid, sign, smsCallback, testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { RESEND_PATH, emailEvent, emailId, postResend } from './helpers/resend.ts'

t.test('error messages', async (t) => {
  const { app } = await buildTestApp(t)

  t.test('415 on POST /webhooks/twilio/status names the content type Twilio sends', async (t) => {
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/json' }, payload: '{"MessageStatus":"sent"}' })
    t.equal(res.statusCode, 415)
    t.match(res.json(), { code: 'unsupported_media_type', message: /application\/json.*application\/x-www-form-urlencoded/ })
  })

  t.test('415 on a JSON route names application/json', async (t) => {
    const res = await app.inject({ method: 'POST', url: RESEND_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'type=email.sent' })
    t.equal(res.statusCode, 415)
    t.match(res.json(), { code: 'unsupported_media_type', message: /application\/x-www-form-urlencoded.*application\/json/ })
  })

  t.test('413 states the limit', async (t) => {
    const params = smsCallback(messageSid(), 'sent', { Body: 'x'.repeat(17 * 1024) })
    const res = await app.inject({ method: 'POST', url: STATUS_PATH, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign(params) }, payload: formBody(params) })
    t.equal(res.statusCode, 413)
    t.match(res.json(), { code: 'payload_too_large', message: /16 KiB this route accepts \(16384 bytes\)/ })
  })

  t.test('a wrong enum query parameter lists the allowed values', async (t) => {
    const res = await apiGet(app, '/v1/messages?channel=fax')
    t.equal(res.statusCode, 400)
    t.match(res.json(), { code: 'invalid_payload', message: /querystring\.channel must be one of: sms, mms, whatsapp, email/ })
  })

  t.test('GET /v1/messages with an unknown status is a 400 naming the known statuses, not an empty 200', async (t) => {
    const res = await apiGet(app, '/v1/messages?status=deliverd')
    t.equal(res.statusCode, 400)
    const { message } = res.json() as { message: string }
    t.match(message, /querystring\.status must be one of: /)
    for (const known of ['queued', 'sent', 'delivered', 'undelivered', 'failed', 'read', 'email.delivered', 'email.bounced']) t.match(message, new RegExp(`\\b${known.replace('.', '\\.')}\\b`))
    t.equal((await apiGet(app, '/v1/messages?status=email.delivered')).statusCode, 200, 'a known status still filters')
    t.equal((await apiGet(app, '/v1/messages?status=delivered')).statusCode, 200)
  })
})

t.test('POST /webhooks/resend with no RESEND_WEBHOOK_SECRET: a 404 that says how to enable it, and start-up says the route is off', async (t) => {
  const checkContract = contractChecker(t)
  const { db } = await createTestDatabase(t)
  const lines: string[] = []
  const logStream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(chunk.toString()); cb() } })
  const app = await buildApp(loadConfig(testEnv({ LOG_LEVEL: 'info', RESEND_WEBHOOK_SECRET: undefined })), { db, logStream })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  await app.ready()
  t.ok(lines.some((l) => /Resend/.test(l) && /RESEND_WEBHOOK_SECRET/.test(l) && /off/.test(l)), 'start-up log says the Resend route is off and why')

  const res = await postResend(app, emailEvent('email.sent', emailId()))
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found', message: /RESEND_WEBHOOK_SECRET/ })
})
