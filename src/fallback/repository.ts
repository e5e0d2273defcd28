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

/**
 * The fallback's lease was taken over by a newer claim (its `lease_generation` moved on): the
 * holder of the old generation may change nothing. The newer holder looks up what the old one may
 * have sent before sending (its claim is `ambiguous`).
 */
export class LeaseLostError extends Error {
  constructor (fallbackId: string) {
    super(`fallback ${fallbackId}: the lease was taken over by a newer attempt`)
    this.name = 'LeaseLostError'
  }
}

/** What `claimFallback` found. */
export type Claim =
  | {
    kind: 'claimed'
    fallback: FallbackRow
    original: MessageRow
    /** An earlier attempt may have sent the SMS: look before sending. */
    ambiguous: boolean
    /**
     * The earlier attempt began less than a lease ago (`attempt_started_at` + `leaseMs` is still
     * ahead, by the database's clock): its create may not have reached Twilio yet, so a lookup
     * that finds nothing proves nothing until then.
     */
    earlierUnsettled: boolean
    /** The fencing token this attempt holds. */
    generation: string
    /** The caller turned the fallback off after it was decided; only an SMS already sent may be adopted. */
    optedOut: boolean
  }
  /** Already sent, failed or skipped (or gone, or cancelled now by the caller's opt-out): nothing to do. */
  | { kind: 'final' }
  /** Another worker holds it (its lease has not run out). */
  | { kind: 'busy' }

/**
 * Lock order (docs/fallback.md, "Lock order"): the message row first, then its `fallbacks` row.
 * The message is locked `FOR SHARE` so the caller's flag (`PUT`/`POST … fallback: false`, an
 * UPDATE of that row) cannot change while the decision is taken.
 */
async function lockForAttempt (trx: Transaction<Database>, id: string): Promise<{ original: MessageRow, current: FallbackRow & { leased: boolean } } | undefined> {
  const ref = await trx.selectFrom('fallbacks').select('original_sid').where('id', '=', id).executeTakeFirst()
  if (ref === undefined) return undefined
  const original = await trx.selectFrom('messages').selectAll().where('sid', '=', ref.original_sid).forShare().executeTakeFirst()
  const current = await trx.selectFrom('fallbacks')
    .selectAll()
    .select(sql<boolean>`lease_until is not null and lease_until > now()`.as('leased'))
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst()
  return original === undefined || current === undefined ? undefined : { original, current }
}

/**
 * Takes a fallback for one attempt: `sending`, one more attempt, a lease of `leaseMs` and the next
 * fencing token (`lease_generation`). When an earlier attempt's outcome is unknown
 * (`attempt_started_at` set: a crash, a timeout, a dropped connection, a 5xx, or a database fault
 * after the request), `ambiguous` is true and the caller must look for that SMS at Twilio before
 * sending again. The caller's `fallback` flag is re-read under the message's row lock: off, and
 * nothing can have been sent yet, the fallback ends here `skipped/opted_out_by_caller`.
 */
export async function claimFallback (db: Kysely<Database>, id: string, leaseMs: number): Promise<Claim> {
  return await db.transaction().execute(async (trx): Promise<Claim> => {
    const locked = await lockForAttempt(trx, id)
    if (locked === undefined) return { kind: 'final' }
    const { original, current } = locked
    if ((FINAL_STATES as readonly string[]).includes(current.state)) return { kind: 'final' }
    if (current.leased) return { kind: 'busy' }
    if (!original.fallback && current.attempt_started_at === null) {
      await finishFallback(trx, id, 'skipped', 'opted_out_by_caller')
      return { kind: 'final' }
    }
    const fallback = await trx.updateTable('fallbacks')
      .set({
        state: 'sending',
        attempts: sql`attempts + 1`,
        lease_until: sql`now() + ${leaseMs} * interval '1 millisecond'`,
        lease_generation: sql`lease_generation + 1`,
        updated_at: sql`now()`
      })
      .where('id', '=', id)
      .returningAll()
      .returning(sql<boolean>`attempt_started_at is not null and attempt_started_at + ${leaseMs} * interval '1 millisecond' > now()`.as('earlier_unsettled'))
      .executeTakeFirstOrThrow()
    const { earlier_unsettled: earlierUnsettled, ...row } = fallback
    return { kind: 'claimed', fallback: row, original, ambiguous: current.attempt_started_at !== null, earlierUnsettled, generation: row.lease_generation, optedOut: !original.fallback }
  })
}

/**
 * The durable "attempt started" record, written right before `messages.create`: checks that this
 * attempt still holds the lease (its generation), renews the lease for a full `leaseMs` (longer than
 * the request can take, so nobody takes over while it is in flight), re-reads the caller's flag
 * under the message's row lock, and sets `attempt_started_at` to now, so that any later attempt
 * looks before sending and waits until this create is a lease old before trusting an empty lookup.
 * @returns `go`, `fenced` (taken over: send nothing) or `opted_out` (now skipped).
 */
