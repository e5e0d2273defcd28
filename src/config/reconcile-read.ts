/**
 * How reconciliation recovers a dropped last word (`RECONCILE_READ_*`, `RECONCILE_EMAIL_WINDOW`):
 * a WhatsApp message that is `delivered` may still become `read`, an email that is
 * `email.delivered` may still bounce or be complained about, and a dropped callback would leave it
 * there forever. Schema fragment and parser, composed in `config.ts`.
 */
import { Type } from '@sinclair/typebox'
import { durationOf } from './duration.ts'

/** The variables, spread into `EnvSchema`. */
export const ReconcileReadEnv = {
  RECONCILE_READ_WINDOW: Type.String({ default: '24h' }),
  RECONCILE_READ_CHECKS: Type.Integer({ minimum: 0, maximum: 10, default: 3 }),
  RECONCILE_EMAIL_WINDOW: Type.String({ default: '2h' })
}

export interface ReconcileReadConfig {
  /** A delivered WhatsApp message is looked up again for its `read` while younger than this (by `delivered_at`), in ms. */
  readWindowMs: number
  /** Email: `email.delivered` is looked up again for a bounce or complaint while younger than this, in ms. */
  emailWindowMs: number
  /** Look-ups per delivered message at most; 0: never look again. */
  checks: number
}

const HOUR = 3600_000

/** Parses the variables; problems are appended to `problems`. */
export function parseReconcileReadConfig (env: { RECONCILE_READ_WINDOW: string, RECONCILE_READ_CHECKS: number, RECONCILE_EMAIL_WINDOW: string }, problems: string[]): ReconcileReadConfig {
  return {
    readWindowMs: durationOf('RECONCILE_READ_WINDOW', env.RECONCILE_READ_WINDOW, problems, { min: 60_000, max: 30 * 24 * HOUR, allowZero: true }),
    emailWindowMs: durationOf('RECONCILE_EMAIL_WINDOW', env.RECONCILE_EMAIL_WINDOW, problems, { min: 60_000, max: 7 * 24 * HOUR, allowZero: true }),
    checks: env.RECONCILE_READ_CHECKS
  }
}
