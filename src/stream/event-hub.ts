/**
 * The event hub: one per process, it tails `message_events` in id order and fans new events out
 * to stream subscribers, gap-free and resumable by event id on any replica.
 *
 * Why a "safe horizon": ids are taken from a sequence when a row is inserted, but transactions
 * commit in any order, so a reader that simply asks for `id > last` can pass over an id whose
 * transaction commits later. The hub emits ids only up to a horizon below which every id is final:
 * it reads the sequence's last value L, then takes a fresh transaction id X of its own
 * (`pg_current_xact_id()`). Every transaction that took an id <= L took its xid earlier (with its
 * first write, the message upsert), so its xid is < X; once the oldest running xid is >= X
 * (`pg_snapshot_xmin(pg_current_snapshot()) >= X`), every id <= L is committed or never will be.
 * (A snapshot's xmax is not enough: it is "latest completed + 1", and a running transaction can
 * hold a higher xid.) One query per wake-up serves every subscriber.
 *
 * Wake-ups: a NOTIFY from the `message_events` trigger (PostgreSQL LISTEN, or PGlite's own
 * notifications), and a poll as a safety net.
 */
import { sql, type Kysely } from 'kysely'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.ts'
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
  /** Candidate horizons waiting for the transactions of their snapshot to end. */
  #pending: Array<{ lastId: bigint, xid: bigint }> = []
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

  /** The highest id fanned out so far (the live edge), once known. */
  get emitted (): bigint | null { return this.#emitted }

  /**
   * Adds a subscriber. With `lastEventId`, first replays every matching event after it up to the
   * live edge, holding live events back meanwhile so nothing is missed or repeated.
   */
  async subscribe (sub: Subscriber, lastEventId?: bigint): Promise<() => void> {
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
    this.#subscribers.add(wrapped)
    this.wake()
    if (catchingUp && cursor !== undefined) {
      while (this.#emitted === null && !this.#stopped) await new Promise((resolve) => setTimeout(resolve, 10))
      const edge = this.#emitted ?? 0n
      while (cursor < edge && this.#subscribers.has(wrapped)) {
        const page = await readEvents(this.#db, cursor, edge, PAGE, sub.filter)
        if (page.length === 0) break
        sub.deliver(page)
        cursor = BigInt(page[page.length - 1].id)
        if (page.length < PAGE) break
      }
      cursor = cursor > edge ? cursor : edge
      catchingUp = false
      for (const batch of held.splice(0)) wrapped.deliver(batch)
    }
    return () => { this.#subscribers.delete(wrapped) }
  }

  /** Asks for a read soon (debounced by the running read). */
  wake (): void {
    if (this.#stopped) return
    if (this.#running !== undefined) { this.#again = true; return }
    clearTimeout(this.#timer)
    this.#running = this.#tick().finally(() => {
      this.#running = undefined
      if (this.#again) { this.#again = false; this.wake() } else this.#schedule(this.#pending.length > 0 ? this.#busyMs : this.#idleMs)
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
      this.#pending = []
      return
    }
    try {
      const horizon = await this.#advanceHorizon()
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

  /** Records a candidate horizon and returns the highest one now safe, or null. */
  async #advanceHorizon (): Promise<bigint | null> {
    // First the sequence, then our own xid: see the module comment for why the order matters.
    const seq = await sql<{ last: string | null }>`
      select pg_sequence_last_value(pg_get_serial_sequence('message_events', 'id')::regclass)::text as last`.execute(this.#db)
    const now = await sql<{ xid: string, xmin: string }>`
      select pg_current_xact_id()::text as xid, pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(this.#db)
    const lastId = BigInt(seq.rows[0]?.last ?? '0')
    const xid = BigInt(now.rows[0].xid)
    const xmin = BigInt(now.rows[0].xmin)
    const newest = this.#pending.at(-1)
    if (newest === undefined || newest.lastId !== lastId) this.#pending.push({ lastId, xid })
    let safe: bigint | null = null
    while (this.#pending.length > 0 && this.#pending[0].xid <= xmin) {
      safe = this.#pending.shift()?.lastId ?? safe
    }
    return safe
  }
}
