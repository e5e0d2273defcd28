/**
 * `Idempotency-Key` records for `POST /v1/messages`, per API key name
 * (the IETF draft: https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/).
 *
 * A request claims its key with one INSERT … ON CONFLICT before Twilio is called: the primary key
 * `(api_key_name, idempotency_key)` lets exactly one of several concurrent duplicates win. The
 * others see the row and get the stored response (`done`), `409 idempotency_in_progress`
 * (`in_progress`, lease not run out) or `422 idempotency_key_reused` (another body).
 *
 * A claim whose send may have reached Twilio without Tidings learning the outcome (a timeout, a
 * 5xx, a dropped connection, or a process that died holding the lease) is left `unknown`; the next
 * request with the same key and body takes it over with `ambiguous` set, and looks for the message
 * at Twilio before sending again. Rows are kept until `expires_at`; an expired key is free again.
 *
 * Fencing: every claim takes the next `lease_generation`; starting the send, completing and
 * releasing require the generation the request holds, so a request whose lease ran out and was
 * taken over can neither send under the key nor store its answer.
 */
import { sql, type ExpressionBuilder, type Kysely, type Transaction } from 'kysely'
import type { Database, IdempotencyRow } from './database.ts'

type Executor = Kysely<Database> | Transaction<Database>

/** What `claimIdempotencyKey` found. */
export type IdempotencyClaim =
  /**
   * This request holds the key with fencing token `generation`; `ambiguous`: an earlier attempt may
   * have sent the message; `messageSid`: the message an earlier attempt is known to have sent (its
   * recording failed), to adopt without a lookup.
   */
  | {
    kind: 'claimed'
    ambiguous: boolean
    attemptStartedAt: Date
    /**
     * Seconds until the earlier, uncertain create is a lease old (`attempt_started_at` + `leaseMs`,
     * by the database's clock), rounded up; 0 when it is, or when there is none. Until then Twilio
     * may still accept it, so a lookup that finds nothing proves nothing.
     */
    unsettledS: number
    generation: string
    messageSid: string | null
  }
  /** The first request finished: answer what it answered. */
  | { kind: 'replay', status: number, body: unknown }
  /** The same key with another body. */
  | { kind: 'reused' }
  /** Another request holds the key right now. */
  | { kind: 'in_progress', retryAfterS: number }

export interface ClaimInput {
  apiKeyName: string
  key: string
  requestHash: string
  /** How long the claim is held (longer than one Twilio request can take). */
  leaseMs: number
  /** How long the record is kept. */
  ttlMs: number
}

/**
 * Claims `key` for this request, or says why not. Expired rows count as absent; an `unknown` row,
 * or an `in_progress` one whose lease ran out, is taken over by a request with the same body.
 */
export async function claimIdempotencyKey (db: Executor, c: ClaimInput): Promise<IdempotencyClaim> {
  const claimed = await db.insertInto('idempotency_keys')
    .values({
      api_key_name: c.apiKeyName,
      idempotency_key: c.key,
      request_hash: c.requestHash,
      state: 'in_progress',
      locked_until: sql<Date>`now() + ${c.leaseMs} * interval '1 millisecond'`,
      attempt_started_at: sql<Date>`now()`,
      message_sid: null,
      response_status: null,
      response_body: null,
      expires_at: sql<Date>`now() + ${c.ttlMs} * interval '1 millisecond'`
    })
    .onConflict((oc) => oc.columns(['api_key_name', 'idempotency_key'])
      .doUpdateSet({
        request_hash: sql`excluded.request_hash`,
        state: 'in_progress',
        locked_until: sql`excluded.locked_until`,
        // A fresh key starts now; a taken-over one keeps the start of its latest unknown create.
        attempt_started_at: sql`case when idempotency_keys.expires_at <= now() then excluded.attempt_started_at
          else coalesce(idempotency_keys.attempt_started_at, excluded.attempt_started_at) end`,
        ambiguous: sql`idempotency_keys.expires_at > now()`,
        lease_generation: sql`idempotency_keys.lease_generation + 1`,
        message_sid: sql`case when idempotency_keys.expires_at <= now() then null else idempotency_keys.message_sid end`,
        response_status: null,
        response_body: null,
        created_at: sql`case when idempotency_keys.expires_at <= now() then now() else idempotency_keys.created_at end`,
        expires_at: sql`case when idempotency_keys.expires_at <= now() then excluded.expires_at else idempotency_keys.expires_at end`
      })
      .where((eb) => eb.or([
        eb('idempotency_keys.expires_at', '<=', sql<Date>`now()`),
        eb.and([
          eb('idempotency_keys.request_hash', '=', sql<string>`excluded.request_hash`),
          eb.or([
            eb('idempotency_keys.state', '=', 'unknown'),
            eb.and([eb('idempotency_keys.state', '=', 'in_progress'), eb('idempotency_keys.locked_until', '<=', sql<Date>`now()`)])
          ])
        ])
      ])))
    .returning(['ambiguous', 'attempt_started_at', 'lease_generation', 'message_sid'])
    .returning(sql<number>`case when ambiguous then greatest(0, ceil(extract(epoch from attempt_started_at + ${c.leaseMs} * interval '1 millisecond' - now())))::int else 0 end`.as('unsettled_s'))
    .executeTakeFirst()
  if (claimed !== undefined) {
    return {
      kind: 'claimed',
      ambiguous: claimed.ambiguous,
      attemptStartedAt: claimed.attempt_started_at ?? new Date(),
      unsettledS: claimed.unsettled_s,
      generation: claimed.lease_generation,
      messageSid: claimed.message_sid
    }
  }
  const row = await db.selectFrom('idempotency_keys')
    .selectAll()
    .select(sql<number>`greatest(1, ceil(extract(epoch from locked_until - now())))::int`.as('wait_s'))
    .where('api_key_name', '=', c.apiKeyName)
    .where('idempotency_key', '=', c.key)
    .executeTakeFirst()
  // Deleted in between (a send that certainly did not happen was released): claim afresh.
  if (row === undefined) return await claimIdempotencyKey(db, c)
  if (row.request_hash !== c.requestHash) return { kind: 'reused' }
  if (row.state === 'done' && row.response_status !== null) return { kind: 'replay', status: row.response_status, body: row.response_body }
  return { kind: 'in_progress', retryAfterS: row.wait_s ?? 1 }
}

