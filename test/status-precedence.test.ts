import assert from 'node:assert/strict'
import t from 'tap'
import fc from 'fast-check'
import { TWILIO_STATUS_RANK, type MessageState, type StatusEvent } from '../src/domain/status-precedence.ts'
import { fold as foldAll, lifecycleAndPermutation, lifecycles, summary } from './helpers/lifecycle.ts'

const STATUSES = [...Object.keys(TWILIO_STATUS_RANK), 'receiving', 'received', 'some_future_status']

const ERRORS = ['30003', '30007', '63049', null]
const lifecycle = lifecycles(STATUSES, ERRORS)
const fold = (events: StatusEvent[]): MessageState => foldAll('twilio', events)

t.test('status precedence: every permutation of a lifecycle with duplicates ends in the same state', async (t) => {
  fc.assert(fc.property(lifecycleAndPermutation(STATUSES, ERRORS),
    ([events, shuffled]) => {
      assert.deepEqual(summary(fold(shuffled)), summary(fold(events)))
    }), { numRuns: 1000 })
  t.pass('1000 random lifecycles, each in a random order, matched')
})

t.test('status precedence: the final status is the highest-ranked one received', async (t) => {
  fc.assert(fc.property(lifecycle, (events) => {
    const ranked = events.filter((e) => Object.hasOwn(TWILIO_STATUS_RANK, e.status))
    const best = ranked.sort((a, b) => TWILIO_STATUS_RANK[b.status] - TWILIO_STATUS_RANK[a.status])[0]
    const state = fold(events)
    assert.equal(state.status, best?.status ?? null)
    const failure = best !== undefined && (best.status === 'failed' || best.status === 'undelivered')
    assert.equal(state.errorCode, failure ? best.errorCode : null)
  }), { numRuns: 500 })
  t.pass('500 random lifecycles ended in their highest-ranked status')
})

t.test('status precedence: concrete rules', async (t) => {
  const at = new Date('2026-01-01T00:00:00Z')
  const ev = (status: string, errorCode: string | null = null): StatusEvent => ({ status, errorCode, errorMessage: null, at })
  t.equal(fold([ev('failed', '30003'), ev('sent')]).status, 'failed', 'a late sent never revives a failed message')
  t.equal(fold([ev('delivered'), ev('failed', '30003')]).status, 'delivered', 'a failure after delivered does not undo it')
  t.equal(fold([ev('delivered'), ev('failed', '30003')]).errorCode, null)
  t.equal(fold([ev('read'), ev('delivered'), ev('sent')]).status, 'read', 'read wins')
  t.equal(fold([ev('received')]).status, null, 'inbound statuses are not ranked')
  t.equal(fold([ev('sent'), ev('brand_new_status')]).status, 'sent', 'an unknown status leaves the current status alone')
  const both = fold([ev('undelivered', '30007'), { ...ev('failed', '30003'), at: new Date(at.getTime() + 1000) }])
  t.equal(both.status, 'failed')
  t.equal(both.errorCode, '30003', 'the error is the one of the event that set the failure status')
  t.same(both.failedAt, at, 'failedAt is the earliest failure')
})
