/**
 * Benchmark: do reads take the webhooks' database capacity? A real Tidings process on a fresh
 * database seeded with N messages (default 1,000,000, one INSERT … SELECT generate_series), signed
 * Twilio callbacks from 8 loops, first alone, then while 50 more loops scrape (25 `GET /v1/stats`,
 * 25 `GET /metrics`) as fast as they are answered. Prints webhook p50/p99 and how many callbacks
 * were refused (503) in each phase, and what the readers got.
 *
 * Run, with one or more server entries on the same seeded database (before = another tree's server,
 * e.g. main's; after = this tree's, the default):
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node bench/isolation.ts [messages] [seconds] [server entry …]
 *   … node bench/isolation.ts 1000000 15 /work/main/src/server.ts src/server.ts
 * Figures go to docs/reliability.md by hand.
 */
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import pg from 'pg'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL, messageSid, postSigned, smsCallback } from '../test/helpers/app.ts'
import { SERVER_ENTRY, startServer } from '../test/helpers/process.ts'
import { seedMessages } from '../test/helpers/seed.ts'

const count = Number(process.argv[2] ?? 1_000_000)
const seconds = Number(process.argv[3] ?? 20)
const entries = process.argv.length > 4 ? process.argv.slice(4).map((e) => path.resolve(e)) : [SERVER_ENTRY]
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const poolMax = process.env.DATABASE_POOL_MAX ?? '10'
const dbName = `tidings_bench_isolation_${randomBytes(4).toString('hex')}`

const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

async function webhooks (address: string, ms: number): Promise<{ n: number, p50: number, p99: number, max: number, refused: number, failed: number }> {
  const until = Date.now() + ms
  const times: number[] = []
  let refused = 0
  let failed = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (Date.now() < until) {
      const t0 = performance.now()
      const code = await postSigned(address, smsCallback(messageSid(), 'delivered'))
      times.push(performance.now() - t0)
      if (code === 503) refused++
      else if (code !== 200) failed++
    }
  }))
  times.sort((a, b) => a - b)
  const r = (x: number): number => Math.round(x * 10) / 10
  return { n: times.length, p50: r(percentile(times, 0.5)), p99: r(percentile(times, 0.99)), max: r(times.at(-1) ?? NaN), refused, failed }
}

async function readers (address: string, ms: number): Promise<Record<string, number>> {
  const until = Date.now() + ms
  const answers: Record<string, number> = {}
  const loop = async (path: string, headers: Record<string, string>): Promise<void> => {
    while (Date.now() < until) {
      const status = await fetch(`${address}${path}`, { headers }).then(async (r) => { await r.arrayBuffer(); return r.status }, () => 0)
      const key = `${path} ${status}`
      answers[key] = (answers[key] ?? 0) + 1
    }
  }
  await Promise.all([
    ...Array.from({ length: 25 }, async () => { await loop('/v1/stats', { authorization: `Bearer ${API_KEY}` }) }),
    ...Array.from({ length: 25 }, async () => { await loop('/metrics', {}) })
  ])
  return answers
}

let server: Awaited<ReturnType<typeof startServer>> | undefined
try {
  const handle = await openDatabase({ databaseUrl: url.toString() })
  await migrateToLatest(handle.db)
  await handle.close()
  const started = performance.now()
  await seedMessages(url.toString(), count)
  console.log(`seeded ${count} messages in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  for (const entry of entries) {
    server = await startServer({
      DATABASE_URL: url.toString(),
      DATABASE_POOL_MAX: poolMax,
      MIGRATE_ON_START: 'false',
      PUBLIC_BASE_URL,
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      API_KEYS: `bench:${API_KEY}`,
      RATE_LIMIT_PER_MINUTE: '1000000',
      LOG_LEVEL: 'warn'
    }, 120_000, entry)
    // Warm-up.
    await webhooks(server.address, 2000)
    const alone = await webhooks(server.address, seconds * 1000)
    const [loaded, readAnswers] = await Promise.all([webhooks(server.address, seconds * 1000), readers(server.address, seconds * 1000)])
    console.log(JSON.stringify({ entry, messages: count, seconds, poolMax, webhooksAlone: alone, webhooksWithReaders: loaded, readers: readAnswers }, null, 2))
    await server.stop()
    server = undefined
  }
} finally {
  await server?.stop()
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  await admin.end()
}
