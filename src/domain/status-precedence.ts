/**
 * Status precedence: the one place that decides a message's current status.
 *
 * Providers do not guarantee callback order and do retry ("there is no guarantee that the status
 * callback requests always arrive at your endpoint in the order they were sent",
 * https://www.twilio.com/docs/messaging/guides/track-outbound-message-status). So the current
 * status is a function of the *set* of statuses received, never of their arrival order: each
 * status has a rank and a message only ever moves to a higher rank. `applyEvent` is commutative
 * and idempotent over events, which `test/status-precedence.test.ts` checks on random lifecycles.
 */
import type { Provider } from '../db/database.ts'

/**
 * Twilio `MessageStatus` ranks, low to high
 * (statuses: https://www.twilio.com/docs/messaging/api/message-resource#message-status-values).
 * A late `sent` never revives a failed message, a failure after `delivered` does not undo it,
 * and `read` wins. `receiving`/`received` belong to inbound messages: recorded, never ranked.
 */
export const TWILIO_STATUS_RANK: Readonly<Record<string, number>> = Object.freeze({
  accepted: 1,
  scheduled: 2,
  queued: 3,
  sending: 4,
  sent: 5,
  canceled: 6,
  undelivered: 7,
  failed: 8,
  partially_delivered: 9,
  delivered: 10,
  read: 11
})

/** Statuses whose event carries the message's error (`ErrorCode`/`ErrorMessage`). */
export const FAILURE_STATUSES: ReadonlySet<string> = new Set(['failed', 'undelivered'])

/** Which timestamp column the first event of a status fills. */
const TIMESTAMP_OF: Readonly<Record<string, keyof StatusTimestamps>> = Object.freeze({
  sent: 'sentAt',
  delivered: 'deliveredAt',
  read: 'readAt',
  failed: 'failedAt',
  undelivered: 'failedAt'
})

/**
 * The rank of `status` for `provider`, or `undefined` for a status Tidings does not rank
 * (inbound statuses, or a value the provider added after this code was written).
 */
export function rankOf (provider: Provider, status: string): number | undefined {
  const table = provider === 'twilio' ? TWILIO_STATUS_RANK : undefined
  return table !== undefined && Object.hasOwn(table, status) ? table[status] : undefined
}

export interface StatusTimestamps {
  sentAt: Date | null
  deliveredAt: Date | null
  readAt: Date | null
  failedAt: Date | null
}

/** The part of a message that status events decide. */
export interface MessageState extends StatusTimestamps {
  /** Current status; `null` until a ranked status arrives. */
  status: string | null
  /** Rank of `status`; 0 when `status` is `null`. */
  statusRank: number
  errorCode: string | null
  errorMessage: string | null
}

/** One status event as precedence sees it. */
export interface StatusEvent {
  status: string
  errorCode: string | null
  errorMessage: string | null
  /** When the event happened (for webhooks: when it was received). */
  at: Date
}

/** The state of a message before any status event. */
export const INITIAL_STATE: MessageState = Object.freeze({
  status: null,
  statusRank: 0,
  errorCode: null,
  errorMessage: null,
  sentAt: null,
  deliveredAt: null,
  readAt: null,
  failedAt: null
})

/**
 * Folds one event into a message's state. Pure; commutative and idempotent over events, so any
 * arrival order of the same set of events gives the same state:
 * - status and error move only to a higher rank; the error is that of the event that set a
 *   failure status (`failed`/`undelivered`), and cleared when a higher non-failure status wins;
 * - each timestamp keeps the earliest event of its status (`failedAt`: of `failed` or `undelivered`);
 * - an unranked status changes nothing (it is still recorded in the timeline).
 */
export function applyEvent (provider: Provider, state: MessageState, event: StatusEvent): MessageState {
  const rank = rankOf(provider, event.status)
  if (rank === undefined) return state
  const next: MessageState = { ...state }
  if (rank > state.statusRank) {
    next.status = event.status
    next.statusRank = rank
    const failure = FAILURE_STATUSES.has(event.status)
    next.errorCode = failure ? event.errorCode : null
    next.errorMessage = failure ? event.errorMessage : null
  }
  const column = TIMESTAMP_OF[event.status]
  if (column !== undefined) {
    const current = next[column]
    if (current === null || event.at.getTime() < current.getTime()) next[column] = event.at
  }
  return next
}
