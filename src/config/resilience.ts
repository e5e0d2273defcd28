/**
 * Staying up under database faults and keeping the webhooks' capacity (docs/reliability.md):
 * how long start-up waits for the database, the read pool, the limit on concurrent heavy reads
 * (`GET /v1/stats`) and how long `/metrics` reuses its database figures.
 */
import { Type } from '@sinclair/typebox'
import { durationOf } from './duration.ts'

/** The variables, composed into `EnvSchema` (config.ts). */
export const ResilienceEnv = {
  // A duration (90s, 5m); 0 waits forever.
  DATABASE_STARTUP_TIMEOUT: Type.String({ default: '2m' }),
  DATABASE_READ_POOL_MAX: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  STATS_MAX_CONCURRENT: Type.Integer({ minimum: 1, maximum: 100, default: 2 }),
  STATS_MAX_WAIT: Type.String({ default: '2s' }),
  METRICS_DATABASE_CACHE: Type.String({ default: '5s' })
}

export interface ResilienceConfig {
  /** How long start-up waits for the database to answer before giving up, in ms; 0: forever. */
  databaseStartupTimeoutMs: number
  /** Size of the read pool (`DATABASE_READ_POOL_MAX`); default a third of `DATABASE_POOL_MAX`, at least 2. */
  databaseReadPoolMax: number
  /** `GET /v1/stats` requests computed at once per process; more wait up to `statsMaxWaitMs`, then 503. */
  statsMaxConcurrent: number
  /** How long a stats request may wait for its turn, in ms. */
  statsMaxWaitMs: number
  /** How long `/metrics` reuses the figures it read from the database, in ms. */
  metricsDatabaseCacheMs: number
}

/** Default size of the read pool: a third of the write pool, at least 2. */
export function defaultReadPoolMax (poolMax: number): number {
  return Math.max(2, Math.ceil(poolMax / 3))
}

interface ResilienceEnvValues {
  DATABASE_STARTUP_TIMEOUT: string
  DATABASE_READ_POOL_MAX?: number
  DATABASE_POOL_MAX: number
  STATS_MAX_CONCURRENT: number
  STATS_MAX_WAIT: string
  METRICS_DATABASE_CACHE: string
}

/** Parses the variables; problems are appended to `problems`. */
export function parseResilienceConfig (env: ResilienceEnvValues, problems: string[]): ResilienceConfig {
  return {
    databaseStartupTimeoutMs: durationOf('DATABASE_STARTUP_TIMEOUT', env.DATABASE_STARTUP_TIMEOUT, problems, { min: 1000, allowZero: true }),
    databaseReadPoolMax: env.DATABASE_READ_POOL_MAX ?? defaultReadPoolMax(env.DATABASE_POOL_MAX),
    statsMaxConcurrent: env.STATS_MAX_CONCURRENT,
    statsMaxWaitMs: durationOf('STATS_MAX_WAIT', env.STATS_MAX_WAIT, problems, { min: 0, max: 60_000 }),
    metricsDatabaseCacheMs: durationOf('METRICS_DATABASE_CACHE', env.METRICS_DATABASE_CACHE, problems, { min: 1000, max: 300_000 })
  }
}
