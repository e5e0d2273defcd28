/**
 * Outbound webhooks' part of recording events (`RecordHooks.onRecorded`, added with
 * `recorder.use` in `buildApp`): inside the transaction that records a batch, one statement inserts
 * the deliveries every matching subscription is owed for the batch's new events (`message.status`
 * for each, `message.final` for a message's first final status). Every path that records events
 * (both webhooks, reconciliation, `POST /v1/messages`, the fallback worker) goes through the one
 * recorder, so each produces deliveries; they commit with the events, so nothing owed is lost and
 * nothing is sent for a rolled-back event.
 *
 * Payloads are built here, in SQL, once per delivery, so every attempt and replay of a delivery
 * sends the same body. The message row is read after the batch's status update (same transaction),
 * so `current_status` is the status the batch left.
 */
import { sql, type Transaction } from 'kysely'
import type { Database } from '../db/database.ts'
import type { RecordHooks } from '../ingest/record-events.ts'
import { FINALS, MATCH, MEANINGS } from './fan-out.ts'

/**
 * Inserts the status deliveries owed for `eventIds` (`message_events.id`, recorded in `trx`), in
 * one statement whatever their number; a repeat is absorbed by UNIQUE (subscription_id, event_id).
 * @returns the deliveries inserted.
 */
export async function enqueueStatusDeliveries (trx: Transaction<Database>, eventIds: readonly string[]): Promise<number> {
  if (eventIds.length === 0) return 0
  const result = await sql`
    with ev as (
      select e.id, e.message_sid, e.message_status, e.message_status as status, e.channel, e.error_code, e.error_message,
             e.received_at, coalesce(e.occurred_at, e.carrier_at) as occurred_at, e.source,
             m.provider, m.status as current_status, m.external_id, m.metadata, t.type
      from unnest(${eventIds}::bigint[]) as b(id)
      join message_events e on e.id = b.id
      join messages m on m.sid = e.message_sid
      cross join lateral (values ('message.status'), ('message.final')) as t(type)
      where t.type = 'message.status' or (e.message_status = any(${FINALS}::text[]) and not exists (
        select 1 from message_events q
        where q.message_sid = e.message_sid and q.id < e.id and q.message_status = any(${FINALS}::text[])))
    )
    insert into webhook_deliveries (subscription_id, event_id, event_type, payload)
    select s.id, ev.type || ':' || ev.id, ev.type, jsonb_build_object(
      'type', ev.type,
      'timestamp', ev.received_at,
      'data', jsonb_build_object(
        'event_id', ev.id::text,
        'sequence', ev.id,
        'message_sid', ev.message_sid,
        'provider', ev.provider,
        'channel', ev.channel,
        'status', ev.message_status,
        'current_status', ev.current_status,
        'error_code', ev.error_code,
        'error_message', ev.error_message,
        'error_meaning', ${MEANINGS}::jsonb ->> ev.error_code,
        'received_at', ev.received_at,
        'occurred_at', ev.occurred_at,
        'source', ev.source,
        'external_id', ev.external_id,
        'metadata', ev.metadata))
    from ev ${MATCH}
    on conflict (subscription_id, event_id) do nothing`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/**
 * The hook for `recorder.use`. The sender learns of the new deliveries from the commit's NOTIFY
 * (the `message_events` trigger's), or at its next poll.
 */
export function webhookRecordHooks (): RecordHooks {
  return {
    onRecorded: async (trx, recorded) => { await enqueueStatusDeliveries(trx, recorded.map((r) => r.eventId)) }
  }
}
