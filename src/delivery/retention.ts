/**
 * Retention of outbound webhooks: finished deliveries (delivered or failed) older than the cutoff,
 * and the change-log rows the dispatcher has read (below its `webhook_outbox` cursor). Pending
 * deliveries are owed and stay. Batches like `src/maintenance/retention.ts`.
 */
import { sql, type Kysely } from 'kysely'
import type { Metrics } from '../metrics.ts'

/** Deletes in batches of `batchSize`; resolves with the rows deleted per table. */
export async function deleteFinishedDeliveries (db: Kysely<any>, cutoff: Date, opts: { batchSize?: number, pauseMs?: number, metrics?: Pick<Metrics, 'retentionDeleted'>, shouldStop?: () => boolean }): Promise<{ webhook_deliveries: number, webhook_outbox: number }> {
  const batchSize = opts.batchSize ?? 1000
  const deleted = { webhook_deliveries: 0, webhook_outbox: 0 }
  const statements = {
    webhook_deliveries: sql`delete from webhook_deliveries where id in (
      select id from webhook_deliveries where state <> 'pending' and created_at < ${cutoff} limit ${batchSize})`,
    webhook_outbox: sql`delete from webhook_outbox where id in (
      select id from webhook_outbox where id <= (select last_id from webhook_cursors where name = 'webhook_outbox') order by id limit ${batchSize})`
  }
  for (const table of ['webhook_deliveries', 'webhook_outbox'] as const) {
    for (;;) {
      if (opts.shouldStop?.() === true) return deleted
      const n = Number((await statements[table].execute(db)).numAffectedRows ?? 0n)
      deleted[table] += n
      if (n > 0) opts.metrics?.retentionDeleted.inc({ table }, n)
      if (n < batchSize) break
      await new Promise((resolve) => setTimeout(resolve, opts.pauseMs ?? 50))
    }
  }
  return deleted
}