/** The request's claim on its key was taken over by a newer one (`lease_generation` moved on). */
export class IdempotencyLeaseLostError extends Error {
  constructor () {
    super('the Idempotency-Key claim was taken over by a newer request')
    this.name = 'IdempotencyLeaseLostError'
  }
}

/** Who holds a key: the API key name, the key, and the fencing token of the claim. */
export interface KeyHolder { apiKeyName: string, key: string, generation: string }

/** The key's row, while the claim `h` holds it. */
const heldBy = (h: KeyHolder) => (eb: ExpressionBuilder<Database, 'idempotency_keys'>) => eb.and([
  eb('api_key_name', '=', h.apiKeyName),
  eb('idempotency_key', '=', h.key),
  eb('lease_generation', '=', h.generation)
])

/**
 * The durable "attempt started" record of a send, written right before `messages.create`: only
 * while this claim holds the key, and it renews the lease for `leaseMs` (longer than the request can
 * take) so nobody takes the key over while the request is in flight. `attempt_started_at` becomes
 * now: an earlier create was adopted or found settled and absent, so only this one can still land.
 * @throws {IdempotencyLeaseLostError} when a newer request holds the key: send nothing.
 */
export async function startSendAttempt (db: Executor, h: KeyHolder, leaseMs: number): Promise<void> {
  const result = await db.updateTable('idempotency_keys')
    .set({
      state: 'in_progress',
      locked_until: sql<Date>`now() + ${leaseMs} * interval '1 millisecond'`,
      attempt_started_at: sql<Date>`now()`
    })
    .where(heldBy(h))
    .executeTakeFirst()
  if (result.numUpdatedRows === 0n) throw new IdempotencyLeaseLostError()
}

/**
 * Stores the response to replay; `messageSid` when a message was sent.
 * @throws {IdempotencyLeaseLostError} when a newer request holds the key (the caller's transaction rolls back).
 */
export async function completeIdempotencyKey (db: Executor, h: KeyHolder, status: number, body: unknown, messageSid: string | null): Promise<void> {
  const result = await db.updateTable('idempotency_keys')
    .set({ state: 'done', locked_until: null, response_status: status, response_body: JSON.stringify(body), message_sid: messageSid })
    .where(heldBy(h))
    .executeTakeFirst()
  if (result.numUpdatedRows === 0n) throw new IdempotencyLeaseLostError()
}

/**
 * The send may have reached Twilio: a retry must look before sending. `messageSid` when Twilio's
 * answer came back but recording it failed: the retry adopts that message without a lookup.
 */
export async function markIdempotencyKeyUnknown (db: Executor, h: KeyHolder, messageSid: string | null = null): Promise<void> {
  await db.updateTable('idempotency_keys')
    .set({ state: 'unknown', locked_until: null, ...(messageSid === null ? {} : { message_sid: messageSid }) })
    .where(heldBy(h))
    .execute()
}

/**
 * Nothing was sent (Twilio's 429, a refused connection) and no earlier attempt is in doubt: the key
 * is free again. An ambiguous claim is kept `unknown` instead, so the next retry still looks first.
 */
export async function releaseIdempotencyKey (db: Executor, h: KeyHolder, ambiguous: boolean): Promise<void> {
  if (ambiguous) { await markIdempotencyKeyUnknown(db, h); return }
  await db.deleteFrom('idempotency_keys')
    .where(heldBy(h))
    .execute()
}

/** True when a message SID was already returned under some idempotency key (never adopt it twice). */
export async function isSidOfAnotherKey (db: Executor, sid: string): Promise<boolean> {
  const row = await db.selectFrom('idempotency_keys').select('message_sid').where('message_sid', '=', sid).executeTakeFirst()
  return row !== undefined
}

/** Deletes expired records. @returns how many. */
export async function deleteExpiredIdempotencyKeys (db: Executor): Promise<number> {
  const result = await db.deleteFrom('idempotency_keys').where('expires_at', '<=', sql<Date>`now()`).executeTakeFirst()
  return Number(result.numDeletedRows)
}

export type { IdempotencyRow }
