/**
 * `POST /v1/messages`: send an SMS or WhatsApp message through Twilio's REST API
 * (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource).
 *
 * Tidings sets `StatusCallback` to its own webhook and records the status of Twilio's create
 * response as the first event (`source: 'api'`): Twilio sends no callback for the initial status.
 * The message's own fields (text, `external_id`, `metadata`, `fallback`) and the idempotency record
 * are written in the same transaction as that event.
 *
 * How Twilio's answers come back (openapi.yaml, "Sending"):
 * - 4xx (e.g. 21211 invalid number, 21610 unsubscribed): `422 twilio_error` with `twilio_code`;
 *   nothing was sent, and retrying the same request cannot help;
 * - 429: `503 twilio_rate_limited` with `Retry-After`; nothing was sent, retry later;
 * - 5xx, a timeout, a dropped connection, or Twilio refusing Tidings' own credentials (401/403):
 *   `502 twilio_unavailable` with `Retry-After`. After a 5xx, timeout or dropped connection the
 *   message may have been sent: retry with the same `Idempotency-Key` and Tidings looks for it at
 *   Twilio before sending again.
 */
import { TwilioCallError, viaTwilio } from '../providers/twilio-call.ts'
import { createHash } from 'node:crypto'
import type { Kysely, Transaction } from 'kysely'
import type { Database, MessageRow } from '../db/database.ts'
import {
  claimIdempotencyKey, completeIdempotencyKey, IdempotencyLeaseLostError, isSidOfAnotherKey, markIdempotencyKeyUnknown,
  releaseIdempotencyKey, startSendAttempt, type KeyHolder
} from '../db/idempotency.ts'
import { cancelPendingFallback } from '../fallback/repository.ts'
import { AppError } from '../errors.ts'
import type { Recorder } from '../ingest/recorder.ts'
import { classifyTwilioError, isTwilioRestException, type TwilioClientFor } from '../providers/twilio-rest.ts'
import { twilioMessageToEvent, type TwilioMessageResource } from '../domain/twilio-message.ts'
import { findEarlierSend, startWithinLease } from '../providers/twilio-lookup.ts'
import { checkStorable } from './check-storable.ts'

/** The request body of `POST /v1/messages`, after schema validation. */
export interface SendRequest {
  to: string
  from?: string
  messaging_service_sid?: string
  body?: string
  content_sid?: string
  content_variables?: Record<string, string>
  external_id?: string
  metadata?: Record<string, unknown>
  fallback?: boolean
}

/** Seconds a caller is asked to wait after Twilio's 429 or an unreachable Twilio. */
export const TWILIO_RETRY_AFTER_S = 5

export interface SendDeps {
  db: Kysely<Database>
  twilio: TwilioClientFor
  /** `PUBLIC_BASE_URL` + `/webhooks/twilio/status`. */
  statusCallbackUrl: string
  /** The app's recorder (its hooks, e.g. the SMS fallback, run in the recording transaction). */
  recorder: Recorder
  /** Idempotency record lifetime and claim lease, in ms. */
  idempotencyTtlMs: number
  idempotencyLeaseMs: number
  /** Builds the response body of a message (the same shape as `GET /v1/messages/:sid`). */
  present: (db: Kysely<Database>, row: MessageRow) => Promise<unknown>
}

export interface SendResult {
  status: number
  body: unknown
  /** True when this is the stored answer to an earlier request with the same key. */
  replayed: boolean
}

/** The parts of a twilio-node `MessageInstance` Tidings reads. */
interface TwilioMessage extends TwilioMessageResource {
  body: string | null
  dateCreated: Date | null
}

const isWhatsApp = (address: string): boolean => /^whatsapp:/i.test(address)

/**
 * The rules a JSON schema cannot say well: exactly one sender, exactly one kind of content, and
 * text PostgreSQL can store (`checkStorable`). @throws {AppError} `invalid_payload` naming the field.
 */
