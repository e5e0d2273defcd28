/**
 * Continuous signed Twilio load for the fault tests: `concurrency` loops each POST a new signed
 * status callback over real HTTP as soon as the previous one answered, and remember every
 * (MessageSid, MessageStatus) that was acknowledged with 200, so a test can check the database
 * for each of them afterwards.
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from '../../src/db/database.ts'
import { messageSid, postSigned, smsCallback } from './app.ts'

export interface Attempt {
  sid: string
  status: string
  /** `Date.now()` when the request was sent and when it answered. */
  startedAt: number
  endedAt: number
  /** HTTP status, or 0 when the connection failed. */
  code: number
}

export interface Load {
  attempts: Attempt[]
  /** Stops the loops and waits for requests in flight. */
  stop: () => Promise<void>
  /** Resolves once a callback sent after `since` (ms) was acknowledged; returns when it answered. */
  ackedAfter: (since: number, timeoutMs?: number) => Promise<number>
  /** How many answered each HTTP status (0: no connection). */
  counts: () => Record<string, number>
}

const STATUSES = ['queued', 'sent', 'delivered']

/** Starts the load against the server at `baseUrl`. */
export function startLoad (baseUrl: string, opts: { concurrency?: number, pauseMs?: number } = {}): Load {
  const attempts: Attempt[] = []
  const state = { running: true }
  const loop = async (): Promise<void> => {
    while (state.running) {
      const sid = messageSid()
      for (const status of STATUSES) {
        if (!state.running) return
        const startedAt = Date.now()
        const code = await postSigned(baseUrl, smsCallback(sid, status))
        attempts.push({ sid, status, startedAt, endedAt: Date.now(), code })
        // A refused connection answers at once: do not spin.
        if (code !== 200) await new Promise((resolve) => setTimeout(resolve, 50))
        else if (opts.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, opts.pauseMs))
      }
    }
  }
  const loops = Array.from({ length: opts.concurrency ?? 4 }, async () => { await loop() })
  return {
    attempts,
    stop: async () => { state.running = false; await Promise.all(loops) },
    ackedAfter: async (since, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const ok = attempts.find((a) => a.code === 200 && a.startedAt >= since)
        if (ok !== undefined) return ok.endedAt
        if (Date.now() > deadline) throw new Error(`no callback acknowledged within ${timeoutMs} ms`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
    counts: () => {
      const c: Record<string, number> = {}
      for (const a of attempts) c[a.code] = (c[a.code] ?? 0) + 1
      return c
    }
  }
}

/**
 * The acknowledged callbacks (200) that are not in `message_events`: what would have been lost.
 * Empty means nothing acknowledged was lost.
 */
export async function lostAcknowledged (db: Kysely<Database>, attempts: readonly Attempt[]): Promise<Array<{ sid: string, status: string }>> {
  const acked = attempts.filter((a) => a.code === 200)
  if (acked.length === 0) return []
  const { rows } = await sql<{ sid: string, status: string }>`
    select a.sid, a.status
    from unnest(${acked.map((a) => a.sid)}::text[], ${acked.map((a) => a.status)}::text[]) as a(sid, status)
    where not exists (select 1 from message_events e where e.message_sid = a.sid and e.message_status = a.status)`.execute(db)
  return rows
}
