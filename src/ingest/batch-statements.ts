/**
 * The recording statements: each handles a whole batch, whatever its size, and a batch takes two
 * round trips in all (BEGIN travels with the first statement, the update with COMMIT:
 * src/db/round-trips.ts). The batch travels as JSON arrays (`jsonb_to_recordset`), which are
 * cheaper to build and to send than one parameter per column and row, and keep the statement text
 * fixed, so the upsert-and-insert runs as a prepared statement (`preparedStatement`): parsed and
 * planned once per connection. Called by `recordBatch` (record-events.ts), which owns the transaction.
 */
import { sql, type RawBuilder, type Transaction } from 'kysely'
import { preparedStatement, sentWithNext } from '../db/connect.ts'
import { MESSAGE_COLUMNS, RECORDING_COLUMNS, type Database, type MessageRow, type RecordingMessage } from '../db/database.ts'
import type { MessageState } from '../domain/status-precedence.ts'
import type { IncomingEvent, MessageIdentity } from './record-events.ts'

/** `messages.*` spelled out (see `MESSAGE_COLUMNS`). */
const RETURNED_MESSAGE_COLUMNS = sql.raw(MESSAGE_COLUMNS.join(', '))
/** What `upsertMessagesInsertEvents` returns of the upsert's rows (`m`): `RECORDING_COLUMNS`. */
const BATCH_MESSAGE_COLUMNS = sql.raw(RECORDING_COLUMNS.map((c) => `m.${c}`).join(', '))

/** A message whose status state the batch moved. */
export interface MessageChange {
  sid: string
  state: MessageState
}

