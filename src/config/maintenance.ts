/**
 * Parsing of the scheduled maintenance variables: reconciliation (`RECONCILE_*`, `RESEND_API_*`),
 * retention (`RETENTION_*`) and how often pg-boss looks at its schedules. Kept apart from
 * `config.ts` like `fallback.ts`; `loadConfig` reports these problems with every other one.
 */
import type { Env } from './config.ts'
import { durationOf } from './duration.ts'

export interface ReconcileConfig {
  /** How often the scheduled pass runs, in ms; 0: never (`npm run reconcile` still works). */
  intervalMs: number
  /** A message with no final status is fetched this long after its last change (or last fetch), in ms. */
  afterMs: number
  /** Messages fetched per pass at most. */
  batch: number
  /** Older messages (by `created_at`) are given up on, in ms. */
  maxAgeMs: number
  /** Resend API key for `GET /emails/{id}`; unset: emails are not reconciled. */
  resendApiKey: string | undefined
  /** Where Resend API requests go, without a trailing slash (`RESEND_API_BASE_URL`, tests and demos only). */
  resendApiBaseUrl: string
  /** True when `RESEND_API_BASE_URL` is set (start-up warns). */
  resendApiBaseUrlOverridden: boolean
}

export interface RetentionConfig {
  /** Events and engagement older than this many days are deleted; 0: keep everything. */
  days: number
  /** How often the scheduled deletion runs, in ms. */
  intervalMs: number
}

export interface MaintenanceConfig {
  reconcile: ReconcileConfig
  retention: RetentionConfig
  /** How often each process looks for due pg-boss schedules, in seconds (pg-boss `cronMonitorIntervalSeconds`). */
  scheduleCheckIntervalS: number
}

type MaintenanceEnv = Pick<Env, 'RECONCILE_INTERVAL' | 'RECONCILE_AFTER' | 'RECONCILE_BATCH' | 'RECONCILE_MAX_AGE' |
'RESEND_API_KEY' | 'RESEND_API_BASE_URL' | 'RETENTION_DAYS' | 'RETENTION_INTERVAL' | 'SCHEDULE_CHECK_INTERVAL'>

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

/** Parses the variables; problems are appended to `problems`. */
export function parseMaintenanceConfig (env: MaintenanceEnv, problems: string[]): MaintenanceConfig {
  // pg-boss files at most one job per schedule per minute, so a shorter interval could not be kept.
  const intervalMs = durationOf('RECONCILE_INTERVAL', env.RECONCILE_INTERVAL, problems, { min: MINUTE, max: DAY, allowZero: true })
  const afterMs = durationOf('RECONCILE_AFTER', env.RECONCILE_AFTER, problems, { min: 1000, max: 30 * DAY })
  const maxAgeMs = durationOf('RECONCILE_MAX_AGE', env.RECONCILE_MAX_AGE, problems, { min: MINUTE, max: 365 * DAY })
  if (maxAgeMs > 0 && afterMs >= maxAgeMs) problems.push('RECONCILE_MAX_AGE must be longer than RECONCILE_AFTER')
  const retentionIntervalMs = durationOf('RETENTION_INTERVAL', env.RETENTION_INTERVAL, problems, { min: MINUTE, max: 7 * DAY })
  const checkMs = durationOf('SCHEDULE_CHECK_INTERVAL', env.SCHEDULE_CHECK_INTERVAL, problems, { min: 1000, max: 45_000 })
  return {
    reconcile: {
      intervalMs,
      afterMs,
      batch: env.RECONCILE_BATCH,
      maxAgeMs,
      resendApiKey: env.RESEND_API_KEY,
      resendApiBaseUrl: (env.RESEND_API_BASE_URL ?? 'https://api.resend.com').replace(/\/+$/, ''),
      resendApiBaseUrlOverridden: env.RESEND_API_BASE_URL !== undefined
    },
    retention: { days: env.RETENTION_DAYS, intervalMs: retentionIntervalMs },
    scheduleCheckIntervalS: Math.round(checkMs / 1000)
  }
}
