/**
 * The fallback's job queue (pg-boss) on both backends Tidings runs on: PostgreSQL, and the
 * embedded PGlite default, where pg-boss shares the one connection through `fromPglite`.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { sql } from 'kysely'
import { PgBoss } from 'pg-boss'
import t, { type Test } from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase, type DatabaseHandle } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { createJobQueue, enqueueFallback, FALLBACK_QUEUE, jobQueueConnectionOf, type FallbackJobData } from '../src/fallback/queue.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { apiGet, postCallback, testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { startServer } from './helpers/process.ts'
import { fallbackEnv, messageRow, randomNumber, SMS_FROM, storeWhatsAppMessage, waitFor, waitForFallback, whatsappCallback } from './helpers/fallback.ts'

async function pgliteDatabase (t: Test): Promise<DatabaseHandle> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tidings-pglite-'))
  const handle = await openDatabase({ databaseUrl: undefined, dataDir: dir })
  t.teardown(async () => { await handle.close(); await rm(dir, { recursive: true, force: true }) })
  await migrateToLatest(handle.db)
  return handle
}

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

for (const [backend, open] of [['PostgreSQL', postgresDatabase], ['PGlite', pgliteDatabase]] as const) {
  t.test(`job queue on ${backend}: schema created, jobs sent inside a Kysely transaction commit and roll back with it, workers get them, no errors`, async (t) => {
    const handle = await open(t)
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
}

t.test('job queue on PGlite: a naive adapter that returns only the last statement\'s rows is what breaks pg-boss (control)', async (t) => {
  const handle = await pgliteDatabase(t)
  const pglite = handle.pglite
  if (pglite === undefined) throw new Error('expected PGlite')
  const boss = new PgBoss({
    schedule: false,
    backend: 'pglite',
    db: {
      executeSql: async (text: string, values?: unknown[]) => {
        if (values !== undefined && values.length > 0) return await pglite.query(text, values)
        const results = await pglite.exec(text)
        return { rows: results.at(-1)?.rows ?? [] }
      }
    }
  })
  const errors = await startQueue(t, boss)
  await waitFor(async () => errors.length > 0 ? true : undefined, 'a pg-boss error', 10_000)
  t.match(errors[0].message, /bam claim returned no lock row/)
})

t.test('POST /webhooks/twilio/status on the embedded PGlite default: a 63049 WhatsApp failure gets its one SMS', async (t) => {
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const handle = await pgliteDatabase(t)
  const app = await buildApp(loadConfig(fallbackEnv(fake.url)), { db: handle.db, jobQueue: jobQueueConnectionOf(handle) })
  t.teardown(async () => { await app.close() })
  await app.ready()

  const to = randomNumber()
  const sid = await storeWhatsAppMessage(handle.db, { to, body: 'Hello from PGlite' })
  const params = whatsappCallback(sid, 'failed', { to, errorCode: '63049' })
  const responses = await Promise.all(Array.from({ length: 5 }, async () => await postCallback(app, params)))
  t.same(responses.map((r) => r.statusCode), [200, 200, 200, 200, 200])
  const fallback = await waitForFallback(handle.db, sid, ['sent', 'failed', 'skipped'])
  t.equal(fallback.state, 'sent')
  t.match(fake.sent(), [{ to, from: SMS_FROM, body: 'Hello from PGlite' }])
  t.equal(fake.sent().length, 1)
  t.equal((await messageRow(handle.db, fallback.fallback_sid ?? ''))?.fallback_of, sid)
  t.match((await apiGet(app, `/v1/messages/${sid}`)).json(), { fallback: { state: 'sent', sid: fallback.fallback_sid, status: 'queued' } })
})

t.test('node src/server.ts on PGlite: the job queue starts with the server, stops on SIGTERM, and starts again on the same data', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'tidings-pglite-server-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const env = { ...testEnv({ LOG_LEVEL: 'info' }), DATA_DIR: dir }
  for (const run of ['first', 'second']) {
    const server = await startServer(env)
    const res = await fetch(`${server.address}/health`)
    t.equal(res.status, 200, `${run} start answers /health`)
    t.equal(await server.stop(), 0, `${run} run exits 0 on SIGTERM`)
    t.notOk(server.logs.some((l) => typeof l.level === 'number' && l.level >= 50), `${run} run logged no error`)
  }
})
