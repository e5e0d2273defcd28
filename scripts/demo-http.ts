/**
 * The demos' HTTP client and output: a request that waits out `503`/`429` as a provider would
 * (honouring `Retry-After`), answers read safely whatever their body, and one style of printing.
 */

/** An answer: its status and its body parsed as JSON (`undefined` when it is not JSON). */
export interface DemoAnswer<T = any> {
  status: number
  body: T
  /** `200 recorded`, `404 not_found`: the status and the `outcome` or error `code`. */
  summary: string
}

/** How long one request may keep being retried after 503/429, in ms. */
const RETRY_BUDGET_MS = 90_000
/** Wait when a 503/429 carries no usable Retry-After, in ms. */
const DEFAULT_RETRY_MS = 1000

/**
 * `fetch`, retried on 503 and 429 (after `Retry-After` seconds, capped at 10 s per wait) and on a
 * refused connection, for up to 90 s in all.
 * @returns the last answer, whatever its status: callers report it rather than crash on it.
 */
export async function request<T = any> (url: string, init: RequestInit = {}): Promise<DemoAnswer<T>> {
  const giveUpAt = Date.now() + RETRY_BUDGET_MS
  for (;;) {
    let res: Response
    try {
      res = await fetch(url, init)
    } catch (err) {
      if (Date.now() > giveUpAt) throw err
      await sleep(DEFAULT_RETRY_MS)
      continue
    }
    const text = await res.text()
    let body: any
    try { body = JSON.parse(text) } catch { body = undefined }
    if ((res.status === 503 || res.status === 429) && Date.now() < giveUpAt) {
      const seconds = Number(res.headers.get('retry-after'))
      await sleep(Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, 10_000) : DEFAULT_RETRY_MS)
      continue
    }
    const word = typeof body?.outcome === 'string' ? body.outcome : typeof body?.code === 'string' ? body.code : ''
    return { status: res.status, body: body as T, summary: `${res.status} ${word}`.trim() }
  }
}

/** Prints one of Tidings' JSON log lines as one indented sentence: the demo shows no raw JSON. */
export function printLogLine (line: string): void {
  try {
    const entry = JSON.parse(line) as { msg?: string, err?: { message?: string } }
    console.log(`  ! Tidings logged: ${entry.msg ?? ''}${entry.err?.message === undefined ? '' : ` (${entry.err.message.split('\n')[0]})`}`)
  } catch {
    console.log(`  ! ${line.trim()}`)
  }
}

/** A part's heading, preceded by a blank line. */
export function heading (title: string): string {
  return `\n== ${title}`
}

/** The arrow between a request and its answer, or between timeline steps. */
export const ARROW = '→'

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
