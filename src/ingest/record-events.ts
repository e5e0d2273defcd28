/**
 * Recording events once: the heart of Tidings.
 *
 * `recordEvents` records a batch of events in one transaction and a constant number of statements,
 * whatever its size (`batch-statements.ts`), in two round trips (BEGIN travels with the first
 * statement and the update with COMMIT: `src/db/round-trips.ts`):
 * 1. `upsertMessagesInsertEvents`, one statement:
 *    - a multi-row upsert creates the messages Tidings has not seen (callbacks for messages sent by
 *      other systems are tracked too), fills fields they lacked, and locks every message of the
 *      batch in `sid` order, so concurrent batches serialise per message and never deadlock on each
 *      other. It is the transaction's first write, so the transaction holds its xid before it takes
 *      any event id (the live stream's horizon relies on that: `src/stream/horizon.ts`);
 *    - a multi-row insert of the events with `ON CONFLICT DO NOTHING RETURNING`: the UNIQUE
 *      `(message_sid, message_status)` (and `svix_id`) makes a duplicate a no-op, and an event
 *      from another account than its message's is not inserted.
 * 2. The status is folded in TypeScript with the precedence rule (`applyEvent`); several events of
 *    one message in one batch fold in order.
 * 3. `applyStatusChanges`: one multi-row update of the messages whose state moved.
 * 4. `RecordHooks.onRecorded`, once per batch with the new events: features that must commit or
 *    roll back together with the events (the WhatsApp → SMS fallback, outbound webhooks) plug in there.
 * Callers acknowledge only after this resolves (the transaction committed).
 *
 * A callback must come from the message's account: an event whose `AccountSid` differs from the
 * stored message's is refused (`account_mismatch`) and changes nothing, not even the fields the
 * message lacked. A message created by a callback takes that callback's account.
 */
import type { Kysely, Transaction } from 'kysely'
import type { Channel, Database, EventSource, Provider, RecordingMessage } from '../db/database.ts'
import { applyEvent, type MessageState } from '../domain/status-precedence.ts'
import { applyStatusChanges, upsertMessagesInsertEvents, type MessageChange } from './batch-statements.ts'

/** One provider event, normalised. */
export interface IncomingEvent {
  provider: Provider
  /** Provider message id: Twilio `MessageSid`, Resend `email_id`. */
  sid: string
  /** Provider status as the provider spells it: Twilio `MessageStatus`, Resend event `type`. */
  status: string
  channel: Channel
  accountSid: string | null
  messagingServiceSid: string | null
  /** Normalised addresses (no `whatsapp:` prefix). */
  from: string | null
  to: string | null
  errorCode: string | null
  errorMessage: string | null
  /** The whole parameter set or payload as received. */
  raw: Record<string, unknown>
  /** When Tidings received the event. */
  receivedAt: Date
  /** Carrier receipt time (Twilio `RawDlrDoneDate`), when present. */
  carrierAt: Date | null
  source: EventSource
  /**
   * The provider's own time of the event (Resend `created_at`), when given: precedence timestamps
   * (`sent_at`, `delivered_at`, ...) use it instead of `receivedAt`.
   */
  occurredAt?: Date | null
  /** The provider's delivery id (Resend `svix-id`); unique over all stored events. */
  svixId?: string | null
  /** Email-only message fields (Resend). */
  email?: EmailFields
}

/** What an email adds to its message row; kept from the first event that carries them. */
export interface EmailFields {
  subject: string | null
  /** Every recipient; the event's `to` is the first. */
  recipients: string[]
  /** Resend `tags` as received, or `null`. */
  tags: unknown
}

/** The fields the upsert needs: those of an event that describe the message itself. */
export type MessageIdentity = Pick<IncomingEvent, 'provider' | 'sid' | 'channel' | 'accountSid' | 'messagingServiceSid' | 'from' | 'to' | 'email'>

