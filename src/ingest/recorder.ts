/**
 * The one recorder of the app. `buildApp` creates it once with every recording hook combined (the
 * WhatsApp → SMS fallback, outbound webhooks) and hands it to every path that records
 * events: the Twilio and Resend webhooks, reconciliation, `POST /v1/messages`, the fallback
 * worker. A path can therefore not forget a hook, and a new hook reaches every path.
 *
 * It also holds the one rule that turns a recording failure into an answer (`recordingFailure`).
 */
import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../db/database.ts'
import { isDatabaseUnavailableError, isTransientConflict, isValueRefused } from '../db/errors.ts'
import { AppError, databaseUnavailable } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { EventBatcher } from './batcher.ts'
import { combineHooks, recordEvents, type IncomingEvent, type RecordedEvent, type RecordHooks, type RecordOutcome } from './record-events.ts'

export interface RecorderOptions {
  db: Kysely<Database>
  /** Counts recorded events by channel and status. */
  metrics?: Pick<Metrics, 'events'>
  /** Group commit (`EventBatcher`): most events in one transaction (1 turns it off). */
  maxBatch: number
  /** Group commit: most transactions in flight at once (keep below the pool size). */
  concurrency: number
}

export interface RecordOptions {
  /**
   * Runs inside the transaction before the shared hooks, with the new events; returns the events
   * the shared hooks should see (e.g. the message as the caller just completed it).
   */
  prepare?: (trx: Transaction<Database>, recorded: readonly RecordedEvent[]) => Promise<readonly RecordedEvent[]>
  /** Runs inside the transaction after the shared hooks (e.g. completing an idempotency record last). */
  finish?: (trx: Transaction<Database>, recorded: readonly RecordedEvent[]) => Promise<void>
}

export interface Recorder {
  /**
   * Records `events` in one transaction with every hook; one outcome per event, in input order.
   * @throws the database's (or a hook's) error; nothing was committed. `recordingFailure` maps it.
   */
  record: (events: readonly IncomingEvent[], options?: RecordOptions) => Promise<RecordOutcome[]>
  /**
   * Records one event in a transaction shared with concurrent callers (group commit); resolves
   * once that transaction committed.
   */
  recordGrouped: (event: IncomingEvent) => Promise<RecordOutcome>
  /** Adds a hook; call before the app serves traffic. Hooks run in the order they were added. */
  use: (hooks: RecordHooks) => void
  /** The group-commit queue, for load shedding and metrics. */
  readonly batcher: EventBatcher
}

/** Creates the app's recorder (no hooks yet: `use` adds them). */
export function createRecorder (opts: RecorderOptions): Recorder {
  let hooks: RecordHooks = {}
  const run = async (events: readonly IncomingEvent[], options?: RecordOptions): Promise<RecordOutcome[]> => {
    const { prepare, finish } = options ?? {}
    const shared = hooks
    const effective: RecordHooks = prepare === undefined && finish === undefined
      ? shared
      : {
          onRecorded: async (trx, recorded) => {
            const prepared = prepare === undefined ? recorded : await prepare(trx, recorded)
            await shared.onRecorded?.(trx, prepared)
            await finish?.(trx, recorded)
          }
        }
    const outcomes = await recordEvents(opts.db, events, effective)
    if (opts.metrics !== undefined) {
      outcomes.forEach((o, i) => {
        if (o.outcome === 'recorded') opts.metrics?.events.inc({ channel: events[i].channel, status: o.status })
      })
    }
    return outcomes
  }
  const batcher = new EventBatcher({ run: async (events) => await run(events), maxBatch: opts.maxBatch, concurrency: opts.concurrency })
  return {
    record: run,
    recordGrouped: async (event) => await batcher.record(event),
    use: (more) => { hooks = combineHooks(hooks, more) },
    batcher
  }
}

/**
 * The answer for a failed recording, the same on every route:
 * - the database unavailable, or a transient conflict (deadlock, serialization failure): 503
 *   `database_unavailable` with `Retry-After`: a retry will succeed;
 * - a value the database refuses (SQLSTATE class 22, e.g. an untranslatable character): 400
 *   `invalid_payload` naming the problem, so the provider stops retrying what can never be stored;
 * - anything else is a bug: returned as is, and the error handler answers 500 and logs it.
 */
export function recordingFailure (err: unknown): unknown {
  if (err instanceof AppError) return err
  if (isDatabaseUnavailableError(err) || isTransientConflict(err)) return databaseUnavailable(err)
  if (isValueRefused(err)) {
    return new AppError('invalid_payload', `The database cannot store a value of this event (${(err as Error).message}); fix the value and send it again`, { cause: err })
  }
  return err
}
