/**
 * Times in query strings (`since`, `until`), read as strictly as PostgreSQL and `Date` need.
 */
import { AppError } from '../errors.ts'

/**
 * A date-time as `Date` can hold it and PostgreSQL can compare it, or `undefined`. The schema's
 * `date-time` format also admits a leap second (`23:59:60`) and an hour-only offset (`+05`),
 * which `Date` reads as Invalid Date; calendar dates are checked by round trip, and the year must
 * stay within 1–9999 in UTC.
 */
export function realTime (value: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(value)
  if (m === null) return undefined
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number)
  if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return undefined
  const date = new Date(value)
  if (!Number.isFinite(date.getTime())) return undefined
  const calendar = new Date(Date.UTC(year, month - 1, day))
  // In UTC too, a four-digit year: `9999-12-31T23:59:59-01:00` is year 10000, which the API's
  // date-time format (used to echo `since`/`until`) cannot carry.
  const utcYear = date.getUTCFullYear()
  return calendar.getUTCDate() === day && utcYear >= 1 && utcYear <= 9999 ? date : undefined
}

/**
 * @returns the parsed `querystring.<name>`, or `undefined` when absent.
 * @throws {AppError} `invalid_payload` naming the parameter when it is not a real time.
 */
export function timeQuery (name: 'since' | 'until', value: string | undefined): Date | undefined {
  if (value === undefined) return undefined
  const date = realTime(value)
  if (date === undefined) {
    throw new AppError('invalid_payload', `querystring.${name} must be an ISO 8601 date-time with seconds and a full offset, e.g. 2026-01-31T12:00:00Z or 2026-01-31T12:00:00+05:00 (no leap second)`)
  }
  return date
}
