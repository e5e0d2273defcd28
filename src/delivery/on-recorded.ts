/**
 * Outbound webhooks' part of recording events (`RecordHooks.onRecorded`, added with
 * `recorder.use` in `buildApp`): inside the transaction that records a batch, one statement inserts
 * the deliveries every matching subscription is owed for the batch's new events (`message.status`
 * for each, `message.final` for the event that takes a message into a final status). Every path
 * that records events (both webhooks, reconciliation, `POST /v1/messages`, the fallback worker)
 * goes through the one recorder, so each produces deliveries; they commit with the events, so
 * nothing owed is lost and nothing is sent for a rolled-back event.
 *
 * Payloads are built here, once per delivery, from what the recorder already holds (the event, the
 * message row it locked, the status the batch left), so the statement reads no table but the
 * subscriptions and runs prepared; every attempt and replay of a delivery sends the stored body.
 */
import { sql, type Transaction } from 'kysely'
import { preparedStatement } from '../db/connect.ts'
import type { Database } from '../db/database.ts'
import { FINAL_STATUSES } from '../domain/status-precedence.ts'
import { twilioErrorMeaning } from '../domain/twilio-error-codes.ts'
import type { RecordedEvent, RecordHooks } from '../ingest/record-events.ts'
import { MATCH, type EventType } from './fan-out.ts'

/** One delivery candidate: an event under one event type, before the subscription filter. */
interface Owed {
  event_id: string
  type: EventType
  channel: string
  status: string
  external_id: string | null
  payload: unknown
}

/**
 * True when `r` takes its message into a final status: statuses only move up in rank and every
 * final status outranks every other (`status-precedence.ts`), so that is the first final status
 * the message reached, whatever order its callbacks arrived in.
 */
function reachesFinal (r: RecordedEvent): boolean {
  const finals = FINAL_STATUSES[r.event.provider]
  return finals.has(r.event.status) && (r.before.status === null || !finals.has(r.before.status))
}

/**
 * The deliveries `recorded` may be owed, with their payloads: `message.status` for every event,
 * `message.final` for those that reach a final status. `current_status` is the status the whole
 * batch left the message in.
 */
export function owedDeliveries (recorded: readonly RecordedEvent[]): Owed[] {
  const current = new Map<string, string | null>()
  for (const r of recorded) current.set(r.event.sid, r.after.status)
  const owed: Owed[] = []
  for (const r of recorded) {
    const { event: e, message: m } = r
    const data = {
      event_id: r.eventId,
      sequence: Number(r.eventId),
      message_sid: e.sid,
      provider: e.provider,
      channel: e.channel,
      status: e.status,
      current_status: current.get(e.sid) ?? null,
      error_code: e.errorCode,
      error_message: e.errorMessage,
      error_meaning: twilioErrorMeaning(e.errorCode),
      received_at: e.receivedAt,
      occurred_at: e.occurredAt ?? e.carrierAt,
      source: e.source,
      external_id: m.external_id,
      metadata: m.metadata
    }
    const types: EventType[] = reachesFinal(r) ? ['message.status', 'message.final'] : ['message.status']
    for (const type of types) {
      owed.push({ event_id: r.eventId, type, channel: e.channel, status: e.status, external_id: m.external_id, payload: { type, timestamp: e.receivedAt, data } })
    }
  }
  return owed
}

/**
 * Inserts the status deliveries owed for `recorded` (new events, recorded in `trx`), in one
 * statement whatever their number; a repeat is absorbed by UNIQUE (subscription_id, event_id).
 * @returns the deliveries inserted.
 */
export async function enqueueStatusDeliveries (trx: Transaction<Database>, recorded: readonly RecordedEvent[]): Promise<number> {
  if (recorded.length === 0) return 0
  const input = JSON.stringify(owedDeliveries(recorded))
  const result = await sql`${preparedStatement('enqueue_status_deliveries')}
    insert into webhook_deliveries (subscription_id, event_id, event_type, payload)
    select s.id, ev.type || ':' || ev.event_id, ev.type, ev.payload
    from jsonb_to_recordset(${input}::jsonb) as ev(event_id text, type text, channel text, status text, external_id text, payload jsonb)
    ${MATCH}
    on conflict (subscription_id, event_id) do nothing`.execute(trx)
  return Number(result.numAffectedRows ?? 0n)
}

/**
 * The hook for `recorder.use`. The sender learns of the new deliveries from the commit's NOTIFY
 * (the `message_events` trigger's), or at its next poll.
 */
export function webhookRecordHooks (): RecordHooks {
  return { onRecorded: async (trx, recorded) => { await enqueueStatusDeliveries(trx, recorded) } }
}
