/**
 * A minimal Server-Sent Events client over fetch, for tests.
 */
export interface SseEvent { id: string, event: string, data: Record<string, unknown> }

export interface SseClient {
  events: SseEvent[]
  comments: string[]
  /** Resolves once `n` events have arrived (rejects after `timeoutMs`). */
  waitFor: (n: number, timeoutMs?: number) => Promise<SseEvent[]>
  close: () => void
  /** Resolves when the stream ends: closed by the server, failed, or `close()`d. */
  ended: Promise<void>
}

export async function openStream (url: string, headers: Record<string, string>): Promise<SseClient> {
  const controller = new AbortController()
  const res = await fetch(url, { headers, signal: controller.signal })
  if (res.status !== 200 || res.body === null) throw new Error(`stream answered ${res.status}: ${await res.text()}`)
  const events: SseEvent[] = []
  const comments: string[] = []
  const waiters: Array<() => void> = []
  const decoder = new TextDecoder()
  let buffer = ''
  const reader = res.body.getReader()
  const ended = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer += decoder.decode(value, { stream: true })
        let sep
        while ((sep = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, sep)
          buffer = buffer.slice(sep + 2)
          const fields: Record<string, string> = {}
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) { comments.push(line.slice(1).trim()); continue }
            const i = line.indexOf(':')
            if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1).trimStart()
          }
          if (fields.data !== undefined) {
            events.push({ id: fields.id, event: fields.event, data: JSON.parse(fields.data) })
          }
          waiters.forEach((w) => w())
        }
      }
    } catch { /* aborted */ }
  })().catch(() => {})
  return {
    events,
    comments,
    waitFor: async (n, timeoutMs = 10_000) => await new Promise((resolve, reject) => {
      const check = (): void => { if (events.length >= n) { clearTimeout(timer); resolve(events.slice(0, n)) } }
      const timer = setTimeout(() => reject(new Error(`only ${events.length} of ${n} events arrived`)), timeoutMs)
      waiters.push(check)
      check()
    }),
    close: () => controller.abort(),
    ended
  }
}
