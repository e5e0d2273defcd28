/**
 * Reconciliation: no message stays "sent" forever.
 *
 * Twilio does not retry status callbacks by default and Resend gives up after a day, so some
 * messages never hear their final status. A pass asks the provider about messages that have had no
 * final status for `RECONCILE_AFTER` since their last change (or since the last time it asked),
 * oldest first, at most `RECONCILE_BATCH` of them, and records what it finds through the app's recorder
 * with `source: 'reconcile'`: precedence, the SMS fallback hook and the live stream apply exactly as
 * for a webhook. Messages older than `RECONCILE_MAX_AGE` are given up on (`reconcile_gave_up_at`).
 * A 429 stops asking that provider until the next pass. The scheduled job (`./scheduler.ts`) and
 * `npm run reconcile` both call `runReconcile`.
 *
 * A final status can still have a last word: a WhatsApp `delivered` becomes `read`, an
 * `email.delivered` becomes `email.complained` or `email.bounced`. A dropped callback would leave it
 * unsaid, so a delivered message is looked up again, at most `RECONCILE_READ_CHECKS` times, while
 * younger than `RECONCILE_READ_WINDOW` (WhatsApp) or `RECONCILE_EMAIL_WINDOW` (email), each look
 * `RECONCILE_AFTER` × 4^(looks so far) after the last (30 min, 2 h, 8 h with the defaults). Every
 * status a pass moves is counted in `tidings_reconcile_corrections_total{provider,from,to}`.
 */
import type { FastifyBaseLogger } from 'fastify'
import { sql, type Expression, type ExpressionBuilder, type Kysely, type SqlBool } from 'kysely'
import type { ReconcileConfig } from '../config/maintenance.ts'
import type { ReconcileReadConfig } from '../config/reconcile-read.ts'
import type { Database, Provider } from '../db/database.ts'
import { resendEmailToEvent } from '../domain/reconcile-event.ts'
import { twilioMessageToEvent } from '../domain/twilio-message.ts'
import { FINAL_STATUSES } from '../domain/status-precedence.ts'
import type { IncomingEvent } from '../ingest/record-events.ts'
import type { Recorder } from '../ingest/recorder.ts'
import type { Metrics } from '../metrics.ts'
import type { ResendClient } from '../providers/resend-rest.ts'
import { twilioHttpStatus, type TwilioClientFor } from '../providers/twilio-rest.ts'

export type ReconcileOutcome = 'changed' | 'unchanged' | 'not_found' | 'error' | 'rate_limited' | 'gave_up'

/** A message whose current status a pass moved. */
export interface ReconcileChange {
  sid: string
  provider: Provider
  before: string | null
  after: string | null
}

export interface ReconcileSummary {
  /** Messages the provider was asked about. */
  checked: number
  changed: ReconcileChange[]
  /** Count per outcome (`gave_up` counts messages marked given up in this pass). */
  outcomes: Record<ReconcileOutcome, number>
  /** Providers that answered 429; the rest of their messages wait for the next pass. */
  rateLimited: Provider[]
}

export interface ReconcileDeps {
  db: Kysely<Database>
  twilio: TwilioClientFor
  /** `undefined` when `RESEND_API_KEY` is not set: emails are left alone. */
  resend: ResendClient | undefined
  /** The app's recorder: a WhatsApp failure found here still gets its SMS, like any event. */
  recorder: Recorder
  metrics?: Pick<Metrics, 'reconcile' | 'reconcileCorrections'>
  log: FastifyBaseLogger
  /** Looking delivered messages up again; unset: never. */
  read?: ReconcileReadConfig
}

/** Rows given up on per statement: short transactions that never hold many row locks. */
const GIVE_UP_BATCH = 1000

const ALL_FINAL = [...FINAL_STATUSES.twilio, ...FINAL_STATUSES.resend]

