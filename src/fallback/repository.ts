/**
 * The `fallbacks` table and the fallback links on `messages`. Free functions taking `db` or `trx`
 * first; the caller owns the transaction.
 */
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database, FallbackRow, MessageRow } from '../db/database.ts'
import type { FallbackReason, SmsSender } from '../domain/fallback-policy.ts'

type Executor = Kysely<Database> | Transaction<Database>

/** States a fallback never leaves. */
export const FINAL_STATES = ['sent', 'failed', 'skipped'] as const

export interface NewFallback {
  originalSid: string
  state: 'pending' | 'skipped'
  reason: FallbackReason | null
  triggerErrorCode: string | null
  to: string | null
  sender: SmsSender | undefined
}

/**
 * Inserts the fallback of `originalSid` unless it has one (UNIQUE `original_sid`).
 * @returns the new row's id, or `undefined` when the message already had a fallback.
 */
export async function insertFallback (trx: Executor, f: NewFallback): Promise<string | undefined> {
  const row = await trx.insertInto('fallbacks')
    .values({
      original_sid: f.originalSid,
      state: f.state,
      reason: f.reason,
      trigger_error_code: f.triggerErrorCode,
      to_address: f.to,
      sms_from: f.sender !== undefined && 'from' in f.sender ? f.sender.from : null,
      messaging_service_sid: f.sender !== undefined && 'messagingServiceSid' in f.sender ? f.sender.messagingServiceSid : null,
      fallback_sid: null,
      error_code: null,
      error_message: null,
      attempt_started_at: null,
      lease_until: null,
      job_id: null
    })
    .onConflict((oc) => oc.column('original_sid').doNothing())
    .returning('id')
    .executeTakeFirst()
  return row?.id
}

/**
 * Serialises fallback decisions for one recipient until the transaction ends, so two failures to
 * the same number cannot both slip under the daily cap.
 */
