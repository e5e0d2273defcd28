/**
 * Which database errors mean "unavailable, retry later" rather than a bug.
 * SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN'])
// 08: connection exception; 53: insufficient resources; 57: operator intervention (admin
// shutdown, statement timeout 57014); 58: system error.
const SQLSTATE_PREFIXES = ['08', '53', '57', '58']
// 40001/40P01: serialisation failure, deadlock: the transaction lost a race and may be retried.
const TRANSIENT_CODES = new Set(['40001', '40P01'])
const MESSAGES = [/timeout exceeded when trying to connect/i, /connection terminated/i, /query read timeout/i, /Connection terminated unexpectedly/i,
  // pg, on a client whose connection died (e.g. Kysely's ROLLBACK after a cut mid-transaction).
  /encountered a connection error and is not queryable/i]

/** True when `err` says the database is unreachable, overloaded or timed out. */
export function isDatabaseUnavailableError (err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const e = err as { code?: unknown, message?: unknown, errors?: unknown, cause?: unknown }
  if (typeof e.code === 'string') {
    if (NETWORK_CODES.has(e.code)) return true
    if (/^[0-9A-Z]{5}$/.test(e.code) && SQLSTATE_PREFIXES.some((p) => (e.code as string).startsWith(p))) return true
  }
  if (typeof e.message === 'string' && MESSAGES.some((re) => re.test(e.message as string))) return true
  if (Array.isArray(e.errors) && e.errors.some(isDatabaseUnavailableError)) return true
  return e.cause !== undefined && e.cause !== err && isDatabaseUnavailableError(e.cause)
}

function sqlState (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/** True when `err` is a deadlock or serialization failure: retrying the transaction may succeed. */
export function isTransientConflict (err: unknown): boolean {
  const code = sqlState(err)
  return code !== undefined && TRANSIENT_CODES.has(code)
}

/**
 * True when PostgreSQL refused a value itself (SQLSTATE class 22, data exception: an
 * untranslatable character, an out-of-range date, invalid JSON; 54: a value too large or deep).
 * Retrying the same value can never succeed.
 */
export function isValueRefused (err: unknown): boolean {
  const code = sqlState(err)
  return code !== undefined && (code.startsWith('22') || code.startsWith('54'))
}
