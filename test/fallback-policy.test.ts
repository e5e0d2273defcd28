import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/config.ts'
import { decideFallback, isFallbackDue, senderFor, type RecordedFailureFacts } from '../src/domain/fallback-policy.ts'
import { testEnv } from './helpers/app.ts'

const CODES = new Set(['63049', '63016', '63024', '63003', '63032'])
const failure = (over: Partial<RecordedFailureFacts> = {}): RecordedFailureFacts => ({
  channel: 'whatsapp', status: 'failed', errorCode: '63049', statusBefore: 'sent', statusAfter: 'failed', ...over
})

t.test('fallback policy: a WhatsApp failure with a listed code that advances the status is due', async (t) => {
  t.ok(isFallbackDue(failure(), CODES))
  t.ok(isFallbackDue(failure({ status: 'undelivered', statusAfter: 'undelivered', errorCode: '63016' }), CODES))
  t.ok(isFallbackDue(failure({ statusBefore: null }), CODES), 'a failure as the first callback counts')
  t.ok(isFallbackDue(failure({ statusBefore: 'undelivered' }), CODES), 'failed after undelivered still advances')
})

t.test('fallback policy: no fallback for other channels, statuses, codes, or a failure that does not advance', async (t) => {
  t.notOk(isFallbackDue(failure({ channel: 'sms' }), CODES), 'an SMS failure')
  t.notOk(isFallbackDue(failure({ channel: 'mms' }), CODES), 'an MMS failure')
  t.notOk(isFallbackDue(failure({ errorCode: '63018' }), CODES), 'rate limit: retry later, not SMS')
  t.notOk(isFallbackDue(failure({ errorCode: '63005' }), CODES), 'template error')
  t.notOk(isFallbackDue(failure({ errorCode: null }), CODES), 'no error code')
  t.notOk(isFallbackDue(failure({ status: 'delivered', statusAfter: 'delivered', errorCode: null }), CODES), 'delivered')
  t.notOk(isFallbackDue(failure({ statusBefore: 'delivered', statusAfter: 'delivered' }), CODES), 'a failure after delivered')
  t.notOk(isFallbackDue(failure({ statusBefore: 'read', statusAfter: 'read' }), CODES), 'a failure after read')
  t.notOk(isFallbackDue(failure({ status: 'undelivered', statusBefore: 'failed', statusAfter: 'failed' }), CODES), 'undelivered after failed')
  t.notOk(isFallbackDue(failure({ statusBefore: 'failed', statusAfter: 'failed' }), CODES), 'the status was already failed')
})

t.test('fallback policy: the sender comes from the map, else the default, else none', async (t) => {
  const map = new Map([['+14155238886', { from: '+14155550100' }]])
  const config = { defaultSender: { messagingServiceSid: 'MG' + '1'.repeat(32) }, senderByWhatsAppFrom: map }
  t.same(senderFor('+14155238886', config), { from: '+14155550100' })
  t.same(senderFor('+14155230000', config), { messagingServiceSid: 'MG' + '1'.repeat(32) })
  t.same(senderFor(null, config), { messagingServiceSid: 'MG' + '1'.repeat(32) })
  t.equal(senderFor('+14155230000', { defaultSender: undefined, senderByWhatsAppFrom: map }), undefined)
})

t.test('fallback policy: decisions in order opt-out, recipient, sender, daily cap', async (t) => {
  const sender = { from: '+14155550100' }
  const facts = { optedIn: true, to: '+15551234567', sender, recentFallbacksToRecipient: 0 }
  t.same(decideFallback(facts, 3), { action: 'send', sender })
  t.same(decideFallback({ ...facts, recentFallbacksToRecipient: 2 }, 3), { action: 'send', sender })
  t.same(decideFallback({ ...facts, recentFallbacksToRecipient: 3 }, 3), { action: 'skip', reason: 'recipient_limit' })
  t.same(decideFallback({ ...facts, recentFallbacksToRecipient: 0 }, 0), { action: 'skip', reason: 'recipient_limit' }, 'a cap of 0 turns sending off')
  t.same(decideFallback({ ...facts, sender: undefined }, 3), { action: 'skip', reason: 'no_sender' })
  t.same(decideFallback({ ...facts, to: null, sender: undefined }, 3), { action: 'skip', reason: 'no_recipient' })
  t.same(decideFallback({ ...facts, optedIn: false, sender: undefined }, 3), { action: 'skip', reason: 'opted_out' })
})

t.test('fallback config: defaults, a sender map, and every bad value reported at once', async (t) => {
  const config = loadConfig(testEnv())
  t.same([...config.fallback.errorCodes], ['63049', '63016', '63024', '63003', '63032'])
  t.equal(config.fallback.defaultSender, undefined)
  t.equal(config.fallback.maxPerRecipientPerDay, 3)
  t.equal(config.fallback.maxAttempts, 5)
  t.equal(config.twilioApiBaseUrl, undefined)

  const mapped = loadConfig(testEnv({
    FALLBACK_SMS_FROM: '+14155550100',
    FALLBACK_MESSAGING_SERVICE_SID: 'MG' + 'a'.repeat(32),
    FALLBACK_SMS_FROM_MAP: 'whatsapp:+14155238886=+14155550111, +14155238887=MG' + 'b'.repeat(32),
    FALLBACK_ERROR_CODES: '63049, 63016',
    TWILIO_API_BASE_URL: 'http://127.0.0.1:4010/'
  }))
  t.same(mapped.fallback.defaultSender, { from: '+14155550100' }, 'a fixed number wins over a Messaging Service')
  t.same(mapped.fallback.senderByWhatsAppFrom.get('+14155238886'), { from: '+14155550111' })
  t.same(mapped.fallback.senderByWhatsAppFrom.get('+14155238887'), { messagingServiceSid: 'MG' + 'b'.repeat(32) })
  t.same([...mapped.fallback.errorCodes], ['63049', '63016'])
  t.equal(mapped.twilioApiBaseUrl, 'http://127.0.0.1:4010')

  try {
    loadConfig(testEnv({ FALLBACK_SMS_FROM_MAP: 'whatsapp:+14155238886=nonsense', FALLBACK_ERROR_CODES: '63049,abc' }))
    t.fail('expected a ConfigError')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    t.same(new Set((err as ConfigError).problems), new Set([
      'FALLBACK_SMS_FROM_MAP entry 1 must be whatsapp:+E164=+E164 (or =MG… Messaging Service SID)',
      'FALLBACK_ERROR_CODES entry "abc" must be a Twilio error code (digits)'
    ]))
  }
  t.throws(() => loadConfig(testEnv({ FALLBACK_SMS_FROM: '14155550100' })), { name: 'ConfigError' })
})