export async function lockRecipient (trx: Transaction<Database>, to: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${'tidings:fallback:' + to}, 0))`.execute(trx)
}

/** Fallbacks to `to` created in the last 24 h that were or will be sent (not skipped, not failed). */
export async function countRecentFallbacks (trx: Executor, to: string): Promise<number> {
  const row = await trx.selectFrom('fallbacks')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('to_address', '=', to)
    .where('created_at', '>', sql<Date>`now() - interval '24 hours'`)
    .where('state', 'in', ['pending', 'sending', 'sent'])
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

export async function setJobId (trx: Executor, id: string, jobId: string | null): Promise<void> {
  await trx.updateTable('fallbacks').set({ job_id: jobId }).where('id', '=', id).execute()
}

/** What `claimFallback` found. */
export type Claim =
  | { kind: 'claimed', fallback: FallbackRow, original: MessageRow, ambiguous: boolean }
  /** Already sent, failed or skipped (or gone): nothing to do. */
  | { kind: 'final' }
  /** Another worker holds it (its lease has not run out). */
  | { kind: 'busy' }

/**
 * Takes a fallback for one attempt: `sending`, one more attempt, a lease of `leaseMs`. When an
 * earlier attempt's outcome is unknown (`attempt_started_at` set: a crash, a timeout, a dropped
 * connection or a 5xx after the request went out), `ambiguous` is true and the caller must look
 * for that SMS at Twilio before sending again. `attempt_started_at` is set now, before the
 * request, so a crash during it leaves that trace behind.
 */
export async function claimFallback (db: Kysely<Database>, id: string, leaseMs: number): Promise<Claim> {
  return await db.transaction().execute(async (trx): Promise<Claim> => {
    const current = await trx.selectFrom('fallbacks')
      .selectAll()
      .select(sql<boolean>`lease_until is not null and lease_until > now()`.as('leased'))
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst()
    if (current === undefined || (FINAL_STATES as readonly string[]).includes(current.state)) return { kind: 'final' }
    if (current.leased) return { kind: 'busy' }
    const fallback = await trx.updateTable('fallbacks')
      .set({
        state: 'sending',
        attempts: sql`attempts + 1`,
        attempt_started_at: sql`coalesce(attempt_started_at, now())`,
        lease_until: sql`now() + ${leaseMs} * interval '1 millisecond'`,
        updated_at: sql`now()`
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow()
    const original = await trx.selectFrom('messages').selectAll().where('sid', '=', fallback.original_sid).executeTakeFirstOrThrow()
    return { kind: 'claimed', fallback, original, ambiguous: current.attempt_started_at !== null }
  })
}

/** Ends a fallback as `skipped` or `failed` (unless it already ended). */
export async function finishFallback (
  db: Executor, id: string, state: 'skipped' | 'failed', reason: FallbackReason, error?: { code: string, message: string }
): Promise<void> {
  await db.updateTable('fallbacks')
    .set({
      state,
      reason,
      ...(error !== undefined ? { error_code: error.code, error_message: error.message } : {}),
      lease_until: null,
      updated_at: sql`now()`
    })
    .where('id', '=', id)
    .where('state', 'not in', FINAL_STATES)
    .execute()
}

/**
 * Gives a fallback back after a retryable failure: `pending` with the error, until the queue
 * retries it. `outcomeUnknown` keeps `attempt_started_at` (look before re-sending); otherwise
 * it is reset to what it was before this attempt.
 */
export async function releaseForRetry (
  db: Executor, id: string, error: { code: string, message: string }, opts: { outcomeUnknown: boolean, previouslyAmbiguous: boolean }
): Promise<void> {
  await db.updateTable('fallbacks')
    .set({
      state: 'pending',
      error_code: error.code,
      error_message: error.message,
      lease_until: null,
      ...(opts.outcomeUnknown || opts.previouslyAmbiguous ? {} : { attempt_started_at: null }),
      updated_at: sql`now()`
    })
    .where('id', '=', id)
    .where('state', 'not in', FINAL_STATES)
    .execute()
}

/** True when `sid` is already some fallback's SMS (so a lookup never adopts another fallback's SMS). */
export async function isKnownFallbackSid (db: Executor, sid: string): Promise<boolean> {
  const row = await db.selectFrom('fallbacks').select('id').where('fallback_sid', '=', sid).executeTakeFirst()
  return row !== undefined
}

/**
 * Records that the SMS `smsSid` is the fallback of `fallback.original_sid`: the fallback is `sent`,
 * the SMS row (created by `recordEvents` just before, or by its own early callback) points at the
 * original and keeps the text, and the original points at the SMS. Idempotent.
 */
export async function linkSentFallback (db: Kysely<Database>, fallback: FallbackRow, smsSid: string, text: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('messages')
      .set({ fallback_of: fallback.original_sid, body: sql`coalesce(body, ${text})`, updated_at: sql`now()` })
      .where('sid', '=', smsSid)
      .execute()
    await trx.updateTable('messages')
      .set({ fallback_sid: smsSid, updated_at: sql`now()` })
      .where('sid', '=', fallback.original_sid)
      .execute()
    await trx.updateTable('fallbacks')
      .set({
        state: 'sent',
        reason: null,
        fallback_sid: smsSid,
        error_code: null,
        error_message: null,
        lease_until: null,
        attempt_started_at: null,
        updated_at: sql`now()`
      })
      .where('id', '=', fallback.id)
      // The SMS exists, so this wins even over a `failed/retries_exhausted` written meanwhile
      // (an attempt that outlived its job's expiry on the last try).
      .where('state', '!=', 'sent')
      .execute()
  })
}

/** The fallback of `originalSid`, with the current status of its SMS. */
export async function findFallbackOf (db: Executor, originalSid: string): Promise<(FallbackRow & { sms_status: string | null }) | undefined> {
  return await db.selectFrom('fallbacks')
    .leftJoin('messages', 'messages.sid', 'fallbacks.fallback_sid')
    .selectAll('fallbacks')
    .select('messages.status as sms_status')
    .where('fallbacks.original_sid', '=', originalSid)
    .executeTakeFirst()
}
