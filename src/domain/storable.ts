/**
 * What PostgreSQL can store, decided at the door. An event that can never be stored must be
 * refused (4xx naming the field, so the provider stops retrying) or normalised before it reaches
 * the recorder; otherwise it fails in the database as a 503 on every retry, or is stored and then
 * breaks every read of it.
 *
 * - NUL (U+0000): text and jsonb cannot hold it, and it is never part of a real status or email
 *   event: refused.
 * - A lone UTF-16 surrogate (`"\ud800"` in JSON): jsonb refuses the escape. It only arises from a
 *   broken encoder, and nothing a user needs is in it: replaced with U+FFFD in the stored copy.
 * - Nesting deeper than `MAX_JSON_DEPTH`: no provider payload comes close, and deep values
 *   overflow recursive code (ours, JSON.stringify, PostgreSQL's jsonb parser): refused.
 *
 * The walk is iterative, so hostile depth cannot overflow the stack here.
 */
import { AppError } from '../errors.ts'

/** Deepest nesting of objects and arrays accepted in a provider payload (Resend's is 3–4). */
export const MAX_JSON_DEPTH = 32

/** Why a value was changed on its way in (counted in `tidings_input_normalized_total`). */
export type NormalizeReason = 'lone_surrogate' | 'implausible_time'

/** Why a value was refused (counted in `tidings_input_refused_total`). */
export type RefuseReason = 'nul' | 'lone_surrogate' | 'too_deep' | 'too_many_params' | 'too_large' | 'bad_query'

/** An `AppError` that also says which class of input it refused, for the metric. */
export class RefusedInput extends AppError {
  readonly reason: RefuseReason
  constructor (reason: RefuseReason, message: string) {
    super('invalid_payload', message)
    this.reason = reason
  }
}

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** True when PostgreSQL stores `s` as it is: the common case, checked without building a field name. */
function storableAsIs (s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s)
}

function fixString (s: string, found: Set<NormalizeReason>, path: () => string, refuseLoneSurrogates: boolean): string {
  if (storableAsIs(s)) return s
  if (s.includes('\u0000')) throw new RefusedInput('nul', `${path()} contains a NUL character, which cannot be stored`)
  if (refuseLoneSurrogates) throw new RefusedInput('lone_surrogate', `${path()} contains a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF), which cannot be stored; send well-formed Unicode`)
  found.add('lone_surrogate')
  return s.toWellFormed()
}

/** How `toStorable` treats what it cannot store as is. */
export interface StorableOptions {
  /** Named before every field path in messages, e.g. `body` gives `body.metadata.note`. */
  prefix?: string
  /**
   * Refuse a lone UTF-16 surrogate (400) instead of replacing it with U+FFFD: for a caller's own
   * input, which the caller can fix, unlike a provider's.
   */
  refuseLoneSurrogates?: boolean
}

interface Frame { source: Record<string, unknown> | unknown[], target: Record<string, unknown> | unknown[], path: string, depth: number }

/**
 * A copy of a parsed JSON value (or form parameters) that PostgreSQL can store.
 * @param value - output of `JSON.parse`, or a record of strings and string arrays.
 * @param onNormalized - called once per kind of change made.
 * @returns the copy; strings are the same when nothing needed changing.
 * @throws {RefusedInput} `invalid_payload` naming the dotted path of the first field holding NUL,
 *   or saying the payload nests deeper than `MAX_JSON_DEPTH`.
 */
export function toStorable<T> (value: T, onNormalized: (reason: NormalizeReason) => void = () => {}, options: StorableOptions = {}): T {
  const found = new Set<NormalizeReason>()
  const refuse = options.refuseLoneSurrogates === true
  const named = (path: string): string => options.prefix === undefined ? (path || 'the body') : (path === '' ? options.prefix : `${options.prefix}.${path}`)
  const copy = (v: unknown, path: string, depth: number, stack: Frame[]): unknown => {
    if (typeof v === 'string') return fixString(v, found, () => named(path), refuse)
    if (v === null || typeof v !== 'object') return v
    if (depth >= MAX_JSON_DEPTH) throw new RefusedInput('too_deep', `${named(path)} nests objects or arrays deeper than ${MAX_JSON_DEPTH} levels`)
    const target: Record<string, unknown> | unknown[] = Array.isArray(v) ? [] : {}
    stack.push({ source: v as Record<string, unknown>, target, path, depth: depth + 1 })
    return target
  }
  const stack: Frame[] = []
  const root = copy(value, '', 0, stack)
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const { source, target, path, depth } = frame
    if (Array.isArray(source)) {
      for (let i = 0; i < source.length; i++) (target as unknown[])[i] = copy(source[i], path, depth, stack)
    } else {
      // Field names and string values are checked in place; a field's dotted path is built only
      // for a nested object or a message (a callback is some twenty plain strings).
      for (const k of Object.keys(source)) {
        const v = (source as Record<string, unknown>)[k]
        const key = storableAsIs(k) ? k : fixString(k, found, () => `a field name in ${named(path)}`, refuse)
        const value = typeof v === 'string' && storableAsIs(v) ? v : copy(v, path === '' ? key : `${path}.${key}`, depth, stack)
        // An own data property: a "__proto__" key stays a plain field.
        if (key === '__proto__') Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
        else (target as Record<string, unknown>)[key] = value
      }
    }
  }
  for (const reason of found) onNormalized(reason)
  return root as T
}

/**
 * @throws {AppError} `invalid_payload` naming the first field (dotted path) that contains U+0000
 *   (or nesting beyond `MAX_JSON_DEPTH`).
 */
export function assertNoNul (value: unknown): void {
  toStorable(value)
}
