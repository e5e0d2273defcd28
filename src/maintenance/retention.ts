/**
 * Retention: deletes status events and email engagement older than `RETENTION_DAYS`.
 *
 * Message rows are never deleted: they keep their current status, error and timestamps, so
 * `GET /v1/messages/:sid` still answers; only the timeline and engagement entries go. Each statement
 * deletes at most `batchSize` rows picked by the `received_at` index, then the loop pauses, so no
 * transaction holds many row locks or runs long enough to slow a webhook. Finished pg-boss jobs are
 * pg-boss's own business: the queues are created with `deleteAfterSeconds` no longer than retention
 * (`./scheduler.ts`, `src/fallback/service.ts`) and pg-boss's supervisor deletes them.
 */
import { sql, type Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import type { Metrics } from '../metrics.ts'
import { deleteFinishedDeliveries } from '../delivery/retention.ts'

/** The tables retention deletes from, each by its `received_at`. */
export const RETENTION_TABLES = ['message_events', 'email_engagements'] as const
export type RetentionTable = typeof RETENTION_TABLES[number]

export interface RetentionOptions {
  days: number
  /** Rows per DELETE (default 1000). */
  batchSize?: number
  /** Pause between two DELETEs, in ms (default 50). */
  pauseMs?: number
  metrics?: Pick<Metrics, 'retentionDeleted'>
  /** Stops between batches when it returns true (the app is closing). */
  shouldStop?: () => boolean
}

/** Deletes what is older than `days` days; resolves with the rows deleted per table. */
export async function runRetention (db: Kysely<Database>, opts: RetentionOptions): Promise<Record<RetentionTable, number>> {
  const deleted: Record<RetentionTable, number> = { message_events: 0, email_engagements: 0 }
  if (opts.days <= 0) return deleted
  const batchSize = opts.batchSize ?? 1000
  const cutoff = new Date(Date.now() - opts.days * 24 * 3600_000)
  for (const table of RETENTION_TABLES) {
    for (;;) {
      if (opts.shouldStop?.() === true) return deleted
      // `id in (… limit n)`: Postgres has no DELETE … LIMIT; the subselect walks the received_at index.
      const result = await sql`
        delete from ${sql.table(table)} where id in (
          select id from ${sql.table(table)} where received_at < ${cutoff} limit ${batchSize}
        )`.execute(db)
      const n = Number(result.numAffectedRows ?? 0n)
      deleted[table] += n
      if (n > 0) opts.metrics?.retentionDeleted.inc({ table }, n)
      if (n < batchSize) break
      await new Promise((resolve) => setTimeout(resolve, opts.pauseMs ?? 50))
    }
  }
  // Outbound webhooks: finished deliveries by age, and the change log the dispatcher has read.
  await deleteFinishedDeliveries(db, cutoff, { ...opts, batchSize })
  return deleted
}