export function checkSendRequest (r: SendRequest): void {
  const invalid = (message: string): AppError => new AppError('invalid_payload', message)
  if ((r.from === undefined) === (r.messaging_service_sid === undefined)) {
    throw invalid('body.from or body.messaging_service_sid is required, not both')
  }
  if ((r.body === undefined) === (r.content_sid === undefined)) {
    throw invalid('body.body or body.content_sid is required, not both')
  }
  if (r.content_variables !== undefined && r.content_sid === undefined) {
    throw invalid('body.content_variables needs body.content_sid')
  }
  if (r.from !== undefined && isWhatsApp(r.from) !== isWhatsApp(r.to)) {
    throw invalid('body.from must be on the same channel as body.to (both whatsapp:+E.164, or both E.164)')
  }
  checkStorable({ ...r })
}

/** JSON with object keys sorted at every level, so equal bodies hash equal whatever their key order. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** How a failed create call is answered, and whether the message may exist at Twilio. */
function failureOf (err: unknown): { error: AppError, maybeSent: boolean, final: boolean } {
  if (isTwilioRestException(err)) {
    const twilioCode = err.code !== undefined ? String(err.code) : `http_${err.status}`
    const fields = { twilio_code: twilioCode }
    if (err.status === 429) {
      return {
        error: new AppError('twilio_rate_limited', `Twilio is rate limiting this account (${twilioCode}); nothing was sent. Retry later.`, { cause: err, retryAfterS: TWILIO_RETRY_AFTER_S, fields }),
        maybeSent: false,
        final: false
      }
    }
    if (err.status >= 500) {
      return {
        error: new AppError('twilio_unavailable', `Twilio answered HTTP ${err.status}; the message may or may not have been sent. Retry with the same Idempotency-Key.`, { cause: err, retryAfterS: TWILIO_RETRY_AFTER_S, fields }),
        maybeSent: true,
        final: false
      }
    }
    if (err.status === 401 || err.status === 403) {
      // Tidings' own credentials were refused: not the caller's fault, nothing was sent.
      return {
        error: new AppError('twilio_unavailable', `Twilio refused Tidings' credentials (${twilioCode}); nothing was sent`, { cause: err, retryAfterS: TWILIO_RETRY_AFTER_S, fields }),
        maybeSent: false,
        final: false
      }
    }
    return {
      error: new AppError('twilio_error', `Twilio refused the message: ${err.message} (${twilioCode})`, { cause: err, fields }),
      maybeSent: false,
      final: true
    }
  }
  const failure = classifyTwilioError(err)
  if (failure?.kind === 'retryable') {
    return {
      error: new AppError('twilio_unavailable', failure.maybeAccepted
        ? `Twilio did not answer (${failure.code}); the message may or may not have been sent. Retry with the same Idempotency-Key.`
        : `Twilio could not be reached (${failure.code}); nothing was sent`, { cause: err, retryAfterS: TWILIO_RETRY_AFTER_S }),
      maybeSent: failure.maybeAccepted,
      final: false
    }
  }
  throw err
}

const inProgress = (cause?: unknown): AppError =>
  new AppError('idempotency_in_progress', 'A newer request with this Idempotency-Key took it over; retry after Retry-After seconds to get its result', { cause, retryAfterS: 1 })

/** PostgreSQL refused the data itself (SQLSTATE class 22 "data exception", 54 "program limit exceeded"). */
function isDataError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^(22|54)[0-9A-Z]{3}$/.test(code)
}

/**
 * Sends one message (or answers for an earlier request with the same `Idempotency-Key`).
 *
 * With a key, a durable "attempt started" record (`startSendAttempt`, fenced by the claim's
 * generation) precedes the create; only errors of Twilio HTTP calls are read as Twilio's answer; a
 * failure after Twilio accepted the message is "maybe sent" (the key is left `unknown` with the SID
 * when the database lets it), and a retry adopts that message instead of sending again.
 * @param apiKeyName - the authenticated key's name: idempotency keys are per API key.
 * @throws {AppError} `invalid_payload`, `idempotency_key_reused`, `idempotency_in_progress`,
 *   `twilio_error`, `twilio_rate_limited`, `twilio_unavailable`, `send_not_recorded` (Twilio
 *   accepted the message, Tidings could not record it: `message_sid` says which); or a database
 *   error before anything was sent (503).
 */
