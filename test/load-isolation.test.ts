/**
 * Webhooks keep their database capacity while reads pile up (docs/reliability.md "Load held").
 * Before the read pool and the stats limit, 25 concurrent GET /v1/stats on a pool of 4 made signed
 * callbacks wait for a connection and answer 503 `database_unavailable`.
 */
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { apiGet, contractChecker, messageSid, postCallback, smsCallback, testEnv } from './helpers/app.ts'
import { createTestDatabaseUrl } from './helpers/database.ts'
import { seedMessages } from './helpers/seed.ts'

t.test('POST /webhooks/twilio/status is never 503 while 25 GET /v1/stats run at once on a pool of 4', async (t) => {
  const checkContract = contractChecker(t)
  const url = await createTestDatabaseUrl(t)
  const config = loadConfig(testEnv({ DATABASE_URL: url, DATABASE_POOL_MAX: '4' }))
  const handle = await openDatabase({ databaseUrl: url, poolMax: 4, readPoolMax: config.resilience.databaseReadPoolMax })
  t.teardown(async () => { await handle.close() })
  await migrateToLatest(handle.db)
  await seedMessages(url, 100_000)
  const app = await buildApp(config, { db: handle.db, readDb: handle.readDb, poolStats: handle.poolStats, readPoolStats: handle.readPoolStats })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  await app.ready()

  // 25 clients asking for stats again and again for 5 s.
  const state = { statsRunning: true }
  const until = Date.now() + 5000
  const statsAnswers: Array<number | string> = []
  const stats = Promise.all(Array.from({ length: 25 }, async () => {
    while (Date.now() < until) {
      const res = await apiGet(app, '/v1/stats')
      statsAnswers.push(res.statusCode === 200 ? 200 : `${res.statusCode} ${res.json().code as string}`)
      // As a dashboard would, after a refusal.
      if (res.statusCode !== 200) await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })).finally(() => { state.statsRunning = false })
  const callbacks: number[] = []
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (state.statsRunning || callbacks.length < 20) {
      const sid = messageSid()
      callbacks.push((await postCallback(app, smsCallback(sid, 'delivered'))).statusCode)
    }
  }))
  await stats
  t.ok(callbacks.length >= 20)
  t.same(callbacks.filter((c) => c !== 200), [], `all ${callbacks.length} callbacks acknowledged`)
  t.ok(statsAnswers.every((a) => a === 200 || a === '503 overloaded' || a === '503 database_unavailable'), 'stats answer 200, or 503 (overloaded when too many wait), never 500')
  t.ok(statsAnswers.includes('503 overloaded'), 'stats beyond the limit are refused by Tidings itself')
  t.ok(statsAnswers.includes(200), 'some stats are served')
  t.comment(`stats answers: ${JSON.stringify(statsAnswers.reduce<Record<string, number>>((c, a) => { c[a] = (c[a] ?? 0) + 1; return c }, {}))}`)
})
