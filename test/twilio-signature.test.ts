import t from 'tap'
import twilio from 'twilio'
import {
  ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, SECOND_TOKEN, STATUS_PATH, SUB_ACCOUNT_SID, SUB_ACCOUNT_TOKEN,
  buildTestApp, formBody, messageSid, postCallback, sign, smsCallback
} from './helpers/app.ts'
import { verifyTwilioSignature } from '../src/providers/twilio-signature.ts'

t.test("twilio-node's own test vector validates with our token lookup", async (t) => {
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' }
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2'
  t.equal(twilio.getExpectedTwilioSignature('12345', url, params), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=')
  const tokens = new Map([[ACCOUNT_SID, ['12345']]])
  t.equal(verifyTwilioSignature(tokens, 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', url, params), 'valid', 'no AccountSid: every token is tried')
  t.equal(verifyTwilioSignature(tokens, 'RSOYDt4T1cUTdK1PDd93/VVr8B9=', url, params), 'invalid_signature')
  t.equal(verifyTwilioSignature(tokens, undefined, url, params), 'invalid_signature')
})

t.test('POST /webhooks/twilio/status signature checks', async (t) => {
  const { app, db } = await buildTestApp(t)
  const count = async (): Promise<number> => Number((await db.selectFrom('message_events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

  t.test('accepts a correctly signed callback', async (t) => {
    const res = await postCallback(app, smsCallback(messageSid(), 'sent'))
    t.equal(res.statusCode, 200)
    t.same(res.json(), { outcome: 'recorded' })
  })

  t.test('rejects a tampered value with 403 invalid_signature and records nothing', async (t) => {
    const before = await count()
    const params = smsCallback(messageSid(), 'delivered')
    const res = await postCallback(app, { ...params, MessageStatus: 'failed' }, { signParams: params })
    t.equal(res.statusCode, 403)
    t.same(res.json().code, 'invalid_signature')
    t.match(res.json().message, /X-Twilio-Signature/)
    t.equal(await count(), before)
  })

  t.test('rejects a missing signature', async (t) => {
    const res = await postCallback(app, smsCallback(messageSid(), 'sent'), { signature: null })
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('rejects a parameter added after signing', async (t) => {
    const params = smsCallback(messageSid(), 'sent')
    const res = await postCallback(app, { ...params, ErrorCode: '30007' }, { signParams: params })
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('rejects a parameter removed after signing', async (t) => {
    const params = smsCallback(messageSid(), 'sent')
    const { ApiVersion: _dropped, ...rest } = params
    const res = await postCallback(app, rest, { signParams: params })
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('verifies over the URL with its query string', async (t) => {
    const path = `${STATUS_PATH}?tenant=acme&region=eu%2Dwest`
    const ok = await postCallback(app, smsCallback(messageSid(), 'sent'), { path })
    t.equal(ok.statusCode, 200)
    const params = smsCallback(messageSid(), 'sent')
    const signedWithoutQuery = sign(params)
    const bad = await postCallback(app, params, { path, signature: signedWithoutQuery })
    t.equal(bad.statusCode, 403, 'a signature over another URL fails')
  })

  t.test('verifies over PUBLIC_BASE_URL (https) when the request reached us as http behind a proxy', async (t) => {
    const params = smsCallback(messageSid(), 'sent')
    const res = await app.inject({
      method: 'POST',
      url: STATUS_PATH,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-forwarded-proto': 'http',
        host: 'internal-lb:8080',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${PUBLIC_BASE_URL}${STATUS_PATH}`, params)
      },
      payload: formBody(params)
    })
    t.equal(res.statusCode, 200)
    const asSeen = twilio.getExpectedTwilioSignature(AUTH_TOKEN, `http://internal-lb:8080${STATUS_PATH}`, params)
    const res2 = await postCallback(app, smsCallback(messageSid(), 'sent'), { signature: asSeen })
    t.equal(res2.statusCode, 403, 'a signature over the internal URL is not accepted')
  })

  t.test("values with unicode, ', + and % round-trip through the signature", async (t) => {
    const sid = messageSid()
    const params = smsCallback(sid, 'undelivered', { ErrorCode: '30007', ErrorMessage: "Carrier said: l'envoi a échoué +50% 🙈 a+b=c&d" })
    const res = await postCallback(app, params)
    t.equal(res.statusCode, 200)
    const row = await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirstOrThrow()
    t.equal(row.error_message, "Carrier said: l'envoi a échoué +50% 🙈 a+b=c&d")
  })

  t.test('accepts the second (rotated) token of the same account', async (t) => {
    const res = await postCallback(app, smsCallback(messageSid(), 'sent'), { token: SECOND_TOKEN })
    t.equal(res.statusCode, 200)
  })

  t.test("accepts a sub-account signed with its own token, and refuses another account's token", async (t) => {
    const params = smsCallback(messageSid(), 'sent', { AccountSid: SUB_ACCOUNT_SID })
    t.equal((await postCallback(app, params, { token: SUB_ACCOUNT_TOKEN })).statusCode, 200)
    const other = smsCallback(messageSid(), 'sent', { AccountSid: SUB_ACCOUNT_SID })
    const res = await postCallback(app, other, { token: AUTH_TOKEN })
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'invalid_signature')
  })

  t.test('refuses an unknown AccountSid with 403 unknown_account', async (t) => {
    const params = smsCallback(messageSid(), 'sent', { AccountSid: 'AC' + 'c'.repeat(32) })
    const res = await postCallback(app, params, { token: 'whatever-token' })
    t.equal(res.statusCode, 403)
    t.equal(res.json().code, 'unknown_account')
  })

  t.test('counts rejections in /metrics', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/metrics' })
    t.match(res.body, /tidings_webhooks_total\{provider="twilio",outcome="invalid_signature"\} [1-9]/)
    t.match(res.body, /tidings_webhooks_total\{provider="twilio",outcome="unknown_account"\} 1/)
  })
})

t.test('paramsPartOf signs exactly as twilio-node does, for generated parameters', async (t) => {
  const fc = (await import('fast-check')).default
  const twilio = (await import('twilio')).default
  const { paramsPartOf } = await import('../src/providers/twilio-signature.ts')
  const { createHmac } = await import('node:crypto')
  const url = 'https://hooks.example.com/webhooks/twilio/status?a=1'
  fc.assert(fc.property(fc.dictionary(fc.string(), fc.oneof(fc.string({ unit: 'binary' }), fc.array(fc.string(), { maxLength: 4 }))), (params) => {
    const ours = createHmac('sha1', 'token_1234').update(url + paramsPartOf(params), 'utf8').digest('base64')
    return ours === twilio.getExpectedTwilioSignature('token_1234', url, params)
  }), { numRuns: 2000 })
  t.pass('2000 generated parameter sets sign identically')
})

t.test('the URL variants kept from the last callback never answer for another URL', async (t) => {
  const params = { MessageSid: 'SM' + 'a'.repeat(32), MessageStatus: 'delivered', To: '+14158675309' }
  const tokens = new Map([[ACCOUNT_SID, ['12345']]])
  const a = 'https://hooks.example.com/webhooks/twilio/status'
  const b = 'https://hooks.example.com/webhooks/twilio/status?tenant=b'
  const signedA = twilio.getExpectedTwilioSignature('12345', a, params)
  const signedB = twilio.getExpectedTwilioSignature('12345', b, params)
  // Each URL in turn, and back: every verdict is the one for the URL given.
  t.equal(verifyTwilioSignature(tokens, signedA, a, params), 'valid')
  t.equal(verifyTwilioSignature(tokens, signedA, b, params), 'invalid_signature')
  t.equal(verifyTwilioSignature(tokens, signedB, b, params), 'valid')
  t.equal(verifyTwilioSignature(tokens, signedB, 'not a url', params), 'invalid_signature')
  t.equal(verifyTwilioSignature(tokens, signedB, b, params), 'valid')
  t.equal(verifyTwilioSignature(tokens, signedA, a, params), 'valid')
  // With the default port: validateRequest's variant without it matches, before and after other URLs.
  const withPort = 'https://hooks.example.com:443/webhooks/twilio/status'
  t.equal(verifyTwilioSignature(tokens, signedA, withPort, params), 'valid')
  t.equal(verifyTwilioSignature(tokens, signedB, withPort, params), 'invalid_signature')
})