/** No final status yet (the predicate of the `messages_reconcile_due_idx` partial index). */
function notFinal (eb: ExpressionBuilder<Database, 'messages'>): Expression<SqlBool> {
  return eb.and([
    eb('reconcile_gave_up_at', 'is', null),
    eb.or([eb('status', 'is', null), eb('status', 'not in', ALL_FINAL)])
  ])
}

/**
 * A delivered message still worth a look: WhatsApp `delivered` (may become `read`) or
 * `email.delivered` (may bounce or be complained about), within its window, with looks left, and
 * the last look (or change) at least `afterMs` × 4^(looks so far) ago.
 */
function recheckDue (eb: ExpressionBuilder<Database, 'messages'>, read: ReconcileReadConfig, now: number, afterMs: number): Expression<SqlBool> {
  const spaced = eb(sql<Date>`coalesce(reconciled_at, updated_at)`, '<=', sql<Date>`${new Date(now)}::timestamptz - (${afterMs}::float8 * power(4, reconcile_read_checks)) * interval '1 millisecond'`)
  const kinds: Array<Expression<SqlBool>> = []
  if (read.readWindowMs > 0) kinds.push(eb.and([eb('channel', '=', 'whatsapp'), eb('status', '=', 'delivered'), eb('delivered_at', '>=', new Date(now - read.readWindowMs))]))
  if (read.emailWindowMs > 0) kinds.push(eb.and([eb('provider', '=', 'resend'), eb('status', '=', 'email.delivered'), eb('delivered_at', '>=', new Date(now - read.emailWindowMs))]))
  if (read.checks === 0 || kinds.length === 0) return eb.lit(false)
  return eb.and([
    eb('reconcile_gave_up_at', 'is', null),
    eb('reconcile_read_checks', '<', read.checks),
    eb.or(kinds),
    spaced
  ])
}

/** Marks messages older than the maximum age as given up on, in small batches; counts per provider. */
async function giveUpStale (db: Kysely<Database>, createdBefore: Date): Promise<Record<Provider, number>> {
  const counts: Record<Provider, number> = { twilio: 0, resend: 0 }
  for (;;) {
    const rows = await db.updateTable('messages')
      .set({ reconcile_gave_up_at: sql`now()` })
      .where('sid', 'in', (eb) => eb.selectFrom('messages')
        .select('sid')
        .where(notFinal)
        .where('created_at', '<', createdBefore)
        .limit(GIVE_UP_BATCH)
        .forUpdate()
        .skipLocked())
      .returning('provider')
      .execute()
    for (const r of rows) counts[r.provider]++
    if (rows.length < GIVE_UP_BATCH) return counts
  }
}

type Lookup =
  | { kind: 'found', event: IncomingEvent | undefined }
  | { kind: 'not_found' | 'error', message?: string }
  | { kind: 'rate_limited', retryAfterS: number | null }

async function lookUpTwilio (deps: ReconcileDeps, sid: string, accountSid: string | null): Promise<Lookup> {
  try {
    const m = await deps.twilio(accountSid).messages(sid).fetch()
    return { kind: 'found', event: twilioMessageToEvent(m, 'reconcile') }
  } catch (err) {
    const status = twilioHttpStatus(err)
    if (status === 404) return { kind: 'not_found' }
    if (status === 429) return { kind: 'rate_limited', retryAfterS: null }
    return { kind: 'error', message: err instanceof Error ? err.message : String(err) }
  }
}

async function lookUpResend (client: ResendClient, id: string): Promise<Lookup> {
  const result = await client.getEmail(id)
  if (result.kind === 'found') return { kind: 'found', event: resendEmailToEvent(result.email, new Date()) }
  return result
}

/**
 * Runs one pass.
 * @throws the database's error (recording, selecting): the pass stops and the job fails; the next
 *   pass starts over. Provider failures never throw: they are outcomes.
 */
