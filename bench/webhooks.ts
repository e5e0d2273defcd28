/**
 * Benchmark: autocannon against the real server (`node src/server.ts`, a child process) and a
 * real PostgreSQL database. Run: `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
 * node bench/webhooks.ts [seconds]`. Prints throughput, latency percentiles and the server's RSS;
 * results go to docs/performance.md by hand (the load generator shares the machine's cores, so
 * compare ratios and medians, not absolute numbers).
 *
 * Scenarios:
 * 1. `new`: every request a new, signed status callback (a new message: upsert + event + update).
 * 2. `progress`: callbacks advancing existing messages (sent → delivered of messages from 1).
 * 3. `duplicate`: the same signed callback again and again (Twilio retries).
 * 4. `read`: GET /v1/messages/:sid for recorded messages.
 */
import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import autocannon from 'autocannon'
import pg from 'pg'
import twilio from 'twilio'
import { startServer } from '../test/helpers/process.ts'

const seconds = Number(process.argv[2] ?? 10)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const ACCOUNT_SID = 'AC' + 'f'.repeat(32)
const TOKEN = 'bench_token_' + randomBytes(8).toString('hex')
const API_KEY = 'k_bench_' + randomBytes(12).toString('hex')
const PUBLIC = 'https://hooks.example.com'
const PATH = '/webhooks/twilio/status'

const dbName = `tidings_bench_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`

const server = await startServer({
  DATABASE_URL: url.toString(),
  PUBLIC_BASE_URL: PUBLIC,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: TOKEN,
  API_KEYS: `bench:${API_KEY}`,
  LOG_LEVEL: 'warn',
  DATABASE_POOL_MAX: process.env.BENCH_POOL ?? '20',
  RATE_LIMIT_PER_MINUTE: '100000000',
  WEBHOOK_BATCH_MAX: process.env.WEBHOOK_BATCH_MAX
})
const pid = server.child.pid as number
const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024

const sids: string[] = []
function callback (sid: string, status: string): { body: string, headers: Record<string, string> } {
  const params = { MessageSid: sid, SmsSid: sid, MessageStatus: status, SmsStatus: status, AccountSid: ACCOUNT_SID, From: '+14155550100', To: '+15558675310', ApiVersion: '2010-04-01' }
  return {
    body: new URLSearchParams(params).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(TOKEN, PUBLIC + PATH, params) }
  }
}

interface Row { scenario: string, rps: number, p50: number, p90: number, p99: number, non2xx: number, errors: number, rss: number, codes: string }
const rows: Row[] = []

async function run (scenario: string, opts: Partial<autocannon.Options>): Promise<void> {
  const result = await autocannon({ url: server.address, connections, duration: seconds, ...opts } as autocannon.Options)
  rows.push({
    scenario,
    rps: Math.round(result.requests.average),
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    rss: Math.round(rssMiB()),
    codes: Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => `${code}×${count}`).join(' ')
  })
}

const rssStart = rssMiB()
await run('new message callback', {
  requests: [{
    method: 'POST',
    path: PATH,
    setupRequest: (req) => {
      const sid = 'SM' + randomBytes(16).toString('hex')
      sids.push(sid)
      return { ...req, ...callback(sid, 'sent') }
    }
  }]
})
let next = 0
await run('status advance (sent→delivered)', {
  requests: [{ method: 'POST', path: PATH, setupRequest: (req) => ({ ...req, ...callback(sids[next++ % sids.length], 'delivered') }) }]
})
const dup = callback(sids[0], 'delivered')
await run('duplicate callback', { requests: [{ method: 'POST', path: PATH, ...dup }] })
let r = 0
await run('GET /v1/messages/:sid', {
  requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `/v1/messages/${sids[r++ % sids.length]}`, headers: { authorization: `Bearer ${API_KEY}` } }) }]
})

const check = new pg.Client({ connectionString: url.toString() })
await check.connect()
const counts = (await check.query('select (select count(*) from messages) as messages, (select count(*) from message_events) as events')).rows[0]
await check.end()
await server.stop()
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`)
await admin.end()

console.log(`\n${connections} connections, ${seconds} s per scenario, node ${process.version}; server RSS at start ${Math.round(rssStart)} MiB`)
console.log('| scenario | req/s | p50 ms | p90 ms | p99 ms | non-2xx | errors | server RSS MiB | status codes |')
console.log('|---|---|---|---|---|---|---|---|---|')
for (const x of rows) console.log(`| ${x.scenario} | ${x.rps} | ${x.p50} | ${x.p90} | ${x.p99} | ${x.non2xx} | ${x.errors} | ${x.rss} | ${x.codes} |`)
console.log(`\nrecorded: ${counts.messages} messages, ${counts.events} events (acknowledged new callbacks: ${sids.length} sent)`)
