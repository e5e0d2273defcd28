/**
 * Which database errors mean "unavailable, retry later" rather than a bug.
 * SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN'])
// 08: connection exception; 53: insufficient resources; 57: operator intervention (admin
// shutdown, statement timeout 57014); 40001/40P01: serialisation failure, deadlock (retryable).
const SQLSTATE_PREFIXES = ['08', '53', '57', '58']
const SQLSTATE_CODES = new Set(['40001', '40P01'])
const MESSAGES = [/timeout exceeded when trying to connect/i, /connection terminated/i, /query read timeout/i, /Connection terminated unexpectedly/i]

/** True when `err` says the database is unreachable, overloaded or timed out. */
export function isDatabaseUnavailableError (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const e = err as { code?: unknown, message?: unknown, errors?: unknown, cause?: unknown }
  if (typeof e.code === 'string') {
    if (NETWORK_CODES.has(e.code) || SQLSTATE_CODES.has(e.code)) return true
    if (/^[0-9A-Z]{5}$/.test(e.code) && SQLSTATE_PREFIXES.some((p) => (e.code as string).startsWith(p))) return true
  }
  if (typeof e.message === 'string' && MESSAGES.some((re) => re.test(e.message as string))) return true
  if (Array.isArray(e.errors) && e.errors.some(isDatabaseUnavailableError)) return true
  return e.cause !== undefined && e.cause !== err && isDatabaseUnavailableError(e.cause)
}
