/**
 * The fallback's part of recording an event (`RecordHooks.onRecorded`): runs inside the transaction
 * that records a WhatsApp failure, with the message row locked. When the policy says a fallback is
 * due it inserts the message's one `fallbacks` row (UNIQUE `original_sid`: 20 concurrent copies of
 * the callback, or three replicas, still make one) and, when it is to be sent, enqueues its job in
 * the same transaction. Skips are recorded with their reason, never dropped silently.
 */
import type { Transaction } from 'kysely'
import type { FallbackConfig } from '../config/fallback.ts'
import type { Database } from '../db/database.ts'
import { decideFallback, isFallbackDue, senderFor, smsRecipientOf } from '../domain/fallback-policy.ts'
import type { RecordedEvent, RecordHooks } from '../ingest/record-events.ts'
import { countRecentFallbacks, insertFallback, lockRecipient, setJobId } from './repository.ts'

export interface FallbackHookOptions {
  config: FallbackConfig
  /** Enqueues the send job inside `trx` (`enqueueFallback`); returns the job id. */
  enqueue: (trx: Transaction<Database>, fallbackId: string) => Promise<string | null>
}

/**
 * Builds the `onRecorded` hook that decides and records fallbacks. Called once per recorded batch:
 * a pure filter picks the events that call for a fallback (no I/O for any other event, so the
 * webhook hot path pays nothing), and only those few do the locking and writing below.
 */
export function fallbackRecordHook (opts: FallbackHookOptions): NonNullable<RecordHooks['onRecorded']> {
  const { config } = opts
  return async (trx, recorded) => {
    const due = recorded.filter(({ event, message, before, after }) => isFallbackDue({
      channel: message.channel,
      status: event.status,
      errorCode: event.errorCode,
      statusBefore: before.status,
      statusAfter: after.status
    }, config.errorCodes))
    for (const one of due) await recordFallback(trx, one, opts)
  }
}

/** One due fallback: decided with the message as the batch locked it, recorded with its reason. */
async function recordFallback (trx: Transaction<Database>, { event, message }: RecordedEvent, opts: FallbackHookOptions): Promise<void> {
  const { config } = opts
  const to = message.to_address === null ? null : smsRecipientOf(message.to_address)
  const sender = senderFor(message.from_address, config)
  let recent = 0
  if (message.fallback && to !== null && sender !== undefined) {
    await lockRecipient(trx, to)
    recent = await countRecentFallbacks(trx, to)
  }
  const decision = decideFallback({ optedIn: message.fallback, to, sender, recentFallbacksToRecipient: recent }, config.maxPerRecipientPerDay)

  const id = await insertFallback(trx, {
    originalSid: message.sid,
    state: decision.action === 'send' ? 'pending' : 'skipped',
    reason: decision.action === 'skip' ? decision.reason : null,
    triggerErrorCode: event.errorCode,
    to,
    sender
  })
  if (id !== undefined && decision.action === 'send') {
    await setJobId(trx, id, await opts.enqueue(trx, id))
  }
}
