/**
 * One attempt at sending a fallback SMS; pg-boss calls `runFallbackAttempt` for each job and
 * retries it (exponential backoff, `FALLBACK_MAX_ATTEMPTS`) when it throws.
 *
 * Exactly once, even across crashes: the attempt first claims the `fallbacks` row (a lease, so two
 * workers never send the same fallback at once) and marks when it started. If an earlier attempt
 * may have reached Twilio without Tidings recording the result (worker killed, timeout, dropped
 * connection, 5xx), there is no idempotency key on message creation to lean on
 * (https://www.twilio.com/docs/messaging/api/message-resource), so the attempt first lists the
 * messages to that number from that sender since then (`client.messages.list`) and adopts a
 * match instead of sending again. The "attempt started" record is written (`startAttempt`) right
 * before every create, fenced by the claim's generation; only errors of the Twilio HTTP calls are
 * classified as Twilio's answer, and any failure after the create returned is "maybe sent".
 * Timing (docs/fallback.md, rules 3 and 5): an empty lookup is trusted only once the latest create
 * is a lease old, and a create starts only within the first half of its renewed lease.
 */
import { TwilioCallError, viaTwilio } from '../providers/twilio-call.ts'
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import type { Database, FallbackRow } from '../db/database.ts'
import { maskAddress } from '../domain/channel.ts'
import type { SmsSender } from '../domain/fallback-policy.ts'
import type { Recorder } from '../ingest/recorder.ts'
import { classifyTwilioError, type TwilioClient, type TwilioClientFor, type TwilioFailure } from '../providers/twilio-rest.ts'
import { claimFallback, finishFallback, isKnownFallbackSid, LeaseLostError, linkSentFallback, releaseForRetry, startAttempt } from './repository.ts'
import { twilioMessageToEvent, type TwilioMessageResource } from '../domain/twilio-message.ts'
import { findEarlierSend, startWithinLease } from '../providers/twilio-lookup.ts'

export interface FallbackWorkerDeps {
  db: Kysely<Database>
  /** The app's recorder: the SMS's initial status goes through every hook like any event. */
  recorder: Recorder
  twilio: TwilioClientFor
  /** `PUBLIC_BASE_URL` + `/webhooks/twilio/status`, so the SMS's own callbacks come back. */
  statusCallbackUrl: string
  /** How long one attempt may hold a fallback; longer than its Twilio requests can take. */
  leaseMs: number
  log: FastifyBaseLogger
}

/**
 * The lookup found nothing, but the earlier attempt's create may still reach Twilio (it began less
 * than a lease ago): Twilio can accept a request after the client gave up on it. Sending now could
 * send a second SMS; the attempt is released, still ambiguous, and looks again later.
 */
class EarlierAttemptUnsettled extends Error {}

/**
 * This attempt stalled (a paused process, a blocked event loop) between asking for "attempt
 * started" and its create for more than `CREATE_START_SHARE_OF_LEASE` of the lease; its lease may
 * have run out and another attempt may have sent. It sends nothing.
 */
class AttemptStalled extends Error {}

/** A failed attempt that the queue should retry. */
export class FallbackRetryError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'FallbackRetryError'
  }
}

/** The parts of a twilio-node `MessageInstance` Tidings reads. */
interface TwilioMessage extends TwilioMessageResource {
  body: string | null
  dateCreated: Date | null
  dateSent: Date | null
}

function senderOf (f: FallbackRow): SmsSender {
  if (f.sms_from !== null) return { from: f.sms_from }
  if (f.messaging_service_sid !== null) return { messagingServiceSid: f.messaging_service_sid }
  throw new Error(`fallback ${f.id} has no sender`)
}

/** The original's text from Twilio, or `null` when Twilio has none (or no such message). */
async function fetchBody (client: TwilioClient, sid: string): Promise<string | null> {
  try {
    const m = await client.messages(sid).fetch()
    return m.body ?? null
  } catch (err) {
    const failure = classifyTwilioError(err)
    if (failure?.kind === 'rejected' && (failure.code === '20404' || failure.code === 'http_404')) return null
    throw err
  }
}

async function recordSent (deps: FallbackWorkerDeps, f: FallbackRow, generation: string, m: TwilioMessage, text: string, source: 'api' | 'reconcile'): Promise<void> {
  // The SMS row first (its initial status), then the links; a crash in between is healed by the
  // next attempt, which finds this SMS at Twilio and adopts it.
  await deps.recorder.record([twilioMessageToEvent(m, source)])
  await linkSentFallback(deps.db, f, m.sid, text, generation)
}

/**
 * Runs one attempt for fallback `fallbackId`.
 * Resolves when the fallback is done (sent, failed for good, skipped, or already finished), or when
 * a newer attempt took its lease over (that one finishes it).
 * @throws {FallbackRetryError} after a retryable failure (429, 5xx, timeout, network, a database
 *   fault), or when another worker holds the fallback; the queue retries with backoff.
 */
