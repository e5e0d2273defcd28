/**
 * The dispatcher: turns committed changes into deliveries. Each wake-up it computes the safe
 * horizon of both sources (`src/stream/horizon.ts`: below it every id is final, so reading up to it
 * skips nothing that commits late), then, page by page, fans out what lies between the durable
 * cursor and the horizon (`./fan-out.ts`). Every replica runs one; the cursor row, taken with
 * `FOR UPDATE SKIP LOCKED` in each page's transaction, lets only one of them work at a time.
 *
 * Nothing owed is lost: the cursor advances in the transaction that inserts the page's deliveries.
 * Nothing is sent for a rolled-back event: only committed rows are read. Recording pays nothing
 * extra: the dispatcher reads after the fact, outside the recording transaction.
 */
import type { FastifyBaseLogger } from 'fastify'
import { sql, type Kysely } from 'kysely'
import { Horizon } from '../stream/horizon.ts'
import { fanOutPage, lockCursor, skipTo, type CursorName } from './fan-out.ts'

/** Changes read per page (one transaction each). */
const PAGE = 1000

export interface DispatcherOptions {
  db: Kysely<any>
  log: FastifyBaseLogger
  /** Idle poll, in ms (a NOTIFY or an in-process wake-up usually comes first). */
  pollIntervalMs: number
  /** Poll while a horizon candidate waits for older transactions, in ms. */
  busyPollIntervalMs?: number
  /** Called after deliveries were inserted (wakes the sender). */
  onDeliveries: () => void
}

export class Dispatcher {
  readonly #opts: DispatcherOptions
  readonly #horizons: Record<CursorName, Horizon> = {
    message_events: new Horizon('message_events'),
    webhook_outbox: new Horizon('webhook_outbox')
  }

  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #again = false
  #stopped = true

  constructor (opts: DispatcherOptions) {
    this.#opts = opts
  }

  start (): void {
    this.#stopped = false
    this.wake()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#running
  }

  /** Asks for a pass soon (debounced by the running pass). */
  wake (): void {
    if (this.#stopped) return
    if (this.#running !== undefined) { this.#again = true; return }
    clearTimeout(this.#timer)
    this.#running = this.#pass().finally(() => {
      this.#running = undefined
      if (this.#again) { this.#again = false; this.wake() } else this.#schedule()
    })
  }

  #schedule (): void {
    if (this.#stopped) return
    const waiting = this.#horizons.message_events.waiting || this.#horizons.webhook_outbox.waiting
    this.#timer = setTimeout(() => this.wake(), waiting ? (this.#opts.busyPollIntervalMs ?? 20) : this.#opts.pollIntervalMs)
    this.#timer.unref()
  }

  async #pass (): Promise<void> {
    try {
      let inserted = 0
      for (const name of ['message_events', 'webhook_outbox'] as const) {
        const horizon = await this.#horizons[name].advance(this.#opts.db)
        if (horizon !== null) inserted += await this.#drain(name, horizon)
      }
      if (inserted > 0) this.#opts.onDeliveries()
    } catch (err) {
      this.#opts.log.warn({ err, component: 'webhooks-out' }, 'webhook dispatcher pass failed; will retry')
    }
  }

  /** Fans out everything of `name` up to `horizon`, a page per transaction; returns deliveries inserted. */
  async #drain (name: CursorName, horizon: bigint): Promise<number> {
    let inserted = 0
    while (!this.#stopped) {
      const page = await this.#opts.db.transaction().execute(async (trx) => {
        const after = await lockCursor(trx, name)
        if (after === null || after >= horizon) return null
        const { rows } = await sql<{ n: boolean }>`select exists (select 1 from webhook_subscriptions where enabled) as n`.execute(trx)
        if (!rows[0].n) {
          await skipTo(trx, name, horizon)
          return null
        }
        return await fanOutPage(trx, name, after, horizon, PAGE)
      })
      if (page === null) break
      inserted += page.inserted
      if (page.lastId >= horizon) break
    }
    return inserted
  }
}
