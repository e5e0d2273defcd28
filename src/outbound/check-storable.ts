/**
 * What a JSON schema cannot say about the caller's text: that PostgreSQL can store it. The send
 * path checks this before Twilio is called, so a message that could never be recorded is never
 * sent (and never sent again on a retry): text and jsonb refuse U+0000 (the check webhooks make,
 * `src/domain/storable.ts`), jsonb refuses a lone UTF-16 surrogate (`\uD800`–`\uDFFF` without its
 * pair), and `metadata` is bounded in depth before anything walks it recursively
 * (`JSON.stringify`, `canonicalJson`), then in size.
 */
import { assertNoNul } from '../domain/storable.ts'
import { AppError } from '../errors.ts'

/** Largest `metadata` accepted, as JSON (bytes), for `POST` and `PUT /v1/messages`. */
export const METADATA_MAX_BYTES = 16 * 1024
/** Deepest nesting of objects and arrays accepted in `metadata` (the object itself is level 1). */
export const METADATA_MAX_DEPTH = 32

const invalid = (message: string): AppError => new AppError('invalid_payload', message)

/** The dotted path of the first string (value or key) that is not well-formed UTF-16, bounded by `METADATA_MAX_DEPTH`. */
function check (value: unknown, path: string, root: string, depth: number): void {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw invalid(`${path} contains a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF), which cannot be stored; send well-formed Unicode`)
    return
  }
  if (value === null || typeof value !== 'object') return
  if (depth > METADATA_MAX_DEPTH) throw invalid(`${root} is nested too deep: at most ${METADATA_MAX_DEPTH} levels of objects and arrays`)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) check(value[i], `${path}[${i}]`, root, depth + 1)
    return
  }
  for (const [k, v] of Object.entries(value)) {
    if (!k.isWellFormed()) throw invalid(`${path} has a field name with a lone UTF-16 surrogate, which cannot be stored`)
    check(v, `${path}.${k}`, root, depth + 1)
  }
}

/**
 * Checks every field of a `POST`/`PUT /v1/messages` body (already schema-validated).
 * @throws {AppError} `invalid_payload` naming the field (`body.metadata.note`).
 */
export function checkStorable (request: { metadata?: Record<string, unknown> } & Record<string, unknown>): void {
  for (const [field, value] of Object.entries(request)) check(value, `body.${field}`, `body.${field}`, 1)
  // Bounded depth now: the recursive walks below cannot overflow the stack.
  assertNoNul({ body: request })
  if (request.metadata !== undefined && Buffer.byteLength(JSON.stringify(request.metadata)) > METADATA_MAX_BYTES) {
    throw invalid(`body.metadata must be at most ${METADATA_MAX_BYTES} bytes as JSON`)
  }
}
