/**
 * Start-up with the database down: wait for it, saying so in the log, rather than exit (an
 * orchestrator restarting Tidings in a loop while PostgreSQL restarts helps nobody), but not
 * forever unless asked (`DATABASE_STARTUP_TIMEOUT`).
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from './database.ts'
import { isDatabaseUnavailableError } from './errors.ts'
import { formatDuration } from '../config/duration.ts'

interface Log {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

export interface WaitOptions {
  /** Give up after this long, in ms; 0 waits forever. */
  timeoutMs: number
  log: Log
  /** Between attempts, in ms. */
  intervalMs?: number
  /** Between two "still waiting" log lines, in ms. */
  logEveryMs?: number
}

/** Why the database did not answer, in words safe for a log line (no host, no credentials). */
export function unavailableReason (err: unknown): string {
  const e = err as { code?: unknown, message?: unknown }
  const code = typeof e?.code === 'string' ? e.code : undefined
  switch (code) {
    case 'ECONNREFUSED': return 'connection refused'
    case 'ECONNRESET': return 'connection reset'
    case 'ETIMEDOUT': return 'connection timed out'
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'host not found'
    case '57P01': case '57P02': return 'server shutting down'
    case '57P03': return 'server starting up'
    case '57014': return 'statement timeout'
    case '53300': return 'too many connections'
  }
  const message = typeof e?.message === 'string' ? e.message : ''
  if (/timeout exceeded when trying to connect/i.test(message)) return 'no free connection in the pool'
  if (/connection terminated|not queryable/i.test(message)) return 'connection lost'
  if (/timeout/i.test(message)) return 'no answer in time'
  return code === undefined ? 'unavailable' : `unavailable (${code})`
}

/**
 * Resolves once `select 1` succeeds.
 * @throws an Error naming `DATABASE_STARTUP_TIMEOUT` when the time is up, or at once the
 *   database's own error when it is not an "unavailable" one (wrong password, no such database):
 *   waiting would not fix those.
 */
export async function waitForDatabase (db: Kysely<Database>, opts: WaitOptions): Promise<void> {
  const started = Date.now()
  const interval = opts.intervalMs ?? 1000
  const logEvery = opts.logEveryMs ?? 5000
  let lastLog = 0
  let attempts = 0
  for (;;) {
    attempts++
    try {
      await sql`select 1`.execute(db)
      if (attempts > 1) opts.log.info({ waitedMs: Date.now() - started, attempts }, 'database answers; starting')
      return
    } catch (err) {
      if (!isDatabaseUnavailableError(err)) throw err
      const waited = Date.now() - started
      if (opts.timeoutMs > 0 && waited >= opts.timeoutMs) {
        throw new Error(`The database did not answer within ${formatDuration(opts.timeoutMs)} (DATABASE_STARTUP_TIMEOUT): ${unavailableReason(err)}`, { cause: err })
      }
      if (lastLog === 0 || Date.now() - lastLog >= logEvery) {
        lastLog = Date.now()
        opts.log.warn({
          reason: unavailableReason(err),
          waitedMs: waited,
          attempts,
          timeout: opts.timeoutMs > 0 ? formatDuration(opts.timeoutMs) : 'none'
        }, 'database not answering; waiting for it before starting (DATABASE_STARTUP_TIMEOUT)')
      }
      await new Promise((resolve) => setTimeout(resolve, interval))
    }
  }
}
