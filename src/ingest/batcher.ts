/**
 * Group commit for webhooks: concurrent callbacks share one recording transaction.
 *
 * A callback's cost is dominated by its commit (one WAL flush), so one commit per callback caps a
 * database at its flush rate (docs/performance.md). With no batch in flight, an event is recorded
 * at once (a batch of one); with one in flight, events queue up and go together, up to `maxBatch`,
 * when it ends, or in a spare slot (up to `concurrency` in flight) once the batch in flight has run
 * `SPARE_SLOT_AFTER_MS`, as when it waits on a row lock. Low load therefore keeps single-event
 * latency, and high load gets large batches. Each caller's promise resolves only after its batch
 * committed, so acknowledging still means "saved". If a batch fails while the database is
 * reachable (one event the database refuses, a hook throwing, a deadlock or serialization failure),
 * its events are recorded again one per transaction, so one bad event never costs the others their
 * acknowledgement; if the database is unavailable, every event in it rejects at once, and each
 * caller answers 503 so the provider retries.
 */
import { isDatabaseUnavailableError, isTransientConflict } from '../db/errors.ts'
import type { IncomingEvent, RecordOutcome } from './record-events.ts'

export interface BatcherOptions {
  /** Records a batch in one transaction (`Recorder.record`). */
  run: (events: readonly IncomingEvent[]) => Promise<RecordOutcome[]>
  /** Most events in one transaction. 1 turns batching off. */
  maxBatch: number
  /** Most transactions in flight at once (keep below the pool size). */
  concurrency: number
}

interface Pending {
  event: IncomingEvent
  resolve: (outcome: RecordOutcome) => void
  reject: (err: unknown) => void
}

export class EventBatcher {
  readonly #opts: BatcherOptions
  readonly #queue: Pending[] = []
  #inFlight = 0
  /** When the youngest batch in flight started (`performance.now()`, ms). */
  #youngestStart = 0
  /** The timer that opens a spare slot, while one is armed. */
  #recheck: NodeJS.Timeout | undefined

  constructor (opts: BatcherOptions) {
    this.#opts = opts
  }

  /** Events waiting for a free slot (not yet in a transaction): the recorder's backlog. */
  get queued (): number { return this.#queue.length }

  /** Transactions in flight now. */
  get inFlight (): number { return this.#inFlight }

  /**
   * Records one event, possibly in one transaction with others.
   * @returns its outcome, once the transaction committed.
   * @throws the batch's error; nothing of the batch was committed then.
   */
  async record (event: IncomingEvent): Promise<RecordOutcome> {
    return await new Promise<RecordOutcome>((resolve, reject) => {
      this.#queue.push({ event, resolve, reject })
      this.#drain()
    })
  }

  #drain (): void {
    if (this.#queue.length === 0 || this.#inFlight >= this.#opts.concurrency) return
    // A spare slot opens only when the youngest batch in flight has run SPARE_SLOT_AFTER_MS: the
    // events queue behind it meanwhile and go together when it ends.
    if (this.#inFlight > 0 && this.#opts.maxBatch > 1) {
      const wait = this.#youngestStart + SPARE_SLOT_AFTER_MS - performance.now()
      if (wait > 0) {
        this.#recheck ??= setTimeout(() => {
          this.#recheck = undefined
          this.#drain()
        }, Math.ceil(wait)).unref() // the batch in flight keeps the process up
        return
      }
    }
    const batch = this.#queue.splice(0, this.#opts.maxBatch)
    this.#inFlight++
    this.#youngestStart = performance.now()
    this.#run(batch).finally(() => {
      this.#inFlight--
      this.#drain()
    })
    // More queued than one batch takes: the next batch may start as well (a spare slot: see above).
    if (this.#queue.length > 0) this.#drain()
  }

  async #run (batch: Pending[]): Promise<void> {
    try {
      if (batch.length === 1) {
        batch[0].resolve(await this.#runOne(batch[0].event))
        return
      }
      const outcomes = await this.#opts.run(batch.map((p) => p.event))
      batch.forEach((p, i) => p.resolve(outcomes[i]))
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailableError(err)) {
        for (const p of batch) p.reject(err)
        return
      }
      for (const p of batch) {
        try {
          p.resolve(await this.#runOne(p.event))
        } catch (single) {
          p.reject(single)
        }
      }
    }
  }

  /** One event in its own transaction; a lost race (deadlock, serialization failure) is tried again. */
  async #runOne (event: IncomingEvent): Promise<RecordOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        const [outcome] = await this.#opts.run([event])
        return outcome
      } catch (err) {
        if (attempt >= TRANSIENT_ATTEMPTS || !isTransientConflict(err)) throw err
      }
    }
  }
}

/** Attempts for one event whose transaction keeps losing races, before the caller answers 503. */
const TRANSIENT_ATTEMPTS = 3

/**
 * How long the youngest batch in flight must have run before another may start beside it, in ms
 * (with group commit on). A batch normally takes a few ms: one at a time, batches are larger and
 * the database does a third less work per callback (docs/performance.md). One that takes longer is
 * most likely waiting on a row lock (another replica's or an operator's transaction), and the
 * callbacks queued behind it then get a transaction of their own.
 */
export const SPARE_SLOT_AFTER_MS = 50