export async function sendMessage (deps: SendDeps, r: SendRequest, apiKeyName: string, idempotencyKey: string | undefined): Promise<SendResult> {
  checkSendRequest(r)
  let ambiguous = false
  let attemptStartedAt = new Date()
  let unsettledS = 0
  let holder: KeyHolder | undefined
  let knownSid: string | null = null
  if (idempotencyKey !== undefined) {
    const claim = await claimIdempotencyKey(deps.db, {
      apiKeyName,
      key: idempotencyKey,
      requestHash: createHash('sha256').update(canonicalJson(r)).digest('hex'),
      leaseMs: deps.idempotencyLeaseMs,
      ttlMs: deps.idempotencyTtlMs
    })
    if (claim.kind === 'replay') return { status: claim.status, body: claim.body, replayed: true }
    if (claim.kind === 'reused') {
      throw new AppError('idempotency_key_reused', 'This Idempotency-Key was used with a different request body; use a new key for a new message')
    }
    if (claim.kind === 'in_progress') {
      throw new AppError('idempotency_in_progress', 'A request with this Idempotency-Key is being processed; retry after Retry-After seconds to get its result', { retryAfterS: claim.retryAfterS })
    }
    ambiguous = claim.ambiguous
    attemptStartedAt = claim.attemptStartedAt
    unsettledS = claim.unsettledS
    holder = { apiKeyName, key: idempotencyKey, generation: claim.generation }
    knownSid = claim.ambiguous ? claim.messageSid : null
  }

  const client = deps.twilio(null)
  let created: TwilioMessage | undefined
  let source: 'api' | 'reconcile' = 'api'
  let creating = false
  try {
    if (knownSid !== null) {
      // An earlier attempt under this key got Twilio's answer but could not record it.
      const sid = knownSid
      created = await viaTwilio(async () => await client.messages(sid).fetch())
      source = 'reconcile'
    } else if (ambiguous) {
      // A message an earlier, uncertain attempt under the same key may have created at Twilio.
      created = await viaTwilio(async () => await findEarlierSend(client, {
        to: r.to,
        sender: r.from !== undefined ? { from: r.from } : { messagingServiceSid: r.messaging_service_sid as string },
        body: r.body,
        startedAt: attemptStartedAt,
        isTaken: async (sid) => await isSidOfAnotherKey(deps.db, sid)
      }))
      if (created !== undefined) source = 'reconcile'
      else if (unsettledS > 0) {
        // Twilio can accept a request after the client gave up on it: nothing found proves
        // nothing until the earlier create is a lease old (docs/fallback.md, rule 5).
        throw new AppError('idempotency_in_progress', 'An earlier request with this Idempotency-Key may still be accepted by Twilio (its outcome is unknown); nothing was sent. Retry after Retry-After seconds: the retry returns that message if Twilio has it, and sends only once it cannot arrive any more', { retryAfterS: unsettledS })
      }
    }
    if (created === undefined) {
      if (holder !== undefined) {
        const h = holder
        const { stalledMs } = await startWithinLease(deps.idempotencyLeaseMs, async () => { await startSendAttempt(deps.db, h, deps.idempotencyLeaseMs) })
        if (stalledMs !== null) {
          // Stalled (a paused process, a blocked event loop) long enough for the lease to run out:
          // another request with the key may have taken it over and sent.
          throw new AppError('overloaded', `Tidings stalled for ${stalledMs} ms before calling Twilio; nothing was sent. Retry with the same Idempotency-Key`, { retryAfterS: 1 })
        }
      }
      creating = true
      created = await viaTwilio(async () => await client.messages.create({
        to: r.to,
        ...(r.from !== undefined ? { from: r.from } : { messagingServiceSid: r.messaging_service_sid }),
        ...(r.body !== undefined ? { body: r.body } : { contentSid: r.content_sid }),
        ...(r.content_variables !== undefined ? { contentVariables: JSON.stringify(r.content_variables) } : {}),
        statusCallback: deps.statusCallbackUrl
      }))
    }
  } catch (err) {
    if (err instanceof IdempotencyLeaseLostError) throw inProgress(err)
    if (!(err instanceof TwilioCallError)) {
      // The database, before anything was sent: the key is given back (or kept `unknown`).
      if (holder !== undefined) await releaseIdempotencyKey(deps.db, holder, ambiguous).catch(() => {})
      throw err
    }
    const { error, maybeSent, final } = failureOf(err.cause)
    if (holder !== undefined) {
      const h = holder
      // Only the create's own refusal is the answer to this request; a failed lookup is retried.
      const settle = final && creating
        ? completeIdempotencyKey(deps.db, h, error.statusCode, { ...error.fields, code: error.code, message: error.message }, null)
        : (maybeSent && creating) || ambiguous ? markIdempotencyKeyUnknown(deps.db, h) : releaseIdempotencyKey(deps.db, h, false)
      await settle.catch(() => {})
    }
    throw error
  }

  const sent = created
  const flag = r.fallback ?? true
  // Writes what only the caller knows, then the response and the idempotency record, in the
  // transaction that records the initial status (or, if a callback already recorded that status,
  // in one of its own). Lock order (docs/fallback.md): the message row (locked by recording), the
  // fallback's recipient lock and row, the idempotency key last.
  const storeFields = async (trx: Transaction<Database>): Promise<MessageRow | undefined> => {
    const row = await trx.updateTable('messages')
      .set({
        body: r.body ?? null,
        external_id: r.external_id ?? null,
        metadata: r.metadata === undefined ? null : JSON.stringify(r.metadata),
        fallback: flag
      })
      .where('sid', '=', sent.sid)
      .returningAll()
      .executeTakeFirst()
    // A failure callback may have committed first and decided with the default flag.
    if (!flag) await cancelPendingFallback(trx, sent.sid)
    return row
  }
  const answer = async (trx: Transaction<Database>): Promise<{ body: unknown }> => {
    const row = await trx.selectFrom('messages').selectAll().where('sid', '=', sent.sid).executeTakeFirstOrThrow()
    const body = await deps.present(trx, row)
    if (holder !== undefined) await completeIdempotencyKey(trx, holder, 201, body, sent.sid)
    return { body }
  }
  let result: { body: unknown } | undefined
  try {
    await deps.recorder.record([twilioMessageToEvent(sent, source)], {
      prepare: async (trx, recorded) => {
        const row = await storeFields(trx)
        // The hooks (the fallback, outbound webhooks) see the caller's flag, text, external_id and
        // metadata, not the defaults the row had when recording locked it.
        return recorded.map((one) => ({ ...one, message: row ?? one.message }))
      },
      finish: async (trx) => { result = await answer(trx) }
    })
    result ??= await deps.db.transaction().execute(async (trx) => { await storeFields(trx); return await answer(trx) })
  } catch (err) {
    if (err instanceof IdempotencyLeaseLostError) throw inProgress(err)
    // Twilio accepted the message: it is never sent again for this request. A retry with the same
    // key adopts it by its SID; without a key, the caller learns the SID here.
    if (holder !== undefined) await markIdempotencyKeyUnknown(deps.db, holder, sent.sid).catch(() => {})
    const data = isDataError(err)
    throw new AppError('send_not_recorded', `Twilio accepted the message ${sent.sid}, but Tidings could not record it (${data ? 'the database refused its data' : 'the database is unavailable'}). Do not send it again: retry with the same Idempotency-Key to record it, or register it with PUT /v1/messages/${sent.sid}.`, {
      cause: err,
      statusCode: data ? 500 : 503,
      ...(data ? {} : { retryAfterS: TWILIO_RETRY_AFTER_S }),
      fields: { message_sid: sent.sid }
    })
  }
  return { status: 201, body: result.body, replayed: false }
}
