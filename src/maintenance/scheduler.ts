/**
 * The scheduled maintenance jobs: reconciliation and retention, each a pg-boss schedule with one
 * queue and one worker per process. pg-boss runs each occurrence once across every replica on the
 * database (one process wins the schedule check, occurrences are singletons per minute), and the
 * queues are `stately`, so a slow pass is never joined by a second one. Schedules are upserted at
 * every start, so the last configuration started wins; an interval of 0 removes the schedule.
 *
 * Intervals are RFC 5545 rules (`FREQ=SECONDLY;INTERVAL=300`) rather than cron: cron cannot say
 * "every 90 s" and pg-boss anchors rules on the epoch, so every replica agrees on the phase.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import type { PgBoss } from 'pg-boss'
import type { Config } from '../config/config.ts'
import type { Database } from '../db/database.ts'
import { finishedJobRetentionSeconds } from '../fallback/queue.ts'
import type { Recorder } from '../ingest/recorder.ts'
import type { Metrics } from '../metrics.ts'
import { createResendClient, type ResendClient } from '../providers/resend-rest.ts'
import { twilioClientsOf } from '../providers/twilio-rest.ts'
import { runReconcile, type ReconcileDeps } from './reconcile.ts'
import { runRetention } from './retention.ts'

export const RECONCILE_QUEUE = 'tidings-reconcile'
export const RETENTION_QUEUE = 'tidings-retention'

/** pg-boss's ceiling for `expireInSeconds` (`expiration cannot exceed 24 hours`). */
export const MAX_JOB_EXPIRY_S = 24 * 3600

/** A pg-boss recurrence rule for "every `ms`". */
export function everyRule (ms: number): string {
  return `FREQ=SECONDLY;INTERVAL=${Math.round(ms / 1000)}`
}

/** The Resend client reconciliation uses, or `undefined` without `RESEND_API_KEY`. */
export function resendClientOf (config: Config): ResendClient | undefined {
  const { resendApiKey, resendApiBaseUrl } = config.reconcile
  return resendApiKey === undefined ? undefined : createResendClient({ apiKey: resendApiKey, baseUrl: resendApiBaseUrl, timeoutMs: config.twilioRequestTimeoutMs })
}

/** What a reconciliation pass needs, built from configuration. */
export function reconcileDepsOf (config: Config, db: Kysely<Database>, recorder: Recorder, log: FastifyBaseLogger, metrics?: Metrics): ReconcileDeps {
  return {
    db,
    twilio: twilioClientsOf(config),
    resend: resendClientOf(config),
    recorder,
    metrics,
    log,
    read: config.reconcileRead
  }
}

export interface ScheduledJobsDeps {
  config: Config
  db: Kysely<Database>
  /** The process's job queue, already started. */
  boss: PgBoss
  /** The app's recorder, with every hook. */
  recorder: Recorder
  metrics: Metrics
  log: FastifyBaseLogger
}

/** Creates the queues, schedules and workers. Stopping the job queue stops the workers. */
export async function startScheduledJobs (deps: ScheduledJobsDeps): Promise<void> {
  const { config, boss } = deps
  const log = deps.log.child({ component: 'maintenance' })
  if (config.reconcile.resendApiBaseUrlOverridden) {
    log.warn({ resendApiBaseUrl: config.reconcile.resendApiBaseUrl }, 'RESEND_API_BASE_URL is set: Resend API requests go there instead of api.resend.com (tests and demos only)')
  }
  const schedule = async (queue: string, everyMs: number, expireInSeconds: number, work: (signal: AbortSignal) => Promise<void>): Promise<void> => {
    const options = { retryLimit: 0, expireInSeconds, deleteAfterSeconds: finishedJobRetentionSeconds(config) }
    await boss.createQueue(queue, { ...options, policy: 'stately' })
    await boss.updateQueue(queue, options)
    if (everyMs === 0) {
      await boss.unschedule(queue)
      return
    }
    // `once`: after the whole deployment was down, one catch-up run rather than none.
    await boss.schedule(queue, everyRule(everyMs), null, { tz: 'UTC', missed: 'once' })
    await boss.work(queue, { pollingIntervalSeconds: Math.min(5, config.scheduleCheckIntervalS) }, async ([job]) => { await work(job.signal) })
  }

  const reconcileDeps = reconcileDepsOf(config, deps.db, deps.recorder, log, deps.metrics)
  // A pass may wait for every request in the batch to time out; pg-boss refuses an expiry over
  // 24 h (RECONCILE_BATCH=10000 with a 10 s timeout asked for 27.8 h and failed start-up).
  const reconcileExpiry = Math.min(MAX_JOB_EXPIRY_S, Math.ceil(config.reconcile.batch * config.twilioRequestTimeoutMs / 1000) + 60)
  await schedule(RECONCILE_QUEUE, config.reconcile.intervalMs, reconcileExpiry, async () => {
    await runReconcile(reconcileDeps, config.reconcile)
  })
  await schedule(RETENTION_QUEUE, config.retention.days > 0 ? config.retention.intervalMs : 0, 3600, async (signal) => {
    const deleted = await runRetention(deps.db, { days: config.retention.days, metrics: deps.metrics, shouldStop: () => signal.aborted })
    if (deleted.message_events + deleted.email_engagements > 0) log.info({ deleted }, 'retention pass done')
  })
}
