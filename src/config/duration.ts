/**
 * Durations in configuration: `90s`, `30m`, `2h`, `3d`, or a plain number of seconds (`300`).
 *
 * A few lines rather than the `ms` package: `ms` reads a plain number as milliseconds (so
 * `RECONCILE_INTERVAL=300` would mean 0.3 s) and accepts `1.5 hours` or `2y`, which is more than an
 * operator should have to think about. One whole number and one unit letter is all this accepts.
 */
const UNIT_SECONDS: Readonly<Record<string, number>> = Object.freeze({ s: 1, m: 60, h: 3600, d: 86_400 })

const DURATION = /^(\d{1,9})\s*([smhd]?)$/

/** Milliseconds of a duration such as `90s`, `30m`, `2h`, `3d` or `300` (seconds); `undefined` if it is not one. */
export function parseDuration (value: string): number | undefined {
  const m = DURATION.exec(value.trim().toLowerCase())
  if (m === null) return undefined
  return Number(m[1]) * UNIT_SECONDS[m[2] === '' ? 's' : m[2]] * 1000
}

/** A duration for logs and messages: the largest unit that divides it, e.g. `300000` → `5m`. */
export function formatDuration (ms: number): string {
  const s = Math.round(ms / 1000)
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) {
    if (s !== 0 && s % size === 0) return `${s / size}${unit}`
  }
  return `${s}s`
}

/**
 * Reads the duration variable `name`; a problem naming it is appended to `problems` when it is not
 * a duration or falls outside `[min, max]` (ms). `0` passes when `allowZero` (a feature's "off").
 */
export function durationOf (
  name: string, value: string, problems: string[], bounds: { min: number, max?: number, allowZero?: boolean }
): number {
  const ms = parseDuration(value)
  if (ms === undefined) {
    problems.push(`${name} must be a duration such as 90s, 30m, 2h or 3d (a plain number is seconds), not "${value.slice(0, 40)}"`)
    return 0
  }
  if (ms === 0 && bounds.allowZero === true) return 0
  if (ms < bounds.min || (bounds.max !== undefined && ms > bounds.max)) {
    const range = bounds.max === undefined ? `at least ${formatDuration(bounds.min)}` : `between ${formatDuration(bounds.min)} and ${formatDuration(bounds.max)}`
    problems.push(`${name} must be ${range}${bounds.allowZero === true ? ' (or 0 to turn it off)' : ''}, not "${value.slice(0, 40)}"`)
  }
  return ms
}
