/**
 * Parsing of the operator console's variables (`CONSOLE_*`, README "Console"): how long a browser
 * session lasts, and how the rollup behind `GET /v1/stats/timeseries` is refreshed. Kept apart from
 * `config.ts` like `fallback.ts`; `loadConfig` reports these problems with every other one.
 */
import { Type } from '@sinclair/typebox'
import { durationOf } from './duration.ts'

/** The env-schema fragment, spread into `EnvSchema`. */
export const ConsoleEnvSchema = {
  CONSOLE_SESSION_TTL: Type.String({ default: '8h' }),
  CONSOLE_STATS_REFRESH_INTERVAL: Type.String({ default: '1m' }),
  CONSOLE_STATS_REFRESH_LOOKBACK: Type.String({ default: '3d' })
}

export interface ConsoleConfig {
  /** How long a console session cookie (and its row) lives, in ms. */
  sessionTtlMs: number
  /** How often the statistics rollup is refreshed, in ms; 0: never (reads then compute from messages). */
  statsRefreshIntervalMs: number
  /** How far back each refresh recomputes (hours whose messages may still change status), in ms. */
  statsRefreshLookbackMs: number
}

type ConsoleEnv = { [K in keyof typeof ConsoleEnvSchema]: string }

const MINUTE = 60_000
const DAY = 24 * 60 * MINUTE

/** Parses the variables; problems are appended to `problems`. */
export function parseConsoleConfig (env: ConsoleEnv, problems: string[]): ConsoleConfig {
  return {
    sessionTtlMs: durationOf('CONSOLE_SESSION_TTL', env.CONSOLE_SESSION_TTL, problems, { min: MINUTE, max: 30 * DAY }),
    statsRefreshIntervalMs: durationOf('CONSOLE_STATS_REFRESH_INTERVAL', env.CONSOLE_STATS_REFRESH_INTERVAL, problems, { min: 10_000, max: DAY, allowZero: true }),
    statsRefreshLookbackMs: durationOf('CONSOLE_STATS_REFRESH_LOOKBACK', env.CONSOLE_STATS_REFRESH_LOOKBACK, problems, { min: 3600_000, max: 90 * DAY })
  }
}
