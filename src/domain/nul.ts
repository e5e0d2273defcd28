/**
 * PostgreSQL text and jsonb cannot hold the NUL character (U+0000): an event carrying one could
 * never be stored, however often the provider retried. Such input is refused up front as a 400
 * naming the field, rather than failing in the database as a 503 forever.
 */
import { AppError } from '../errors.ts'

function pathOfNul (value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path : undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = pathOfNul(value[i], path)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const found = pathOfNul(v, path === '' ? k : `${path}.${k}`) ?? (k.includes('\u0000') ? path || 'a field name' : undefined)
      if (found !== undefined) return found
    }
  }
  return undefined
}

/**
 * @throws {AppError} `invalid_payload` naming the first field (dotted path) that contains U+0000.
 */
export function assertNoNul (value: unknown): void {
  const path = pathOfNul(value, '')
  if (path !== undefined) throw new AppError('invalid_payload', `${path} contains a NUL character, which cannot be stored`)
}
