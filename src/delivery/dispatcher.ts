/**
 * The dispatcher: turns committed fallback state changes and email engagement (the trigger-written
 * `webhook_outbox`) into deliveries. Each wake-up it computes the safe horizon of the change log
 * (`src/stream/horizon.ts`: below it every id is final, so reading up to it skips nothing that
 * commits late), then, page by page, fans out what lies between the durable cursor and the horizon
 * (`./fan-out.ts`). Every replica runs one; the cursor row, taken with `FOR UPDATE SKIP LOCKED` in
 * each page's transaction, lets only one of them work at a time.
 *
 * Nothing owed is lost: the cursor advances in the transaction that inserts the page's deliveries.
 * Nothing is sent for a rolled-back change: only committed rows are read. (Status changes need no
 * dispatcher: the recorder's hook writes their deliveries as it records them, `./on-recorded.ts`.)
 */
import type { FastifyBaseLogger } from 'fastify'
import { sql, type Kysely } from 'kysely'
import { Horizon } from '../stream/horizon.ts'
import { fanOutPage, lockCursor, skipTo } from './fan-out.ts'

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
  readonly #horizon = new Horizon('webhook_outbox')

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
    const waiting = this.#horizon.waiting
    this.#timer = setTimeout(() => this.wake(), waiting ? (this.#opts.busyPollIntervalMs ?? 20) : this.#opts.pollIntervalMs)
    this.#timer.unref()
  }

  async #pass (): Promise<void> {
    try {
      const horizon = await this.#horizon.advance(this.#opts.db)
      if (horizon !== null && await this.#drain(horizon) > 0) this.#opts.onDeliveries()
    } catch (err) {
      this.#opts.log.warn({ err, component: 'webhooks-out' }, 'webhook dispatcher pass failed; will retry')
    }
  }

  /** Fans out the change log up to `horizon`, a page per transaction; returns deliveries inserted. */
  async #drain (horizon: bigint): Promise<number> {
    let inserted = 0
    while (!this.#stopped) {
      const page = await this.#opts.db.transaction().execute(async (trx) => {
        const after = await lockCursor(trx, 'webhook_outbox')
        if (after === null || after >= horizon) return null
        const { rows } = await sql<{ n: boolean }>`select exists (select 1 from webhook_subscriptions where enabled) as n`.execute(trx)
        if (!rows[0].n) {
          await skipTo(trx, 'webhook_outbox', horizon)
          return null
        }
        return await fanOutPage(trx, after, horizon, PAGE)
      })
      if (page === null) break
      inserted += page.inserted
      if (page.lastId >= horizon) break
    }
    return inserted
  }
}