/** What happened to one event. */
export interface RecordOutcome {
  sid: string
  status: string
  /**
   * `recorded`: a new event; `duplicate`: `(sid, status)` (or the delivery id) was already
   * recorded, nothing changed; `account_mismatch`: the message belongs to another `AccountSid`,
   * nothing changed.
   */
  outcome: 'recorded' | 'duplicate' | 'account_mismatch'
  /** The new event's id (`recorded` only). */
  eventId: string | null
  /** The message's current status after the batch (`null` for `account_mismatch`). */
  currentStatus: string | null
  /** True when this event moved the current status. */
  statusChanged: boolean
}

/** A new event as applied to its message: what `RecordHooks.onRecorded` receives. */
export interface RecordedEvent {
  event: IncomingEvent
  /** The event's id (`message_events.id`, a decimal string). */
  eventId: string
  /** The message as the batch found it (missing fields filled), locked until commit. */
  message: RecordingMessage
  /** The message's status state before and after this event (`applyEvent`). */
  before: MessageState
  after: MessageState
}

/** Extension point for features that must commit, or roll back, together with the events. */
export interface RecordHooks {
  /**
   * Called once per batch inside the recording transaction with the batch's *new* events (never a
   * duplicate), in the order they were applied, when there is at least one. What it writes commits
   * with the events; throwing rolls back the whole batch, so nothing is acknowledged.
   */
  onRecorded?: (trx: Transaction<Database>, recorded: readonly RecordedEvent[]) => Promise<void>
}

/** Runs several hooks in order, as one. */
export function combineHooks (...hooks: ReadonlyArray<RecordHooks | undefined>): RecordHooks {
  const list = hooks.flatMap((h) => h?.onRecorded === undefined ? [] : [h.onRecorded])
  if (list.length === 0) return {}
  return {
    onRecorded: async (trx, recorded) => {
      for (const hook of list) await hook(trx, recorded)
    }
  }
}

/** The status part of a message row. */
export function stateOf (row: RecordingMessage): MessageState {
  return {
    status: row.status,
    statusRank: row.status_rank,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    sentAt: row.sent_at,
    deliveredAt: row.delivered_at,
    readAt: row.read_at,
    failedAt: row.failed_at,
    bouncedAt: row.bounced_at,
    complainedAt: row.complained_at
  }
}

interface Indexed { e: IncomingEvent, i: number }

function compareIndexed (a: Indexed, b: Indexed): number {
  if (a.e.sid !== b.e.sid) return a.e.sid < b.e.sid ? -1 : 1
  if (a.e.status !== b.e.status) return a.e.status < b.e.status ? -1 : 1
  return a.i - b.i
}

/** The first non-null value of `pick` over `list`. */
function firstOf<T, V> (list: readonly T[], pick: (item: T) => V | null | undefined): V | null {
  for (const item of list) {
    const v = pick(item)
    if (v !== null && v !== undefined) return v
  }
  return null
}

/**
 * What one batch's events say about their message: each field from the first event that has it,
 * among the events of one account (the first `AccountSid` in the batch).
 */
function identityOf (events: readonly IncomingEvent[]): MessageIdentity {
  const accountSid = firstOf(events, (e) => e.accountSid)
  const own = events.filter((e) => e.accountSid === null || e.accountSid === accountSid)
  const emails = own.filter((e) => e.email !== undefined)
  return {
    provider: own[0].provider,
    sid: own[0].sid,
    channel: own[0].channel,
    accountSid,
    messagingServiceSid: firstOf(own, (e) => e.messagingServiceSid),
    from: firstOf(own, (e) => e.from),
    to: firstOf(own, (e) => e.to),
    email: emails.length === 0
      ? undefined
      : {
          subject: firstOf(emails, (e) => e.email?.subject),
          recipients: firstOf(emails, (e) => (e.email?.recipients.length ?? 0) > 0 ? e.email?.recipients : null) ?? [],
          tags: firstOf(emails, (e) => e.email?.tags)
        }
  }
}

function outcomeOf (e: IncomingEvent, outcome: RecordOutcome['outcome']): RecordOutcome {
  return { sid: e.sid, status: e.status, outcome, eventId: null, currentStatus: null, statusChanged: false }
}

