/**
 * Fan-out of the change log: one page of committed `webhook_outbox` rows past the cursor (the
 * trigger-written log of fallback state changes, `message.fallback`, and email engagement,
 * `email.engagement`) becomes the deliveries every matching subscription is owed, in one statement
 * that also advances the cursor (so the page and the cursor commit together: a crash repeats a
 * page, `ON CONFLICT DO NOTHING` on (subscription_id, event_id) absorbs the repeat, and nothing is
 * skipped). Payloads are built here, in SQL, once per delivery, so every attempt and replay of a
 * delivery sends the same body.
 *
 * Status changes (`message.status`, `message.final`) do not pass through here: the recorder's hook
 * inserts their deliveries in the recording transaction (`./on-recorded.ts`).
 */
import { sql, type Transaction } from 'kysely'

/** The event types a subscription can ask for. */
export const EVENT_TYPES = ['message.status', 'message.final', 'message.fallback', 'email.engagement'] as const
export type EventType = typeof EVENT_TYPES[number]

/** The sources the dispatcher reads, by cursor name (a row of `webhook_cursors` each). */
export type CursorName = 'webhook_outbox'

/** What one page did. */
export interface PageResult {
  /** The cursor after the page. */
  lastId: bigint
  /** Deliveries inserted. */
  inserted: number
}

// The subscription filter, shared with `./on-recorded.ts`: `ev` has type, channel, status (or null) and external_id.
export const MATCH = sql`
  join webhook_subscriptions s on s.enabled and ev.type = any(s.event_types)
    and (s.channels is null or ev.channel = any(s.channels))
    and (s.statuses is null or ev.status is null or ev.status = any(s.statuses))
    and (s.external_id_prefix is null or starts_with(ev.external_id, s.external_id_prefix))`

/**
 * Fans out the change-log rows with `after < id <= upTo`, at most `limit` of them, and moves the
 * cursor. Runs in `trx`, which must hold the cursor row (`lockCursor`).
 */
export async function fanOutPage (trx: Transaction<any>, after: bigint, upTo: bigint, limit: number): Promise<PageResult> {
  const { rows } = await outboxPage(after, upTo, limit).execute(trx)
  return { lastId: BigInt(rows[0].last_id), inserted: rows[0].inserted }
}

function outboxPage (after: bigint, upTo: bigint, limit: number) {
  return sql<{ last_id: string, inserted: number }>`
    with page as (
      select o.id, o.kind, o.ref_id, o.state, o.created_at
      from webhook_outbox o
      where o.id > ${after.toString()}::bigint and o.id <= ${upTo.toString()}::bigint
      order by o.id limit ${limit}
    ), ev as (
      select p.id, 'message.fallback' as type, m.channel, null::text as status, m.external_id, p.created_at as at,
        jsonb_build_object(
          'event_id', p.id::text,
          'sequence', p.id,
          'message_sid', f.original_sid,
          'provider', m.provider,
          'channel', m.channel,
          'current_status', m.status,
          'fallback', jsonb_build_object(
            'id', f.id::text, 'state', p.state, 'reason', f.reason, 'trigger_error_code', f.trigger_error_code,
            'fallback_sid', f.fallback_sid, 'error_code', f.error_code, 'error_message', f.error_message, 'attempts', f.attempts),
          'changed_at', p.created_at,
          'external_id', m.external_id,
          'metadata', m.metadata) as data
      from page p join fallbacks f on f.id = p.ref_id join messages m on m.sid = f.original_sid
      where p.kind = 'fallback'
      union all
      select p.id, 'email.engagement', m.channel, null, m.external_id, g.received_at,
        jsonb_build_object(
          'event_id', p.id::text,
          'sequence', p.id,
          'message_sid', g.message_sid,
          'provider', m.provider,
          'channel', m.channel,
          'current_status', m.status,
          'engagement', jsonb_build_object('id', g.id::text, 'kind', g.kind, 'link', g.link, 'occurred_at', g.occurred_at),
          'received_at', g.received_at,
          'external_id', m.external_id,
          'metadata', m.metadata)
      from page p join email_engagements g on g.id = p.ref_id join messages m on m.sid = g.message_sid
      where p.kind = 'engagement'
    ), ins as (
      insert into webhook_deliveries (subscription_id, event_id, event_type, payload)
      select s.id, ev.type || ':' || ev.id, ev.type, jsonb_build_object('type', ev.type, 'timestamp', ev.at, 'data', ev.data)
      from ev ${MATCH}
      on conflict (subscription_id, event_id) do nothing
      returning 1
    ), upd as (
      update webhook_cursors set last_id = greatest(last_id, case
        when (select count(*) from page) < ${limit} then ${upTo.toString()}::bigint
        else (select max(id) from page) end)
      where name = 'webhook_outbox'
      returning last_id
    )
    select (select last_id from upd)::text as last_id, (select count(*) from ins)::int as inserted`
}

/**
 * Takes the cursor row of `cursor` for this transaction, or returns null when another replica's
 * dispatcher holds it (`SKIP LOCKED`): that is what makes fan-out run once across replicas.
 */
export async function lockCursor (trx: Transaction<any>, cursor: CursorName): Promise<bigint | null> {
  const { rows } = await sql<{ last_id: string }>`
    select last_id::text as last_id from webhook_cursors where name = ${cursor} for update skip locked`.execute(trx)
  return rows.length === 0 ? null : BigInt(rows[0].last_id)
}

/** Moves `cursor` to `upTo` without reading (no subscription is enabled: nothing is owed). */
export async function skipTo (trx: Transaction<any>, cursor: CursorName, upTo: bigint): Promise<void> {
  await sql`update webhook_cursors set last_id = greatest(last_id, ${upTo.toString()}::bigint) where name = ${cursor}`.execute(trx)
}
