/**
 * The recording statements: each handles a whole batch in one round trip, whatever its size. The
 * batch travels as one JSON array (`jsonb_to_recordset`), which is cheaper to build and to send
 * than one parameter per column and row, and keeps the statement text fixed, so the two inserts run
 * as prepared statements (`preparedStatement`): parsed and planned once per connection. Called by
 * `recordBatch` (record-events.ts), which owns the transaction.
 */
import { sql, type Transaction } from 'kysely'
import { preparedStatement } from '../db/connect.ts'
import { MESSAGE_COLUMNS, type Database, type MessageRow } from '../db/database.ts'
import type { MessageState } from '../domain/status-precedence.ts'
import type { IncomingEvent, MessageIdentity } from './record-events.ts'

/** `messages.*` spelled out (see `MESSAGE_COLUMNS`). */
const RETURNED_MESSAGE_COLUMNS = sql.raw(MESSAGE_COLUMNS.join(', '))

/** A message whose status state the batch moved. */
export interface MessageChange {
  sid: string
  state: MessageState
}

/**
 * Creates the messages that do not exist, fills the fields the existing ones lack, and locks every
 * row in `sid` order until the transaction ends. An identity from another account than the stored
 * message's fills nothing (that event will be refused as `account_mismatch`).
 * @param identities - at most one per sid.
 * @returns every row, by sid.
 */
export async function upsertMessages (trx: Transaction<Database>, identities: readonly MessageIdentity[]): Promise<Map<string, MessageRow>> {
  const input = JSON.stringify(identities.map((e) => ({
    sid: e.sid,
    provider: e.provider,
    channel: e.channel,
    account_sid: e.accountSid,
    messaging_service_sid: e.messagingServiceSid,
    from_address: e.from,
    to_address: e.to,
    subject: e.email?.subject ?? null,
    // NULL rather than [] so a later event that lists the recipients fills them in.
    recipients: e.email === undefined || e.email.recipients.length === 0 ? null : e.email.recipients,
    tags: e.email?.tags ?? null
  })))
  // Fill a missing field only from the message's own account (or when either has none).
  const fill = (column: string): ReturnType<typeof sql.raw> => sql.raw(`${column} = case
      when messages.account_sid is null or excluded.account_sid is null or messages.account_sid = excluded.account_sid
      then coalesce(messages.${column}, excluded.${column}) else messages.${column} end`)
  const result = await sql<MessageRow>`${preparedStatement('upsert_messages')}
    insert into messages (sid, provider, channel, account_sid, messaging_service_sid, from_address, to_address, subject, recipients, tags)
    select sid, provider, channel, account_sid, messaging_service_sid, from_address, to_address, subject, recipients, tags
    from jsonb_to_recordset(${input}::jsonb) as x(sid text, provider text, channel text, account_sid text,
      messaging_service_sid text, from_address text, to_address text, subject text, recipients text[], tags jsonb)
    order by sid
    on conflict (sid) do update set
      account_sid = coalesce(messages.account_sid, excluded.account_sid),
      ${fill('messaging_service_sid')}, ${fill('from_address')}, ${fill('to_address')},
      ${fill('subject')}, ${fill('recipients')}, ${fill('tags')}
    returning ${RETURNED_MESSAGE_COLUMNS}`.execute(trx)
  return new Map(result.rows.map((row) => [row.sid, row]))
}

/**
 * Inserts the events, skipping those already recorded (`(message_sid, message_status)` or
 * `svix_id`), with ids in input order.
 * @param events - at most one per `(sid, status)`.
 * @returns the new events' ids, keyed `${sid}\u0000${status}`.
 */
export async function insertEvents (trx: Transaction<Database>, events: readonly IncomingEvent[]): Promise<Map<string, string>> {
  if (events.length === 0) return new Map()
  const input = JSON.stringify(events.map((e, ord) => ({
    ord,
    sid: e.sid,
    status: e.status,
    channel: e.channel,
    from_address: e.from,
    to_address: e.to,
    error_code: e.errorCode,
    error_message: e.errorMessage,
    raw: e.raw,
    received_at: e.receivedAt,
    carrier_at: e.carrierAt,
    source: e.source,
    svix_id: e.svixId ?? null,
    occurred_at: e.occurredAt ?? null
  })))
  const result = await sql<{ id: string, message_sid: string, message_status: string }>`${preparedStatement('insert_events')}
    insert into message_events (message_sid, message_status, channel, from_address, to_address, error_code,
      error_message, raw, received_at, carrier_at, source, svix_id, occurred_at)
    select sid, status, channel, from_address, to_address, error_code, error_message, raw, received_at,
      carrier_at, source, svix_id, occurred_at
    from jsonb_to_recordset(${input}::jsonb) as x(ord int, sid text, status text, channel text, from_address text,
      to_address text, error_code text, error_message text, raw jsonb, received_at timestamptz,
      carrier_at timestamptz, source text, svix_id text, occurred_at timestamptz)
    order by ord
    on conflict do nothing
    returning id, message_sid, message_status`.execute(trx)
  return new Map(result.rows.map((r) => [`${r.message_sid}\u0000${r.message_status}`, String(r.id)]))
}

/**
 * Writes the folded status state of every changed message and touches `updated_at`.
 *
 * The sids also travel as an array for `sid = any(…)`: the planner cannot see how many rows
 * `jsonb_to_recordset` yields (it assumes 100), and on a small or freshly grown `messages` table it
 * then chose a hash join over a sequential scan of the whole table for every batch (measured:
 * 2 ms a batch at 6,000 messages, most of the database's CPU, and growing with the table).
 * It is not a prepared statement for the same reason: a generic plan cannot see the array's length
 * either, and the one PostgreSQL cached while the table was small kept scanning it when it grew.
 */
export async function applyStatusChanges (trx: Transaction<Database>, changes: readonly MessageChange[]): Promise<void> {
  if (changes.length === 0) return
  const input = JSON.stringify(changes.map(({ sid, state: s }) => ({
    sid,
    status: s.status,
    status_rank: s.statusRank,
    error_code: s.errorCode,
    error_message: s.errorMessage,
    sent_at: s.sentAt,
    delivered_at: s.deliveredAt,
    read_at: s.readAt,
    failed_at: s.failedAt,
    bounced_at: s.bouncedAt,
    complained_at: s.complainedAt
  })))
  await sql`
    update messages m set status = x.status, status_rank = x.status_rank, error_code = x.error_code,
      error_message = x.error_message, sent_at = x.sent_at, delivered_at = x.delivered_at, read_at = x.read_at,
      failed_at = x.failed_at, bounced_at = x.bounced_at, complained_at = x.complained_at, updated_at = now()
    from jsonb_to_recordset(${input}::jsonb) as x(sid text, status text, status_rank smallint, error_code text,
      error_message text, sent_at timestamptz, delivered_at timestamptz, read_at timestamptz, failed_at timestamptz,
      bounced_at timestamptz, complained_at timestamptz)
    where m.sid = any(${changes.map((c) => c.sid)}::text[]) and m.sid = x.sid`.execute(trx)
}
