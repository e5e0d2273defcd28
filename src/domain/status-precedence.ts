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

/**
 * Resend email event types that are statuses, ranked low to high
 * (event types: https://resend.com/docs/dashboard/webhooks/event-types). Stored as Resend spells
 * the event `type`, so they never collide with Twilio's `sent`/`delivered`/`failed`. One email can
 * go to several recipients and bounce for one while reaching another: `delivered` outranks the
 * failures (the bounce stays in the timeline and in `bounced_at`), and a complaint outranks all.
 * `email.opened`/`email.clicked` are engagement, not statuses, and never reach this module.
 */
export const RESEND_STATUS_RANK: Readonly<Record<string, number>> = Object.freeze({
  'email.scheduled': 1,
  'email.sent': 2,
  'email.delivery_delayed': 3,
  'email.failed': 4,
  'email.suppressed': 5,
  'email.bounced': 6,
  'email.delivered': 7,
  'email.complained': 8
})

/**
 * Every status a message can be in: Twilio's ranked statuses, its inbound `receiving`/`received`,
 * and Resend's. The `status` filter of `GET /v1/messages` takes exactly these, so a typo is a 400
 * listing them rather than an empty page.
 */
export const KNOWN_STATUSES: readonly string[] = Object.freeze([...Object.keys(TWILIO_STATUS_RANK), 'receiving', 'received', ...Object.keys(RESEND_STATUS_RANK)])

/** Resend statuses whose event carries the message's error (reason, bounce or suppression). */
export const RESEND_FAILURE_STATUSES: ReadonlySet<string> = new Set(['email.failed', 'email.suppressed', 'email.bounced'])

/**
 * Statuses after which the provider reports nothing that changes delivery: reconciliation stops
 * asking about a message once its current status is one of these. Twilio's `delivered` may still
 * become `read`, and Resend's `email.delivered` may still become `email.complained`; those arrive by
 * webhook and are not worth polling for.
 */
export const FINAL_STATUSES: Readonly<Record<Provider, ReadonlySet<string>>> = Object.freeze({
  twilio: new Set(['canceled', 'undelivered', 'failed', 'partially_delivered', 'delivered', 'read']),
  resend: new Set(['email.failed', 'email.suppressed', 'email.bounced', 'email.delivered', 'email.complained'])
})

/** Per provider: ranks, failure statuses, and which timestamp the first event of a status fills. */
interface Precedence {
  ranks: Readonly<Record<string, number>>
  failures: ReadonlySet<string>
  timestamps: Readonly<Record<string, ReadonlyArray<keyof StatusTimestamps>>>
}

const PRECEDENCE: Readonly<Record<Provider, Precedence>> = Object.freeze({
  twilio: {
    ranks: TWILIO_STATUS_RANK,
    failures: FAILURE_STATUSES,
    timestamps: {
      sent: ['sentAt'],
      delivered: ['deliveredAt'],
      read: ['readAt'],
      failed: ['failedAt'],
      undelivered: ['failedAt']
    }
  },
  resend: {
    ranks: RESEND_STATUS_RANK,
    failures: RESEND_FAILURE_STATUSES,
    timestamps: {
      'email.sent': ['sentAt'],
      'email.delivered': ['deliveredAt'],
      'email.failed': ['failedAt'],
      'email.suppressed': ['failedAt'],
      'email.bounced': ['failedAt', 'bouncedAt'],
      'email.complained': ['complainedAt']
    }
  }
})

/**
 * The rank of `status` for `provider`, or `undefined` for a status Tidings does not rank
 * (inbound statuses, or a value the provider added after this code was written).
 */
export function rankOf (provider: Provider, status: string): number | undefined {
  const table = PRECEDENCE[provider].ranks
  return Object.hasOwn(table, status) ? table[status] : undefined
}

export interface StatusTimestamps {
  sentAt: Date | null
  deliveredAt: Date | null
  readAt: Date | null
  failedAt: Date | null
  /** Email only: first `email.bounced`. */
  bouncedAt: Date | null
  /** Email only: first `email.complained`. */
  complainedAt: Date | null
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
  failedAt: null,
  bouncedAt: null,
  complainedAt: null
})

/**
 * Folds one event into a message's state. Pure; commutative and idempotent over events, so any
 * arrival order of the same set of events gives the same state:
 * - status and error move only to a higher rank; the error is that of the event that set a
 *   failure status (Twilio `failed`/`undelivered`; Resend `email.failed`/`email.suppressed`/
 *   `email.bounced`), and cleared when a higher non-failure status wins;
 * - each timestamp keeps the earliest event of its statuses (`failedAt`: of any failure status);
 * - an unranked status changes nothing (it is still recorded in the timeline).
 */
export function applyEvent (provider: Provider, state: MessageState, event: StatusEvent): MessageState {
  const rank = rankOf(provider, event.status)
  if (rank === undefined) return state
  const { failures, timestamps } = PRECEDENCE[provider]
  const next: MessageState = { ...state }
  if (rank > state.statusRank) {
    next.status = event.status
    next.statusRank = rank
    const failure = failures.has(event.status)
    next.errorCode = failure ? event.errorCode : null
    next.errorMessage = failure ? event.errorMessage : null
  }
  for (const column of timestamps[event.status] ?? []) {
    const current = next[column]
    if (current === null || event.at.getTime() < current.getTime()) next[column] = event.at
  }
  return next
}
