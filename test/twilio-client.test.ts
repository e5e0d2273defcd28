/**
 * The Twilio REST client Tidings sends with (src/providers/twilio-rest.ts), against the fake Twilio
 * API on loopback with the same pool of `TWILIO_MAX_SOCKETS` connections as api.twilio.com gets:
 * its timeout bounds the whole request, waiting for a connection included, so a send that queued
 * behind a slow Twilio cannot reach Twilio after its caller's lease ran out. The fallback worker's
 * and the send path's half-lease check (docs/fallback.md, rule 3) rely on it; this holds it across
 * upgrades of twilio-node, axios and Node.
 */
import t from 'tap'
import { loadConfig } from '../src/config/config.ts'
import { classifyTwilioError, TWILIO_MAX_SOCKETS, twilioClientsOf } from '../src/providers/twilio-rest.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { fallbackEnv, randomNumber, SMS_FROM } from './helpers/fallback.ts'

const TIMEOUT_MS = 1000

t.test('with every connection busy on a slow Twilio, a queued create gives up within its timeout, waiting included, as maybe sent', async (t) => {
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const client = twilioClientsOf(loadConfig(fallbackEnv(fake.url, { TWILIO_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS) })))(null)
  const to = randomNumber()
  const queued = 5
  // Each create is answered 700 ms after it arrives: the queued ones get a connection only then.
  fake.answerNextSendsTo(to, ...Array.from({ length: TWILIO_MAX_SOCKETS + queued }, () => ({ kind: 'slow' as const, delayMs: 700 })))
  const started = performance.now()
  const outcomes = await Promise.all(Array.from({ length: TWILIO_MAX_SOCKETS + queued }, async () => {
    try {
      await client.messages.create({ to, from: SMS_FROM, body: 'Your code is 1234' })
      return { ms: performance.now() - started, failure: undefined }
    } catch (err) {
      return { ms: performance.now() - started, failure: classifyTwilioError(err) }
    }
  }))
  const slowest = Math.max(...outcomes.map((o) => o.ms))
  t.ok(slowest < TIMEOUT_MS + 400, `every create settled within the timeout, waiting included (slowest ${Math.round(slowest)} ms; 1,400 ms if the wait did not count)`)
  t.equal(outcomes.filter((o) => o.failure === undefined).length, TWILIO_MAX_SOCKETS, 'the creates that had a connection were answered')
  const gaveUp = outcomes.filter((o) => o.failure !== undefined)
  t.equal(gaveUp.length, queued, 'the queued ones gave up')
  for (const o of gaveUp) t.match(o.failure, { kind: 'retryable', code: 'ECONNABORTED', maybeAccepted: true }, 'as a timeout that may have reached Twilio')
})