export async function startAttempt (db: Kysely<Database>, id: string, generation: string, leaseMs: number): Promise<'go' | 'fenced' | 'opted_out'> {
  return await db.transaction().execute(async (trx) => {
    const locked = await lockForAttempt(trx, id)
    if (locked === undefined || locked.current.lease_generation !== generation || locked.current.state !== 'sending') return 'fenced'
    if (!locked.original.fallback) {
      await finishFallback(trx, id, 'skipped', 'opted_out_by_caller', undefined, generation)
      return 'opted_out'
    }
    await trx.updateTable('fallbacks')
      .set({
        // The latest create's start: an earlier one was either adopted or found settled and
        // absent by the lookup that preceded this one, so only this one can still land.
        attempt_started_at: sql`now()`,
        lease_until: sql`now() + ${leaseMs} * interval '1 millisecond'`,
        updated_at: sql`now()`
      })
      .where('id', '=', id)
      .execute()
    return 'go'
  })
}

/**
 * Ends a fallback as `skipped` or `failed` (unless it already ended). With `generation`, only
 * while that attempt still holds the lease. @throws {LeaseLostError} when it does not.
 */
export async function finishFallback (
  db: Executor, id: string, state: 'skipped' | 'failed', reason: FallbackReason, error?: { code: string, message: string }, generation?: string
): Promise<void> {
  const result = await db.updateTable('fallbacks')
    .set({
      state,
      reason,
      ...(error !== undefined ? { error_code: error.code, error_message: error.message } : {}),
      lease_until: null,
      updated_at: sql`now()`
    })
    .where('id', '=', id)
    .where('state', 'not in', FINAL_STATES)
    .$if(generation !== undefined, (qb) => qb.where('lease_generation', '=', generation as string))
    .executeTakeFirst()
  if (generation !== undefined && result.numUpdatedRows === 0n) {
    const row = await db.selectFrom('fallbacks').select(['lease_generation', 'state']).where('id', '=', id).executeTakeFirst()
    if (row !== undefined && row.lease_generation !== generation) throw new LeaseLostError(id)
  }
}

/**
 * The caller turned the fallback of `originalSid` off (`PUT`/`POST /v1/messages` with
 * `fallback: false`): a fallback that is still `pending` and that no attempt has started is
 * cancelled (`skipped/opted_out_by_caller`). One that is being claimed re-reads the flag itself
 * (`claimFallback`, `startAttempt`). Run in the transaction that stores the flag, which holds the
 * message's row lock (lock order: message, then fallback).
 */
export async function cancelPendingFallback (trx: Transaction<Database>, originalSid: string): Promise<void> {
  await trx.updateTable('fallbacks')
    .set({ state: 'skipped', reason: 'opted_out_by_caller', lease_until: null, updated_at: sql`now()` })
    .where('original_sid', '=', originalSid)
    .where('state', '=', 'pending')
    .where('attempt_started_at', 'is', null)
    .execute()
}

/**
 * Gives a fallback back after a retryable failure: `pending` with the error, until the queue
 * retries it. `outcomeUnknown` keeps `attempt_started_at` (look before re-sending); otherwise
 * it is reset to what it was before this attempt. Only while `generation` holds the lease (a
 * stale attempt changes nothing).
 */
export async function releaseForRetry (
  db: Executor, id: string, generation: string, error: { code: string, message: string }, opts: { outcomeUnknown: boolean, previouslyAmbiguous: boolean }
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
    .where('lease_generation', '=', generation)
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
 * original and keeps the text, and the original points at the SMS. Idempotent. Locks the two
 * message rows (in SID order), then the fallback (docs/fallback.md, "Lock order").
 * @throws {LeaseLostError} when `generation` no longer holds the lease: nothing is changed, and the
 *   newer holder finds this SMS at Twilio and links it.
 */
export async function linkSentFallback (db: Kysely<Database>, fallback: FallbackRow, smsSid: string, text: string, generation: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.selectFrom('messages').select('sid').where('sid', 'in', [smsSid, fallback.original_sid]).orderBy('sid').forUpdate().execute()
    const current = await trx.selectFrom('fallbacks').select('lease_generation').where('id', '=', fallback.id).forUpdate().executeTakeFirst()
    if (current === undefined || current.lease_generation !== generation) throw new LeaseLostError(fallback.id)
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
      // The SMS exists, so this wins even over a `failed/retries_exhausted` or a caller's opt-out
      // written meanwhile (an attempt that outlived its job's expiry on the last try).
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