/** The batch's messages as `upsertSql` reads them: one JSON array. */
function identitiesJson (identities: readonly MessageIdentity[]): string {
  return JSON.stringify(identities.map((e) => ({
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
}

/**
 * The upsert of `identitiesJson`: creates the messages that do not exist, fills the fields the
 * existing ones lack, and locks every row in `sid` order until the transaction ends. An identity
 * from another account than the stored message's fills nothing (its events are refused as
 * `account_mismatch`). Returns the rows' `MESSAGE_COLUMNS`.
 */
function upsertSql (input: string): RawBuilder<MessageRow> {
  // Fill a missing field only from the message's own account (or when either has none).
  const fill = (column: string): RawBuilder<unknown> => sql.raw(`${column} = case
      when messages.account_sid is null or excluded.account_sid is null or messages.account_sid = excluded.account_sid
      then coalesce(messages.${column}, excluded.${column}) else messages.${column} end`)
  return sql<MessageRow>`insert into messages (sid, provider, channel, account_sid, messaging_service_sid, from_address, to_address, subject, recipients, tags)
    select sid, provider, channel, account_sid, messaging_service_sid, from_address, to_address, subject, recipients, tags
    from jsonb_to_recordset(${input}::jsonb) as x(sid text, provider text, channel text, account_sid text,
      messaging_service_sid text, from_address text, to_address text, subject text, recipients text[], tags jsonb)
    order by sid
    on conflict (sid) do update set
      account_sid = coalesce(messages.account_sid, excluded.account_sid),
      ${fill('messaging_service_sid')}, ${fill('from_address')}, ${fill('to_address')},
      ${fill('subject')}, ${fill('recipients')}, ${fill('tags')}
    returning ${RETURNED_MESSAGE_COLUMNS}`
}

/**
 * Creates or fills and locks messages (see `upsertSql`), for callers that record no status event.
 * @param identities - at most one per sid.
 * @returns every row, by sid.
 */
export async function upsertMessages (trx: Transaction<Database>, identities: readonly MessageIdentity[]): Promise<Map<string, MessageRow>> {
  const result = await sql<MessageRow>`${preparedStatement('upsert_messages')} ${upsertSql(identitiesJson(identities))}`.execute(trx)
  return new Map(result.rows.map((row) => [row.sid, row]))
}

/** What `upsertMessagesInsertEvents` found and did. */
export interface BatchWrite {
  /** Every message of the batch as locked and filled (`RECORDING_COLUMNS`), by sid. */
  rows: Map<string, RecordingMessage>
  /** The new events' ids, keyed `${sid}\u0000${status}`. */
  ids: Map<string, string>
}

/**
 * One statement, one round trip: the upsert of the batch's messages (`upsertSql`), then the insert
 * of its events with `ON CONFLICT DO NOTHING`, skipping those already recorded
 * (`(message_sid, message_status)` or `svix_id`) and those whose `AccountSid` differs from their
 * message's (refused as `account_mismatch` by the caller). Event ids follow the input order.
 *
 * The transaction's xid is taken before any event id, as the live stream's horizon requires
 * (src/stream/horizon.ts): an event row is formed only from a joined message row, so the upsert
 * has written (and taken the xid) before the first `nextval` of the events' ids.
 * @param identities - at most one per sid; every event's sid among them.
 * @param events - in the order their ids should follow; a repeated `(sid, status)` is inserted once.
 */
export async function upsertMessagesInsertEvents (trx: Transaction<Database>, identities: readonly MessageIdentity[], events: readonly IncomingEvent[]): Promise<BatchWrite> {
  const input = JSON.stringify(events.map((e, ord) => ({
    ord,
    sid: e.sid,
    account_sid: e.accountSid,
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
  const result = await sql<RecordingMessage & { new_event_ids: Record<string, string> | null }>`${preparedStatement('record_batch')}
    with m as (${upsertSql(identitiesJson(identities))}),
    e as (
      insert into message_events (message_sid, message_status, channel, from_address, to_address, error_code,
        error_message, raw, received_at, carrier_at, source, svix_id, occurred_at)
      select x.sid, x.status, x.channel, x.from_address, x.to_address, x.error_code, x.error_message, x.raw,
        x.received_at, x.carrier_at, x.source, x.svix_id, x.occurred_at
      from jsonb_to_recordset(${input}::jsonb) as x(ord int, sid text, account_sid text, status text, channel text,
        from_address text, to_address text, error_code text, error_message text, raw jsonb, received_at timestamptz,
        carrier_at timestamptz, source text, svix_id text, occurred_at timestamptz)
      join m on m.sid = x.sid
      where x.account_sid is null or m.account_sid is null or x.account_sid = m.account_sid
      order by x.ord
      on conflict do nothing
      returning id, message_sid, message_status
    )
    select ${BATCH_MESSAGE_COLUMNS}, ids.new_event_ids
    from m left join (
      select message_sid, jsonb_object_agg(message_status, id::text) as new_event_ids from e group by message_sid
    ) ids on ids.message_sid = m.sid`.execute(trx)
  const rows = new Map<string, RecordingMessage>()
  const ids = new Map<string, string>()
  for (const { new_event_ids: created, ...row } of result.rows) {
    rows.set(row.sid, row)
    if (created !== null) for (const [status, id] of Object.entries(created)) ids.set(`${row.sid}\u0000${status}`, id)
  }
  return { rows, ids }
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
 *
 * Nothing reads its result, so it travels with the transaction's next statement (a hook's, or
 * COMMIT: `sentWithNext`), one round trip fewer; if it fails, that statement rejects with its error
 * and nothing of the batch commits.
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
  await sql`${sentWithNext()}
    update messages m set status = x.status, status_rank = x.status_rank, error_code = x.error_code,
      error_message = x.error_message, sent_at = x.sent_at, delivered_at = x.delivered_at, read_at = x.read_at,
      failed_at = x.failed_at, bounced_at = x.bounced_at, complained_at = x.complained_at, updated_at = now()
    from jsonb_to_recordset(${input}::jsonb) as x(sid text, status text, status_rank smallint, error_code text,
      error_message text, sent_at timestamptz, delivered_at timestamptz, read_at timestamptz, failed_at timestamptz,
      bounced_at timestamptz, complained_at timestamptz)
    where m.sid = any(${changes.map((c) => c.sid)}::text[]) and m.sid = x.sid`.execute(trx)
}
