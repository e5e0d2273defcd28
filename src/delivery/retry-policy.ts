/**
 * When a failed delivery is tried again: the schedule (Svix's by default: immediately, 5 s, 5 min,
 * 30 min, 2 h, 5 h, 10 h, 10 h; `WEBHOOK_RETRY_SCHEDULE`) with up to 20 % jitter so a consumer that
 * comes back is not hit by every retry at once, and a receiver's `Retry-After` (429/503) honoured
 * when it asks for longer, up to a day.
 * https://docs.svix.com/retries
 */
import type { AttemptResult } from './http-client.ts'

/** The longest `Retry-After` honoured: a receiver cannot park a delivery for longer. */
const MAX_RETRY_AFTER_MS = 86_400_000

/** What follows an attempt. */
export type AttemptOutcome =
  | { state: 'delivered' }
  /** Try again after `delayMs`. */
  | { state: 'pending', delayMs: number }
  | { state: 'failed' }

/**
 * @param attempt - the attempt just made, 1-based.
 * @param scheduleMs - delay before each attempt (`scheduleMs[0]` before the first).
 * @param random - a number in [0, 1) for the jitter (tests pass their own).
 */
export function outcomeOf (result: AttemptResult, attempt: number, scheduleMs: readonly number[], random: number = Math.random()): AttemptOutcome {
  if (result.kind === '2xx') return { state: 'delivered' }
  // 410 Gone: the endpoint says it will never take deliveries again (the subscription is disabled).
  if (result.statusCode === 410 || attempt >= scheduleMs.length) return { state: 'failed' }
  const scheduled = scheduleMs[attempt] * (1 + 0.2 * random)
  const asked = result.retryAfterS === null ? 0 : Math.min(result.retryAfterS * 1000, MAX_RETRY_AFTER_MS)
  return { state: 'pending', delayMs: Math.round(Math.max(scheduled, asked)) }
}
