import t from 'tap'
import { resendVerifiers, verifyResendSignature } from '../src/providers/resend-signature.ts'
import { RESEND_SECOND_SECRET, RESEND_SECRET, svixHeaders } from './helpers/resend.ts'

// Reasons are what the warn log says about a rejected delivery: they never carry the secret or signature.
t.test('verifyResendSignature names the reason for a rejection', async (t) => {
  const verifiers = resendVerifiers([RESEND_SECRET, RESEND_SECOND_SECRET])
  const body = '{"type":"email.sent"}'
  const check = (headers: Record<string, string>, raw = body): ReturnType<typeof verifyResendSignature> => verifyResendSignature(verifiers, Buffer.from(raw), headers)

  t.same(check(svixHeaders(body)), { valid: true })
  t.same(check(svixHeaders(body, { secrets: [RESEND_SECOND_SECRET] })), { valid: true }, 'second secret')
  t.same(check({}), { valid: false, reason: 'missing or repeated header: svix-id, svix-timestamp, svix-signature' })
  t.same(check(svixHeaders(body, { at: new Date(Date.now() - 301_000) })), { valid: false, reason: 'svix-timestamp is more than 300 s in the past' })
  t.same(check(svixHeaders(body, { at: new Date(Date.now() + 301_000) })), { valid: false, reason: 'svix-timestamp is more than 300 s in the future' })
  t.same(check({ ...svixHeaders(body), 'svix-timestamp': 'soon' }), { valid: false, reason: 'svix-timestamp is not a Unix time in seconds' })
  t.same(check(svixHeaders(body), body + ' '), { valid: false, reason: 'no v1 signature in svix-signature matches a configured secret' })
  t.same(check({ ...svixHeaders(body), 'svix-signature': 'v2,abc' }), { valid: false, reason: 'no v1 signature in svix-signature matches a configured secret' })
  const reasons = [check({}), check(svixHeaders(body), 'x')].map((v) => JSON.stringify(v)).join()
  t.notMatch(reasons, RESEND_SECRET.slice(6))
  t.notMatch(reasons, svixHeaders(body)['svix-signature'].slice(3))
})

t.test('verifyResendSignature treats a repeated svix header as missing', async (t) => {
  const verifiers = resendVerifiers([RESEND_SECRET])
  const headers = svixHeaders('{}')
  const verdict = verifyResendSignature(verifiers, Buffer.from('{}'), { ...headers, 'svix-signature': [headers['svix-signature'], headers['svix-signature']] } as never)
  t.same(verdict, { valid: false, reason: 'missing or repeated header: svix-signature' })
})
