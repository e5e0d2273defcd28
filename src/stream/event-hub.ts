/**
 * The event hub: one per process, it tails `message_events` in id order and fans new events out
 * to stream subscribers, gap-free and resumable by event id on any replica.
 *
 * It emits ids only up to the safe horizon of `message_events` (`./horizon.ts` says why a plain
 * `id > last` would skip ids whose transactions commit late). One query per wake-up serves every
 * subscriber.
 *
 * Wake-ups: a NOTIFY from the `message_events` trigger (PostgreSQL LISTEN), and a poll as a
 * safety net.
 */
import { sql, type Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.ts'
import { isDatabaseUnavailableError } from '../db/errors.ts'
import { Horizon } from './horizon.ts'
import { twilioErrorMeaning } from '../domain/twilio-error-codes.ts'

/** One event as streamed. */
export interface StreamEvent {
  id: string
  sid: string
  status: string
  channel: string
  error_code: string | null
  received_at: string
  source: string
  /** The message's current status when the event was read. */
  current_status: string | null
  /** Recipient (E.164 or e-mail address), from the event or else the message (added for the console). */
  to: string | null
  /** What `error_code` means, when Tidings knows it (added for the console). */
  error_meaning: string | null
}

export interface StreamFilter {
  channel?: string
  sid?: string
}

/** A subscriber receives batches in id order; `close` is called when the hub stops. */
export interface Subscriber {
  filter: StreamFilter
  deliver: (events: StreamEvent[]) => void
  close: () => void
}

export interface EventHubOptions {
  db: Kysely<Database>
  log: FastifyBaseLogger
  /** Subscribes to the database's `tidings_events` notifications; returns an unsubscribe. */
  listen?: (onNotify: () => void) => Promise<() => Promise<void>>
  /** Poll interval while idle, in ms. */
  pollIntervalMs?: number
  /** Poll interval while an id is waiting for its horizon, in ms. */
  busyPollIntervalMs?: number
}

/** Rows fetched per query while catching up or fanning out. */
const PAGE = 500
/** How long a catch-up read is retried while the database is unavailable, and how often, in ms. */
const CATCH_UP_RETRY_MS = 30_000
const CATCH_UP_RETRY_EVERY_MS = 1000

export function matches (filter: StreamFilter, e: StreamEvent): boolean {
  return (filter.channel === undefined || filter.channel === e.channel) && (filter.sid === undefined || filter.sid === e.sid)
}

/** Events with `after < id <= upTo`, in id order, at most `limit`. */
export async function readEvents (db: Kysely<Database>, after: bigint, upTo: bigint, limit: number, filter: StreamFilter = {}): Promise<StreamEvent[]> {
  let q = db.selectFrom('message_events as e')
    .innerJoin('messages as m', 'm.sid', 'e.message_sid')
    .select(['e.id', 'e.message_sid', 'e.message_status', 'e.channel', 'e.error_code', 'e.received_at', 'e.source', 'm.status'])
    .select(sql<string | null>`coalesce(e.to_address, m.to_address)`.as('to'))
    .where(sql<boolean>`e.id > ${after.toString()}::bigint and e.id <= ${upTo.toString()}::bigint`)
  if (filter.channel !== undefined) q = q.where('e.channel', '=', filter.channel as never)
  if (filter.sid !== undefined) q = q.where('e.message_sid', '=', filter.sid)
  const rows = await q.orderBy('e.id').limit(limit).execute()
  return rows.map((r) => ({
    id: String(r.id),
    sid: r.message_sid,
    status: r.message_status,
    channel: r.channel,
    error_code: r.error_code,
    received_at: r.received_at.toISOString(),
    source: r.source,
    current_status: r.status,
    to: r.to,
    error_meaning: twilioErrorMeaning(r.error_code)
  }))
}

export class EventHub {
  readonly #db: Kysely<Database>
  readonly #log: FastifyBaseLogger
  readonly #listen: EventHubOptions['listen']
  readonly #idleMs: number
  readonly #busyMs: number
  readonly #subscribers = new Set<Subscriber>()
  /** Highest id fanned out; `null` until the first horizon is known. */
  #emitted: bigint | null = null
  readonly #horizon = new Horizon('message_events')
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #again = false
  #stopped = false
  #unlisten: (() => Promise<void>) | undefined

  constructor (opts: EventHubOptions) {
    this.#db = opts.db
    this.#log = opts.log
    this.#listen = opts.listen
    this.#idleMs = opts.pollIntervalMs ?? 1000
    this.#busyMs = opts.busyPollIntervalMs ?? 50
  }

  async start (): Promise<void> {
    if (this.#listen !== undefined) {
      try {
        this.#unlisten = await this.#listen(() => this.wake())
      } catch (err) {
        this.#log.warn({ err }, 'stream: LISTEN failed; polling only')
      }
    }
    this.#schedule(this.#idleMs)
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    for (const s of this.#subscribers) s.close()
    this.#subscribers.clear()
    await this.#running
    await this.#unlisten?.()
  }

  /** Subscribers registered now (live or catching up). */
  get subscriberCount (): number { return this.#subscribers.size }

  /** The highest id fanned out so far (the live edge), once known. */
  get emitted (): bigint | null { return this.#emitted }

  /**
   * Adds a subscriber. With `lastEventId`, first replays every matching event after it up to the
   * live edge, holding live events back meanwhile so nothing is missed or repeated.
   *
   * Cleans up on every path: the subscriber is registered together with its removal, and removed
   * when `signal` aborts (the client left: catch-up stops at the next page), when catch-up fails
   * (the error is rethrown), and by the returned function.
   * @param signal - aborted when the subscriber is no longer wanted.
   * @returns a function that unregisters the subscriber (idempotent).
   * @throws the catch-up read's error, or an `AbortError` when `signal` aborted first; the
   *   subscriber is unregistered then.
   */
  async subscribe (sub: Subscriber, lastEventId?: bigint, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted()
    let cursor = lastEventId
    const held: StreamEvent[][] = []
    let catchingUp = cursor !== undefined
    const wrapped: Subscriber = {
      filter: sub.filter,
      close: sub.close,
      deliver: (events) => {
        if (catchingUp) { held.push(events); return }
        const fresh = cursor === undefined ? events : events.filter((e) => BigInt(e.id) > (cursor as bigint))
        if (fresh.length > 0) sub.deliver(fresh)
      }
    }
    const cancel = (): void => {
      this.#subscribers.delete(wrapped)
      held.length = 0
      signal?.removeEventListener('abort', cancel)
    }
    signal?.addEventListener('abort', cancel, { once: true })
    this.#subscribers.add(wrapped)
    this.wake()
    if (!catchingUp || cursor === undefined) return cancel
    // The live edge when catch-up began: later events are held back meanwhile.
    let edge = 0n
    try {
      while (this.#emitted === null && !this.#stopped) {
        signal?.throwIfAborted()
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      edge = this.#emitted ?? 0n
      while (cursor < edge) {
        signal?.throwIfAborted()
        if (!this.#subscribers.has(wrapped)) return cancel
        const from: bigint = cursor
        const page: StreamEvent[] = await this.#retryWhileUnavailable(async () => await readEvents(this.#db, from, edge, PAGE, sub.filter), () => this.#subscribers.has(wrapped) && signal?.aborted !== true)
        signal?.throwIfAborted()
        if (page.length === 0) break
        sub.deliver(page)
        cursor = BigInt(page[page.length - 1].id)
        if (page.length < PAGE) break
      }
    } catch (err) {
      cancel()
      throw err
    }
    cursor = cursor > edge ? cursor : edge
    catchingUp = false
    for (const batch of held.splice(0)) wrapped.deliver(batch)
    return cancel
  }

  /**
   * `read()`, again every second while the database is unavailable (a restart, a dropped
   * connection) and `wanted()` holds, for up to `CATCH_UP_RETRY_MS`: a catch-up resumes where it
   * was, so the client gets every event without reconnecting.
   */
  async #retryWhileUnavailable<T> (read: () => Promise<T>, wanted: () => boolean): Promise<T> {
    const started = Date.now()
    for (;;) {
      try {
        return await read()
      } catch (err) {
        if (!isDatabaseUnavailableError(err) || !wanted() || this.#stopped || Date.now() - started > CATCH_UP_RETRY_MS) throw err
        this.#log.warn({ err }, 'stream: catch-up read failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, CATCH_UP_RETRY_EVERY_MS))
      }
    }
  }

  /** Asks for a read soon (debounced by the running read). */
  wake (): void {
    if (this.#stopped) return
    if (this.#running !== undefined) { this.#again = true; return }
    clearTimeout(this.#timer)
    this.#running = this.#tick().finally(() => {
      this.#running = undefined
      if (this.#again) { this.#again = false; this.wake() } else this.#schedule(this.#horizon.waiting ? this.#busyMs : this.#idleMs)
    })
  }

  #schedule (ms: number): void {
    if (this.#stopped) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => this.wake(), ms)
    this.#timer.unref()
  }

  async #tick (): Promise<void> {
    if (this.#subscribers.size === 0) {
      // Nobody listens: forget the edge; the next subscriber starts from a fresh one.
      this.#emitted = null
      this.#horizon.reset()
      return
    }
    try {
      const horizon = await this.#horizon.advance(this.#db)
      if (horizon === null) return
      if (this.#emitted === null) { this.#emitted = horizon; return }
      while (this.#emitted < horizon) {
        const events = await readEvents(this.#db, this.#emitted, horizon, PAGE)
        this.#emitted = events.length < PAGE ? horizon : BigInt(events[events.length - 1].id)
        if (events.length === 0) break
        for (const s of this.#subscribers) {
          const mine = events.filter((e) => matches(s.filter, e))
          if (mine.length > 0) s.deliver(mine)
        }
      }
    } catch (err) {
      this.#log.warn({ err }, 'stream: reading events failed; will retry')
    }
  }
}
