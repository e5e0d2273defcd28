/**
 * Load-shedding tests produce pressure deterministically: they block their own event loop in
 * slices until the app sheds, however busy or quiet the machine is, rather than blocking for a
 * fixed time and hoping a sample lands.
 */
import type { LightMyRequestResponse } from 'fastify'

/** Shedding on after a short sustained delay: 50 ms mean over 100 ms samples. */
export const PRESSURE_ENV = { MAX_EVENT_LOOP_DELAY_MS: '50', PRESSURE_SAMPLE_INTERVAL_MS: '100' }

/** Blocks the event loop for `ms` (synchronously). */
export function blockFor (ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) { /* block the event loop */ }
}

/**
 * Blocks the event loop in 200 ms slices, sending after each, until `send` is shed (at most 100
 * slices, 20 s).
 * @returns the 503 answer.
 * @throws when it never was.
 */
export async function pressUntilShed (send: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
  for (let i = 0; i < 100; i++) {
    blockFor(200)
    await new Promise((resolve) => setTimeout(resolve, 5))
    const res = await send()
    if (res.statusCode === 503) return res
  }
  throw new Error('the app never shed the request')
}

/** Sends until the answer is not a 503 (at most 20 s), e.g. once pressure is over. */
export async function untilNotShed (send: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
  let res = await send()
  for (let i = 0; i < 200 && res.statusCode === 503; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    res = await send()
  }
  return res
}
