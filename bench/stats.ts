/**
 * Benchmark: `GET /v1/stats`'s queries (`computeStats`) on 1,000,000 messages in a fresh
 * PostgreSQL database. Run: `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
 * node bench/stats.ts [messages]`. Seeds with one INSERT … SELECT generate_series (30 days of
 * SMS, WhatsApp and email with realistic statuses, error codes, delivery times and fallbacks),
 * ANALYZEs, then prints the median of 5 runs for the whole range and for a 1-day window (after one
 * warm-up run each). Numbers go to docs/performance.md by hand.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { computeStats, type StatsFilter } from '../src/db/stats.ts'

const count = Number(process.argv[2] ?? 1_000_000)
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const dbName = `tidings_bench_stats_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`
const handle = await openDatabase({ databaseUrl: url.toString(), statementTimeoutMs: 600_000 })
const END = '2026-11-24T00:00:00Z'

try {
  await migrateToLatest(handle.db)
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  let started = performance.now()
  // i % 10: 0–5 SMS, 6–8 WhatsApp, 9 email. r: a per-row pseudo-random number in [0, 1).
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
          timestamptz '${END}' - (i::float8 / $1 * 30) * interval '1 day' as created
        from generate_series(1, $1::int) as i
      ) g
    ) m`, [count])
  // Fallbacks for a third of the WhatsApp failures.
  await client.query(`
    insert into fallbacks (original_sid, state, reason, trigger_error_code)
    select sid, case when n % 4 = 0 then 'skipped' when n % 10 = 1 then 'failed' else 'sent' end,
      case when n % 4 = 0 then 'recipient_limit' when n % 10 = 1 then 'twilio_error' end, error_code
    from (select sid, error_code, row_number() over () as n from messages where channel = 'whatsapp' and status = 'failed') f
    where n % 3 = 0`)
  await client.query('analyze messages; analyze fallbacks')
  const seeded = (await client.query<{ n: string }>('select count(*) as n from messages')).rows[0].n
  console.log(`seeded ${seeded} messages in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  started = performance.now()
  await client.end()

  const time = async (label: string, filter: StatsFilter): Promise<void> => {
    await computeStats(handle.db, filter)
    const runs: number[] = []
    let total = 0
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      total = (await computeStats(handle.db, filter)).total
      runs.push(performance.now() - t0)
    }
    runs.sort((a, b) => a - b)
    console.log(`${label}: ${total} messages, median ${runs[2].toFixed(0)} ms (runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`)
  }
  await time('whole range', {})
  await time('whole range, whatsapp', { channel: 'whatsapp' })
  await time('1-day window', { since: new Date(Date.parse(END) - 86_400_000 * 10), until: new Date(Date.parse(END) - 86_400_000 * 9) })
  await time('1-day window, whatsapp', { since: new Date(Date.parse(END) - 86_400_000 * 10), until: new Date(Date.parse(END) - 86_400_000 * 9), channel: 'whatsapp' })
} finally {
  await handle.close()
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  await admin.end()
}
