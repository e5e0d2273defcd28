/**
 * The durable job queue behind the SMS fallback: pg-boss (pinned in package.json) in Tidings' own
 * database, with its own small pool opened from the URL (the embedded default is PostgreSQL too).
 * Jobs are enqueued inside the Kysely transaction that records the failure (`fromKysely(trx)`),
 * so a job exists exactly when its `fallbacks` row does.
 */
import type { Transaction } from 'kysely'
import { PgBoss, fromKysely } from 'pg-boss'
import type { Database } from '../db/database.ts'
import { isDatabaseUnavailableError } from '../db/errors.ts'

/** Queue of fallback sends; job data is `FallbackJobData`. */
export const FALLBACK_QUEUE = 'sms-fallback'
/** Where pg-boss moves a fallback job whose attempts are exhausted. */
export const FALLBACK_DEAD_LETTER_QUEUE = 'sms-fallback-dead'

export interface FallbackJobData {
  /** `fallbacks.id` */
  fallbackId: string
}

/** Where pg-boss keeps its tables: the PostgreSQL database at this URL (pg-boss's own pool). */
export interface JobQueueConnection { connectionString: string }

/** The job-queue connection for an open database (`openDatabase`'s handle). */
export function jobQueueConnectionOf (handle: { url: string }): JobQueueConnection {
  return { connectionString: handle.url }
}

/** How pg-boss runs in this process (`createJobQueue`). */
export interface JobQueueOptions {
  /**
   * How often supervision retries jobs whose worker died (expired), and does its other maintenance
   * (deleting finished jobs), in seconds; pg-boss's default is 60.
   */
  recoveryIntervalSeconds?: number
  /**
   * How often this process looks for due schedules (reconciliation, retention: src/maintenance),
   * in seconds (pg-boss `cronMonitorIntervalSeconds`). Unset: this instance runs no schedules.
   */
  scheduleCheckIntervalSeconds?: number
  /** False for one-off commands (`npm run reconcile`): no supervision, monitoring or schedules. */
  supervise?: boolean
}

/**
 * A pg-boss instance, not yet started. Its schema (`pgboss`) is created or migrated by `start()`.
 * One instance per process serves the fallback and the scheduled maintenance jobs; across
 * replicas pg-boss runs each schedule's occurrence once.
 */
export function createJobQueue (connection: JobQueueConnection, opts: JobQueueOptions = {}): PgBoss {
  const check = opts.scheduleCheckIntervalSeconds
  const common = {
    application_name: 'tidings-jobs',
    supervise: opts.supervise ?? true,
    schedule: check !== undefined,
    ...(check === undefined ? {} : { cronMonitorIntervalSeconds: check, cronWorkerIntervalSeconds: Math.min(5, check) }),
    superviseIntervalSeconds: opts.recoveryIntervalSeconds ?? 60,
    monitorIntervalSeconds: opts.recoveryIntervalSeconds ?? 60
  }
  return new PgBoss({ ...common, connectionString: connection.connectionString, max: 4 })
}

/**
 * How long pg-boss keeps a finished job (`deleteAfterSeconds` of every Tidings queue): its default
 * of 7 days, or `RETENTION_DAYS` when that is shorter.
 */
export function finishedJobRetentionSeconds (config: { retention: { days: number } }): number {
  const week = 7 * 86_400
  return config.retention.days > 0 ? Math.min(week, config.retention.days * 86_400) : week
}

/** Enqueues a fallback send inside `trx`: it commits or rolls back with the transaction. */
export async function enqueueFallback (boss: PgBoss, trx: Transaction<Database>, data: FallbackJobData): Promise<string | null> {
  return await boss.send(FALLBACK_QUEUE, { ...data }, { db: fromKysely(trx) })
}

/** Between two log lines about the job queue's database being unavailable, in ms. */
const UNAVAILABLE_LOG_INTERVAL_MS = 30_000

/**
 * The listener for pg-boss's `error` event. pg-boss reports every failed poll, maintenance run and
 * lost LISTEN connection there and carries on by itself (its workers poll again, its pool opens new
 * connections), so an outage is one warning, then one line per 30 s with how many errors it saw;
 * any other error is logged as it comes.
 */
export function jobQueueErrorLogger (log: { warn: (obj: object, msg: string) => void, error: (obj: object, msg: string) => void }): (err: unknown) => void {
  let lastLog = 0
  let suppressed = 0
  return (err) => {
    if (!isDatabaseUnavailableError(err)) {
      log.error({ err, component: 'jobs' }, 'job queue error')
      return
    }
    const now = Date.now()
    if (now - lastLog < UNAVAILABLE_LOG_INTERVAL_MS) { suppressed++; return }
    log.warn({ err, component: 'jobs', errorsSinceLastLine: suppressed }, 'job queue: database unavailable; it retries by itself')
    lastLog = now
    suppressed = 0
  }
}