export async function runFallbackAttempt (deps: FallbackWorkerDeps, fallbackId: string): Promise<void> {
  const claim = await claimFallback(deps.db, fallbackId, deps.leaseMs)
  if (claim.kind === 'final') return
  if (claim.kind === 'busy') throw new FallbackRetryError(`fallback ${fallbackId} is being sent by another worker`)
  const { fallback, original, ambiguous, earlierUnsettled, generation, optedOut } = claim
  const log = deps.log.child({ fallbackId, originalSid: original.sid, attempt: fallback.attempts })
  // Where the attempt is: before the create request nothing can have been sent; while it runs,
  // Twilio's answer says; after it returned, the SMS exists whatever fails next.
  let phase: 'before' | 'creating' | 'sent' = 'before'
  try {
    const to = fallback.to_address
    if (to === null) { await finishFallback(deps.db, fallback.id, 'skipped', 'no_recipient', undefined, generation); return }
    const sender = senderOf(fallback)
    const client = deps.twilio(original.account_sid)

    const text = original.body ?? await viaTwilio(async () => await fetchBody(client, original.sid))
    if (text === null || text === '') {
      await finishFallback(deps.db, fallback.id, 'skipped', 'no_body', undefined, generation)
      log.info('fallback skipped: no text for the message')
      return
    }

    if (ambiguous) {
      // An SMS this fallback already sent in an attempt whose outcome Tidings did not record.
      const found = await viaTwilio(async () => await findEarlierSend(client, {
        to,
        sender,
        body: text,
        startedAt: fallback.attempt_started_at ?? new Date(),
        isTaken: async (sid) => await isKnownFallbackSid(deps.db, sid)
      }))
      if (found !== undefined) {
        phase = 'sent'
        await recordSent(deps, fallback, generation, found, text, 'reconcile')
        log.info({ smsSid: found.sid }, 'fallback SMS found at Twilio from an earlier attempt; adopted')
        return
      }
      if (earlierUnsettled) throw new EarlierAttemptUnsettled(`the attempt begun at ${fallback.attempt_started_at?.toISOString() ?? '?'} may still reach Twilio; looking again later`)
    }
    if (optedOut) {
      // Nothing left: the caller's opt-out wins.
      await finishFallback(deps.db, fallback.id, 'skipped', 'opted_out_by_caller', undefined, generation)
      log.info('fallback skipped: the caller turned it off')
      return
    }

    const { value: started, stalledMs } = await startWithinLease(deps.leaseMs, async () => await startAttempt(deps.db, fallback.id, generation, deps.leaseMs))
    if (started === 'fenced') { log.info('fallback attempt taken over by a newer one; not sending'); return }
    if (started === 'opted_out') { log.info('fallback skipped: the caller turned it off'); return }
    if (stalledMs !== null) {
      throw new AttemptStalled(`${stalledMs} ms passed between recording the attempt and sending (more than half the ${deps.leaseMs} ms lease); another attempt may have taken over, so this one sent nothing`)
    }
    phase = 'creating'
    const created = await viaTwilio(async () => await client.messages.create({
      to,
      body: text,
      statusCallback: deps.statusCallbackUrl,
      ...sender
    }))
    phase = 'sent'
    await recordSent(deps, fallback, generation, created, text, 'api')
    log.info({ smsSid: created.sid, to: maskAddress(to) }, 'fallback SMS sent')
  } catch (err) {
    if (err instanceof LeaseLostError) {
      log.warn('fallback lease taken over by a newer attempt; it finishes the fallback')
      return
    }
    // Only an error of a Twilio HTTP call is Twilio's answer; anything else (the database above
    // all) says nothing about whether the SMS left.
    const failure: TwilioFailure | undefined = err instanceof TwilioCallError ? classifyTwilioError(err.cause) : undefined
    if (failure?.kind === 'rejected' && phase !== 'sent') {
      await finishFallback(deps.db, fallback.id, 'failed', 'twilio_error', failure, generation).catch(() => {})
      log.warn({ code: failure.code }, 'fallback SMS refused by Twilio; not retried')
      return
    }
    // Waiting for an earlier attempt to settle keeps that attempt's error as the fallback's last one.
    const error = err instanceof EarlierAttemptUnsettled
      ? { code: fallback.error_code ?? 'earlier_attempt_unsettled', message: fallback.error_message ?? err.message }
      : err instanceof AttemptStalled
        ? { code: 'attempt_stalled', message: err.message }
        : failure ?? { code: 'internal_error', message: err instanceof Error ? err.message : String(err) }
    // Maybe sent: the create request went out and got no clear "not created", or it returned and
    // recording failed. Then `attempt_started_at` stays, and the next attempt looks first.
    const outcomeUnknown = phase === 'sent' || (phase === 'creating' && (failure === undefined || failure.kind !== 'retryable' || failure.maybeAccepted))
    try {
      await releaseForRetry(deps.db, fallback.id, generation, error, { outcomeUnknown, previouslyAmbiguous: ambiguous })
    } catch (releaseErr) {
      // The database is still away: the lease runs out, and `attempt_started_at` (written before
      // the request) makes the next attempt look before sending.
      log.warn({ err: releaseErr }, 'could not release the fallback; its lease will run out')
    }
    log.warn({ code: error.code, phase, err: failure === undefined ? err : undefined }, 'fallback attempt failed; will retry')
    throw new FallbackRetryError(`fallback ${fallbackId}: ${error.code} ${error.message}`, { cause: err })
  }
}

/**
 * Called for a job pg-boss dead-lettered (attempts exhausted, or it expired on its last attempt):
 * the fallback ends `failed` with reason `retries_exhausted`, keeping its last error.
 */
export async function markRetriesExhausted (db: Kysely<Database>, fallbackId: string): Promise<void> {
  await finishFallback(db, fallbackId, 'failed', 'retries_exhausted')
}
