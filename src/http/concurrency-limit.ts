/**
 * A limit on concurrent heavy reads (`GET /v1/stats`): a few run, the next ones wait briefly in
 * arrival order, and the rest are refused at once with 503 `overloaded` and `Retry-After`, so that
 * a burst of dashboards queues in the process instead of on the database's connections.
 * (p-limit and friends queue without bound and cannot refuse; this is the part they lack.)
 */
import { AppError } from '../errors.ts'

export interface ConcurrencyLimitOptions {
  /** Most tasks running at once. */
  max: number
  /** How long a task may wait for its turn before it is refused, in ms. */
  maxWaitMs: number
  /** Most tasks waiting; more are refused without waiting. Default `4 * max`. */
  maxQueue?: number
  /** Names what is limited in the refusal's message, e.g. "statistics requests". */
  what: string
}

interface Waiter { start: () => void, timer: NodeJS.Timeout }

export class ConcurrencyLimit {
  readonly #opts: Required<ConcurrencyLimitOptions>
  readonly #queue: Waiter[] = []
  #running = 0
  /** Tasks refused so far (waited too long or the queue was full). */
  refused = 0

  constructor (opts: ConcurrencyLimitOptions) {
    this.#opts = { maxQueue: 4 * opts.max, ...opts }
  }

  /** Tasks running now. */
  get running (): number { return this.#running }
  /** Tasks waiting now. */
  get waiting (): number { return this.#queue.length }

  /**
   * Runs `task` when a slot is free.
   * @throws AppError `overloaded` (503, Retry-After 1 s) when no slot frees within `maxWaitMs` or
   *   the queue is full; `task`'s own error otherwise.
   */
  async run<T> (task: () => Promise<T>): Promise<T> {
    // A freed slot is handed to the first waiter as it is, so a newcomer cannot take it meanwhile.
    if (this.#running >= this.#opts.max) await this.#wait()
    else this.#running++
    try {
      return await task()
    } finally {
      const next = this.#queue.shift()
      if (next !== undefined) next.start()
      else this.#running--
    }
  }

  async #wait (): Promise<void> {
    if (this.#queue.length >= this.#opts.maxQueue || this.#opts.maxWaitMs === 0) throw this.#refuse()
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => { clearTimeout(waiter.timer); resolve() },
        timer: setTimeout(() => {
          const i = this.#queue.indexOf(waiter)
          if (i !== -1) this.#queue.splice(i, 1)
          reject(this.#refuse())
        }, this.#opts.maxWaitMs)
      }
      this.#queue.push(waiter)
    })
  }

  #refuse (): AppError {
    this.refused++
    return new AppError('overloaded', `Too many ${this.#opts.what} in progress; retry in a second`, { retryAfterS: 1 })
  }
}