export async function runReconcile (deps: ReconcileDeps, opts: Pick<ReconcileConfig, 'afterMs' | 'batch' | 'maxAgeMs'>): Promise<ReconcileSummary> {
  const { db, log } = deps
  const now = Date.now()
  const summary: ReconcileSummary = {
    checked: 0,
    changed: [],
    outcomes: { changed: 0, unchanged: 0, not_found: 0, error: 0, rate_limited: 0, gave_up: 0 },
    rateLimited: []
  }
  const count = (provider: Provider, outcome: ReconcileOutcome, n = 1): void => {
    summary.outcomes[outcome] += n
    if (n > 0) deps.metrics?.reconcile.inc({ provider, outcome }, n)
  }

  const gaveUp = await giveUpStale(db, new Date(now - opts.maxAgeMs))
  for (const provider of ['twilio', 'resend'] as const) count(provider, 'gave_up', gaveUp[provider])
  if (gaveUp.twilio + gaveUp.resend > 0) log.warn({ gaveUp }, 'reconciliation gave up on messages older than RECONCILE_MAX_AGE')

  const read = deps.read
  const due = await db.selectFrom('messages')
    .select(['sid', 'provider', 'account_sid', 'status'])
    .where((eb) => eb.or([
      eb.and([
        notFinal(eb),
        eb('created_at', '>=', new Date(now - opts.maxAgeMs)),
        eb(sql<Date>`coalesce(reconciled_at, updated_at)`, '<=', new Date(now - opts.afterMs))
      ]),
      ...(read === undefined ? [] : [recheckDue(eb, read, now, opts.afterMs)])
    ]))
    .$if(deps.resend === undefined, (qb) => qb.where('provider', '=', 'twilio'))
    .orderBy(sql`coalesce(reconciled_at, updated_at)`)
    .orderBy('sid')
    .limit(opts.batch)
    .execute()

  const stopped = new Set<Provider>()
  for (const message of due) {
    if (stopped.has(message.provider)) continue
    const lookup = message.provider === 'twilio'
      ? await lookUpTwilio(deps, message.sid, message.account_sid)
      : await lookUpResend(deps.resend as ResendClient, message.sid)
    if (lookup.kind === 'rate_limited') {
      // Asking again now only digs the hole deeper; the next pass starts where this one stopped.
      stopped.add(message.provider)
      summary.rateLimited.push(message.provider)
      count(message.provider, 'rate_limited')
      log.warn({ provider: message.provider, retryAfterS: lookup.retryAfterS }, 'reconciliation rate limited (429): stopping for this pass')
      continue
    }
    summary.checked++
    let outcome: ReconcileOutcome = lookup.kind === 'found' ? 'unchanged' : lookup.kind
    if (lookup.kind === 'found' && lookup.event !== undefined) {
      const [recorded] = await deps.recorder.record([lookup.event])
      if (recorded.statusChanged) {
        outcome = 'changed'
        summary.changed.push({ sid: message.sid, provider: message.provider, before: message.status, after: recorded.currentStatus })
        deps.metrics?.reconcileCorrections.inc({ provider: message.provider, from: message.status ?? 'none', to: recorded.currentStatus ?? 'none' })
        log.info({ sid: message.sid, before: message.status, after: recorded.currentStatus }, 'reconciliation found a new status')
      }
    } else if (lookup.kind === 'error') {
      log.warn({ sid: message.sid, provider: message.provider, error: lookup.message }, 'reconciliation could not look up a message')
    }
    count(message.provider, outcome)
    await db.updateTable('messages')
      .set({
        reconciled_at: sql`now()`,
        reconcile_attempts: sql`reconcile_attempts + 1`,
        // A look at a delivered message spends one of its bounded re-checks.
        ...(message.status === 'delivered' || message.status === 'email.delivered' ? { reconcile_read_checks: sql`reconcile_read_checks + 1` } : {})
      })
      .where('sid', '=', message.sid)
      .execute()
  }
  if (due.length > 0 || gaveUp.twilio + gaveUp.resend > 0) {
    log.info({ due: due.length, outcomes: summary.outcomes }, 'reconciliation pass done')
  }
  return summary
}
