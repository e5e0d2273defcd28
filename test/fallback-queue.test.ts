/**
 * The fallback's job queue (pg-boss) in Tidings' own PostgreSQL database.
 */
import { sql } from 'kysely'
import { PgBoss } from 'pg-boss'
import t, { type Test } from 'tap'
import type { DatabaseHandle } from '../src/db/connect.ts'
import { createJobQueue, enqueueFallback, FALLBACK_QUEUE, jobQueueConnectionOf, type FallbackJobData } from '../src/fallback/queue.ts'
import { createTestDatabase } from './helpers/database.ts'
import { waitFor } from './helpers/fallback.ts'

async function postgresDatabase (t: Test): Promise<DatabaseHandle> {
  return (await createTestDatabase(t)).handle
}

/** Starts pg-boss and collects every error it reports. */
async function startQueue (t: Test, boss: PgBoss): Promise<Error[]> {
  const errors: Error[] = []
  boss.on('error', (err) => { errors.push(err) })
  await boss.start()
  t.teardown(async () => { await boss.stop({ graceful: false, timeout: 2000 }) })
  return errors
}

t.test('job queue on PostgreSQL: schema created, jobs sent inside a Kysely transaction commit and roll back with it, workers get them, no errors', async (t) => {
  const handle = await postgresDatabase(t)
  const boss = createJobQueue(jobQueueConnectionOf(handle))
  const errors = await startQueue(t, boss)
  await boss.createQueue(FALLBACK_QUEUE)

  const committed = await handle.db.transaction().execute(async (trx) => await enqueueFallback(boss, trx, { fallbackId: '1' }))
  t.type(committed, 'string')
  await t.rejects(handle.db.transaction().execute(async (trx) => {
    await enqueueFallback(boss, trx, { fallbackId: '2' })
    throw new Error('roll back')
  }), { message: 'roll back' })

  const seen: string[] = []
  await boss.work<FallbackJobData>(FALLBACK_QUEUE, { pollingIntervalSeconds: 0.5 }, async ([job]) => { seen.push(job.data.fallbackId) })
  await waitFor(async () => seen.length > 0 ? true : undefined, 'the committed job')
  // Long enough for pg-boss's first claim cycle (it runs at start) and a few polls.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.same(seen, ['1'], 'the committed job ran once; the rolled-back one never existed')
  const schema = await sql<{ n: string }>`select count(*) as n from information_schema.tables where table_schema = 'pgboss'`.execute(handle.db)
  t.ok(Number(schema.rows[0].n) > 0, 'pg-boss tables exist in the same database')
  t.same(errors.map((e) => e.message), [], 'pg-boss reported no error (e.g. "bam claim returned no lock row")')
})
