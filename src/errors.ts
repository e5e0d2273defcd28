/**
 * The error catalogue: every error body Tidings sends is `{ code, message }` with one of these
 * stable codes. Domain code throws `AppError`s; `src/app.ts` maps them to HTTP in one handler.
 */
export const ERROR_STATUS = {
  invalid_payload: 400,
  invalid_webhook_url: 400,
  unauthorized: 401,
  invalid_signature: 403,
  unknown_account: 403,
  account_mismatch: 403,
  read_only_session: 403,
  origin_mismatch: 403,
  message_not_found: 404,
  not_found: 404,
  subscription_not_found: 404,
  idempotency_in_progress: 409,
  registration_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  twilio_error: 422,
  idempotency_key_reused: 422,
  rate_limited: 429,
  twilio_unavailable: 502,
  twilio_rate_limited: 503,
  database_unavailable: 503,
  /** Twilio accepted a message Tidings could not record (500 when the database refused its data). */
  send_not_recorded: 503,
  overloaded: 503,
  internal_error: 500,
  webhooks_not_configured: 501
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

/** An error with a stable `code` and a human `message` safe to show the caller. */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  /** Seconds, sent as `Retry-After` (503s). */
  readonly retryAfterS: number | undefined
  /** Extra string fields of the error body, e.g. `twilio_code` (documented per code in openapi.yaml). */
  readonly fields: Readonly<Record<string, string>> | undefined
  /**
   * @param options.statusCode - overrides the catalogue's status where a provider's contract fixes
   *   another one for the same code (Resend's `invalid_signature` is 401, Twilio's 403).
   */
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown, retryAfterS?: number, statusCode?: number, fields?: Record<string, string> }) {
    super(message, { cause: options?.cause })
    this.name = 'AppError'
    this.code = code
    this.statusCode = options?.statusCode ?? ERROR_STATUS[code]
    this.retryAfterS = options?.retryAfterS
    this.fields = options?.fields
  }
}

/** The database could not be reached or did not answer in time; the client should retry. */
export function databaseUnavailable (cause: unknown): AppError {
  return new AppError('database_unavailable', 'The database is unavailable; nothing was recorded. Retry later.', { cause, retryAfterS: 5 })
}
