import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { applyEvent, INITIAL_STATE, RESEND_FAILURE_STATUSES, RESEND_STATUS_RANK, type MessageState, type StatusEvent } from '../src/domain/status-precedence.ts'
import { fold as foldAll, lifecycleAndPermutation, lifecycles, summary } from './helpers/lifecycle.ts'

// Resend status events, plus types that are not ranked statuses (engagement, inbound, future).
const STATUSES = [...Object.keys(RESEND_STATUS_RANK), 'email.opened', 'email.received', 'email.some_future_type']

const ERRORS = ['Permanent/General', 'Transient/MailboxFull', 'reached_daily_quota', null]
const lifecycle = lifecycles(STATUSES, ERRORS)
const fold = (events: StatusEvent[]): MessageState => foldAll('resend', events)

t.test('email status precedence: every permutation of a lifecycle with duplicates ends in the same state', async (t) => {
  fc.assert(fc.property(lifecycleAndPermutation(STATUSES, ERRORS),
    ([events, shuffled]) => {
      assert.deepEqual(summary(fold(shuffled)), summary(fold(events)))
    }), { numRuns: 1000 })
  t.pass('1000 random email lifecycles, each in a random order, matched')
})

t.test('email status precedence: the final status is the highest-ranked one, timestamps the earliest of each', async (t) => {
  fc.assert(fc.property(lifecycle, (events) => {
    const ranked = events.filter((e) => Object.hasOwn(RESEND_STATUS_RANK, e.status))
    const best = [...ranked].sort((a, b) => RESEND_STATUS_RANK[b.status] - RESEND_STATUS_RANK[a.status])[0]
    const state = fold(events)
    assert.equal(state.status, best?.status ?? null)
    const failure = best !== undefined && RESEND_FAILURE_STATUSES.has(best.status)
    assert.equal(state.errorCode, failure ? best.errorCode : null)
    const earliest = (...statuses: string[]): number | null => {
      const times = events.filter((e) => statuses.includes(e.status)).map((e) => e.at.getTime())
      return times.length === 0 ? null : Math.min(...times)
    }
    assert.equal(state.sentAt?.getTime() ?? null, earliest('email.sent'))
    assert.equal(state.deliveredAt?.getTime() ?? null, earliest('email.delivered'))
    assert.equal(state.failedAt?.getTime() ?? null, earliest('email.failed', 'email.suppressed', 'email.bounced'))
    assert.equal(state.bouncedAt?.getTime() ?? null, earliest('email.bounced'))
    assert.equal(state.complainedAt?.getTime() ?? null, earliest('email.complained'))
    assert.equal(state.readAt, null, 'email has no read status')
  }), { numRuns: 500 })
  t.pass('500 random email lifecycles ended in their highest-ranked status with the earliest timestamps')
})

t.test('email status precedence: concrete rules', async (t) => {
  const at = new Date('2026-01-01T00:00:00Z')
  const ev = (status: string, errorCode: string | null = null, offsetMs = 0): StatusEvent => ({ status, errorCode, errorMessage: errorCode, at: new Date(at.getTime() + offsetMs) })
  t.equal(fold([ev('email.delivered'), ev('email.sent')]).status, 'email.delivered', 'a late sent never undoes delivered')
  t.equal(fold([ev('email.bounced', 'Permanent/General'), ev('email.sent')]).status, 'email.bounced', 'a late sent never revives a bounced email')
  t.equal(fold([ev('email.bounced', 'Permanent/General'), ev('email.delivery_delayed')]).errorCode, 'Permanent/General', 'the bounce keeps its error')
  t.equal(fold([ev('email.bounced', 'Permanent/General'), ev('email.delivered')]).status, 'email.delivered', 'delivered outranks a bounce')
  t.equal(fold([ev('email.bounced', 'Permanent/General'), ev('email.delivered')]).errorCode, null, 'and clears the error')
  t.equal(fold([ev('email.delivered'), ev('email.complained')]).status, 'email.complained', 'a complaint wins')
  t.equal(fold([ev('email.failed', 'reached_daily_quota'), ev('email.suppressed', 'OnAccountSuppressionList')]).errorCode, 'OnAccountSuppressionList')
  t.equal(fold([ev('email.opened'), ev('email.clicked')]).status, null, 'engagement is not a status')
  t.equal(fold([ev('delivered')]).status, null, "Twilio's status names mean nothing for an email")
  const bounced = fold([ev('email.bounced', 'Permanent/General', 5000), ev('email.suppressed', 'OnAccountSuppressionList', 1000)])
  t.same(bounced.failedAt, new Date(at.getTime() + 1000), 'failed_at is the earliest failure of any kind')
  t.same(bounced.bouncedAt, new Date(at.getTime() + 5000), 'bounced_at is the bounce')
})

t.test('Twilio precedence ignores email statuses', async (t) => {
  const state = applyEvent('twilio', INITIAL_STATE, { status: 'email.delivered', errorCode: null, errorMessage: null, at: new Date() })
  t.equal(state.status, null)
})
