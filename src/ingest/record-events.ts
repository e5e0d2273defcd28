/**
 * Recording events once: the heart of Tidings.
 *
 * `recordEvents` takes a list of events and, in one transaction, for each: creates the message row
 * if Tidings has not seen the message (callbacks for messages sent by other systems are tracked
 * too), inserts the event unless `(message_sid, message_status)` is already there, and folds a new
 * event into the message's current status with `applyEvent`. The message row is locked by the
 * upsert, so concurrent deliveries of the same message serialise; the UNIQUE constraint makes a
 * duplicate a no-op. Callers acknowledge only after this resolves (the transaction committed).
 *
 * Features that must act atomically with recording (the WhatsApp → SMS fallback) plug in through
 * `RecordHooks.onRecorded` instead of being written into this file.
 */
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Channel, Database, EventSource, MessageRow, Provider } from '../db/database.ts'
import { applyEvent, type MessageState } from '../domain/status-precedence.ts'

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

/** The fields `upsertMessage` needs: those of an event that describe the message itself. */
export type MessageIdentity = Pick<IncomingEvent, 'provider' | 'sid' | 'channel' | 'accountSid' | 'messagingServiceSid' | 'from' | 'to' | 'email'>

/** What happened to one event. */
export interface RecordOutcome {
  sid: string
  status: string
  /** `recorded`: a new event; `duplicate`: `(sid, status)` was already recorded, nothing changed. */
  outcome: 'recorded' | 'duplicate'
  /** The new event's id (`recorded` only). */
  eventId: string | null
  /** The message's current status after this event. */
  currentStatus: string | null
  /** True when this event moved the current status. */
  statusChanged: boolean
}

/** A new event as applied to its message: what `RecordHooks.onRecorded` receives. */
export interface RecordedEvent {
  event: IncomingEvent
  /** The message row before this event, locked for the rest of the transaction. */
  message: MessageRow
  /** The message's status state before and after this event (`applyEvent`). */
  before: MessageState
  after: MessageState
}

/** Extension point for features that must commit, or roll back, together with an event. */
export interface RecordHooks {
  /**
   * Called inside the recording transaction after each *new* event was applied (never for a
   * duplicate), in the order events are applied. What it writes commits with the event; throwing
   * rolls back the whole batch, so the caller answers 503 and nothing is acknowledged.
   */
  onRecorded?: (trx: Transaction<Database>, recorded: RecordedEvent) => Promise<void>
}

type Executor = Kysely<Database> | Transaction<Database>

function stateOf (row: MessageRow): MessageState {
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

/**
 * Creates the message if it is new, or fills fields it lacked, and returns the row locked
 * for the rest of the transaction. Exported for the engagement log (`record-engagement.ts`).
 */
export async function upsertMessage (trx: Executor, e: MessageIdentity): Promise<MessageRow> {
  return await trx.insertInto('messages')
    .values({
      sid: e.sid,
      provider: e.provider,
      channel: e.channel,
      account_sid: e.accountSid,
      messaging_service_sid: e.messagingServiceSid,
      from_address: e.from,
      to_address: e.to,
      status: null,
      body: null,
      error_code: null,
      error_message: null,
      sent_at: null,
      delivered_at: null,
      read_at: null,
      failed_at: null,
      subject: e.email?.subject ?? null,
      // NULL rather than [] so a later event that lists the recipients fills them in.
      recipients: e.email === undefined || e.email.recipients.length === 0 ? null : e.email.recipients,
      tags: e.email?.tags === undefined || e.email.tags === null ? null : JSON.stringify(e.email.tags)
    })
    .onConflict((oc) => oc.column('sid').doUpdateSet({
      account_sid: sql`coalesce(messages.account_sid, excluded.account_sid)`,
      messaging_service_sid: sql`coalesce(messages.messaging_service_sid, excluded.messaging_service_sid)`,
      from_address: sql`coalesce(messages.from_address, excluded.from_address)`,
      to_address: sql`coalesce(messages.to_address, excluded.to_address)`,
      subject: sql`coalesce(messages.subject, excluded.subject)`,
      recipients: sql`coalesce(messages.recipients, excluded.recipients)`,
      tags: sql`coalesce(messages.tags, excluded.tags)`
    }))
    .returningAll()
    .executeTakeFirstOrThrow()
}

async function recordOne (trx: Transaction<Database>, e: IncomingEvent, hooks: RecordHooks): Promise<RecordOutcome> {
  const message = await upsertMessage(trx, e)
  const inserted = await trx.insertInto('message_events')
    .values({
      message_sid: e.sid,
      message_status: e.status,
      channel: e.channel,
      from_address: e.from,
      to_address: e.to,
      error_code: e.errorCode,
      error_message: e.errorMessage,
      raw: JSON.stringify(e.raw),
      received_at: e.receivedAt,
      carrier_at: e.carrierAt,
      source: e.source,
      svix_id: e.svixId ?? null,
      occurred_at: e.occurredAt ?? null
    })
    // No conflict target: a duplicate is either `(message_sid, message_status)` or the same
    // provider delivery id (`svix_id`); both are acknowledged and change nothing.
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst()
  if (inserted === undefined) {
    return { sid: e.sid, status: e.status, outcome: 'duplicate', eventId: null, currentStatus: message.status, statusChanged: false }
  }
  const before = stateOf(message)
  const after = applyEvent(e.provider, before, {
    status: e.status,
    errorCode: e.errorCode,
    errorMessage: e.errorMessage,
    at: e.occurredAt ?? e.receivedAt
  })
  await trx.updateTable('messages')
    .set({
      status: after.status,
      status_rank: after.statusRank,
      error_code: after.errorCode,
      error_message: after.errorMessage,
      sent_at: after.sentAt,
      delivered_at: after.deliveredAt,
      read_at: after.readAt,
      failed_at: after.failedAt,
      bounced_at: after.bouncedAt,
      complained_at: after.complainedAt,
      updated_at: sql`now()`
    })
    .where('sid', '=', e.sid)
    .execute()
  if (hooks.onRecorded !== undefined) await hooks.onRecorded(trx, { event: e, message, before, after })
  return {
    sid: e.sid,
    status: e.status,
    outcome: 'recorded',
    eventId: inserted.id,
    currentStatus: after.status,
    statusChanged: after.status !== before.status
  }
}

/**
 * Records a list of events in one transaction and returns one outcome per event, in input order.
 * Events are applied in `(sid, status)` order so that concurrent batches lock rows in the same order.
 * @param hooks - optional extension point, see `RecordHooks`.
 * @throws the database's error (or a hook's); nothing is committed then, and the caller must not acknowledge.
 */
export async function recordEvents (db: Kysely<Database>, events: readonly IncomingEvent[], hooks: RecordHooks = {}): Promise<RecordOutcome[]> {
  if (events.length === 0) return []
  const order = events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.sid === b.e.sid ? (a.e.status < b.e.status ? -1 : a.e.status > b.e.status ? 1 : 0) : a.e.sid < b.e.sid ? -1 : 1)
  return await db.transaction().execute(async (trx) => {
    const outcomes: RecordOutcome[] = new Array(events.length)
    for (const { e, i } of order) outcomes[i] = await recordOne(trx, e, hooks)
    return outcomes
  })
}
