/**
 * Random message lifecycles for the status-precedence property tests (fast-check): a set of
 * distinct statuses, each with its own time and error, plus duplicates of some of them.
 */
import fc from 'fast-check'
import type { Provider } from '../../src/db/database.ts'
import { applyEvent, INITIAL_STATE, type MessageState, type StatusEvent } from '../../src/domain/status-precedence.ts'

export function lifecycles (statuses: readonly string[], errorCodes: ReadonlyArray<string | null>): fc.Arbitrary<StatusEvent[]> {
  return fc.uniqueArray(fc.constantFrom(...statuses), { minLength: 1, maxLength: statuses.length })
    .chain((chosen) => fc.tuple(
      fc.constant(chosen),
      fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: chosen.length, maxLength: chosen.length }),
      fc.array(fc.constantFrom(...errorCodes), { minLength: chosen.length, maxLength: chosen.length })
    ))
    .map(([chosen, times, codes]): StatusEvent[] => chosen.map((status, i) => ({
      status,
      at: new Date(1_700_000_000_000 + times[i]),
      errorCode: codes[i],
      errorMessage: codes[i] === null ? null : `error ${codes[i]}`
    })))
    .chain((events) => fc.tuple(fc.constant(events), fc.array(fc.constantFrom(...events), { maxLength: 5 })))
    .map(([events, dups]) => [...events, ...dups])
}

/** A lifecycle and the same events in a random order. */
export function lifecycleAndPermutation (statuses: readonly string[], errorCodes: ReadonlyArray<string | null>): fc.Arbitrary<[StatusEvent[], StatusEvent[]]> {
  return lifecycles(statuses, errorCodes)
    .chain((events) => fc.tuple(fc.constant(events), fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length })))
}

export function fold (provider: Provider, events: StatusEvent[]): MessageState {
  return events.reduce((s, e) => applyEvent(provider, s, e), INITIAL_STATE)
}

/** A state as plain, comparable values. */
export function summary (s: MessageState): unknown {
  return {
    status: s.status,
    rank: s.statusRank,
    errorCode: s.errorCode,
    errorMessage: s.errorMessage,
    sentAt: s.sentAt?.getTime() ?? null,
    deliveredAt: s.deliveredAt?.getTime() ?? null,
    readAt: s.readAt?.getTime() ?? null,
    failedAt: s.failedAt?.getTime() ?? null,
    bouncedAt: s.bouncedAt?.getTime() ?? null,
    complainedAt: s.complainedAt?.getTime() ?? null
  }
}