/**
 * Records a batch inside the open transaction `trx` (see the module comment) and returns one
 * outcome per event, in input order.
 * @throws the database's error (or a hook's); the caller's transaction must then roll back.
 */
export async function recordBatch (trx: Transaction<Database>, events: readonly IncomingEvent[], hooks: RecordHooks = {}): Promise<RecordOutcome[]> {
  if (events.length === 0) return []
  const outcomes: RecordOutcome[] = new Array(events.length)
  // Messages in sid order, each with its events in (status, arrival) order.
  const groups: Indexed[][] = []
  for (const item of events.map((e, i) => ({ e, i })).sort(compareIndexed)) {
    const last = groups.at(-1)
    if (last !== undefined && last[0].e.sid === item.e.sid) last.push(item)
    else groups.push([item])
  }
  // What goes to the database: per message, the first event of each (status, AccountSid) and of
  // each delivery id; the rest of the batch are duplicates whatever the database holds. Events of
  // another account than the message's are left out by the statement itself.
  const sent: Indexed[] = []
  const deliveries = new Set<string>()
  for (const group of groups) {
    const keys = new Set<string>()
    for (const item of group) {
      const { e } = item
      const key = JSON.stringify([e.status, e.accountSid])
      if (!keys.has(key) && (e.svixId == null || !deliveries.has(e.svixId))) {
        keys.add(key)
        sent.push(item)
        if (e.svixId != null) deliveries.add(e.svixId)
      }
    }
  }
  const { rows, ids } = await upsertMessagesInsertEvents(trx, groups.map((g) => identityOf(g.map((x) => x.e))), sent.map((x) => x.e))
  const wasSent = new Set(sent)

  const recorded: RecordedEvent[] = []
  const changes: MessageChange[] = []
  const current = new Map<string, string | null>()
  for (const group of groups) {
    const row = rows.get(group[0].e.sid) as RecordingMessage
    let state = stateOf(row)
    let moved = false
    const claimed = new Set<string>()
    for (const item of group) {
      const { e, i } = item
      if (e.accountSid !== null && row.account_sid !== null && e.accountSid !== row.account_sid) {
        outcomes[i] = outcomeOf(e, 'account_mismatch')
        continue
      }
      // The statement inserted the first event sent of this status that passed the account check.
      const eventId = claimed.has(e.status) || !wasSent.has(item) ? undefined : ids.get(`${e.sid}\u0000${e.status}`)
      claimed.add(e.status)
      if (eventId === undefined) {
        outcomes[i] = outcomeOf(e, 'duplicate')
        continue
      }
      const before = state
      const after = applyEvent(e.provider, before, { status: e.status, errorCode: e.errorCode, errorMessage: e.errorMessage, at: e.occurredAt ?? e.receivedAt })
      recorded.push({ event: e, eventId, message: row, before, after })
      outcomes[i] = { ...outcomeOf(e, 'recorded'), eventId, statusChanged: after.status !== before.status }
      state = after
      moved = true
    }
    // A new event always touches its message (`updated_at` is reconciliation's "last change").
    if (moved) changes.push({ sid: row.sid, state })
    current.set(row.sid, state.status)
  }
  await applyStatusChanges(trx, changes)
  if (recorded.length > 0 && hooks.onRecorded !== undefined) await hooks.onRecorded(trx, recorded)
  for (const o of outcomes) if (o.outcome !== 'account_mismatch') o.currentStatus = current.get(o.sid) ?? null
  return outcomes
}

/**
 * Records a batch of events in one transaction and returns one outcome per event, in input order.
 * The app's `Recorder` (`recorder.ts`) wraps it with every hook; use that.
 * @param hooks - optional extension point, see `RecordHooks`.
 * @throws the database's error (or a hook's); nothing is committed then, and the caller must not acknowledge.
 */
export async function recordEvents (db: Kysely<Database>, events: readonly IncomingEvent[], hooks: RecordHooks = {}): Promise<RecordOutcome[]> {
  if (events.length === 0) return []
  return await db.transaction().execute(async (trx) => await recordBatch(trx, events, hooks))
}
