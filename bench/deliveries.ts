/**
 * Benchmark of outbound status webhooks against the real server (`node src/server.ts`, a child
 * process), a real PostgreSQL database and a fast receiver on loopback. Run:
 * `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node bench/deliveries.ts [seconds]`.
 * Results go to docs/webhooks-out.md ("Performance") by hand. Settings: BENCH_CONNECTIONS (50),
 * BENCH_BACKLOG (20,000), BENCH_RATE (200 callbacks/s for the lag), BENCH_POOL (20), the server's
 * BENCH_SERVER_ENV ('KEY=VALUE KEY=VALUE') and BENCH_SERVER_NODE_OPTIONS ('--cpu-prof ...').
 *
 * 1. Ingest A/B: new-message callbacks (autocannon) without a subscription and with one active
 *    subscription delivering every change to the receiver: a warm-up run, then without, with, with,
 *    without (fresh messages each run; the deliveries drained after each).
 * 2. Delivery throughput: a backlog of BENCH_BACKLOG changes (one batch through the recorder with
 *    the outbound-webhook hook, in one transaction) drained to the receiver; deliveries/s from the first to the last request received.
 * 3. Lag: callbacks at a steady BENCH_RATE per second; for each delivery, the time from the event's
 *    commit (its `received_at`, set in the recording transaction) to the receiver's arrival; p50/p99.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import autocannon from 'autocannon'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { Webhook } from 'standardwebhooks'
import twilio from 'twilio'
import type { Database } from '../src/db/database.ts'
import { webhookRecordHooks } from '../src/delivery/on-recorded.ts'
import { recordEvents, type IncomingEvent } from '../src/ingest/record-events.ts'
import { startScriptEnv, startScriptV8Flags, startServer } from '../test/helpers/process.ts'

const seconds = Number(process.argv[2] ?? 10)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50)
const backlog = Number(process.env.BENCH_BACKLOG ?? 20_000)
const rate = Number(process.env.BENCH_RATE ?? 200)
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const ACCOUNT_SID = 'AC' + 'f'.repeat(32)
const TOKEN = 'bench_token_' + randomBytes(8).toString('hex')
const API_KEY = 'k_bench_' + randomBytes(12).toString('hex')
const PUBLIC = 'https://hooks.example.com'
const PATH = '/webhooks/twilio/status'

// The receiver: answers 204 at once; verifies one request in 50 (verification is the consumer's cost).
let secret = ''
const arrivals: Array<{ at: number, receivedAt: string, eventId: string }> = []
let bad = 0
const receiver = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString()
    const payload = JSON.parse(body) as { data: { received_at: string, event_id: string } }
    arrivals.push({ at: Date.now(), receivedAt: payload.data.received_at, eventId: payload.data.event_id })
    if (arrivals.length % 50 === 0) {
      try { new Webhook(secret).verify(body, req.headers as Record<string, string>) } catch { bad++ }
    }
    res.writeHead(204).end()
  })
})
receiver.keepAliveTimeout = 10_000
await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`

const dbName = `tidings_bench_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`
const check = new pg.Client({ connectionString: url.toString() })

const server = await startServer({
  DATABASE_URL: url.toString(),
  PUBLIC_BASE_URL: PUBLIC,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: TOKEN,
  API_KEYS: `bench:${API_KEY}`,
  LOG_LEVEL: 'warn',
  DATABASE_POOL_MAX: process.env.BENCH_POOL ?? '20',
  RATE_LIMIT_PER_MINUTE: '100000000',
  WEBHOOK_SECRETS_KEY: randomBytes(32).toString('base64'),
  WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32',
  WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: process.env.WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION ?? '32',
  // The environment and flags `npm start` runs with; BENCH_SERVER_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile.
  ...startScriptEnv(),
  NODE_OPTIONS: [...startScriptV8Flags(), process.env.BENCH_SERVER_NODE_OPTIONS ?? ''].join(' ').trim(),
  // More server configuration: BENCH_SERVER_ENV='WEBHOOK_MAX_IN_FLIGHT=64 LOG_LEVEL=info'.
  ...Object.fromEntries((process.env.BENCH_SERVER_ENV ?? '').split(/\s+/).filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
}, 120_000).catch(async (err: unknown) => {
  await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`)
  throw err
})
await check.connect()

function callback (sid: string, status: string): { body: string, headers: Record<string, string> } {
  const params = { MessageSid: sid, SmsSid: sid, MessageStatus: status, SmsStatus: status, AccountSid: ACCOUNT_SID, From: '+14155550100', To: '+15558675310', ApiVersion: '2010-04-01' }
  return {
    body: new URLSearchParams(params).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(TOKEN, PUBLIC + PATH, params) }
  }
}

async function ingest (duration: number): Promise<{ rps: number, p50: number, p99: number, non2xx: number }> {
  const result = await autocannon({
    url: server.address,
    connections,
    duration,
    requests: [{ method: 'POST', path: PATH, setupRequest: (req) => ({ ...req, ...callback('SM' + randomBytes(16).toString('hex'), 'sent') }) }]
  } as autocannon.Options)
  return { rps: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx }
}

async function subscription (enabled: boolean, id?: string): Promise<string> {
  const res = id === undefined
    ? await fetch(`${server.address}/v1/subscriptions`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ url: receiverUrl, event_types: ['message.status'] }) })
    : await fetch(`${server.address}/v1/subscriptions/${id}`, { method: 'PATCH', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ enabled }) })
  const body = await res.json() as { id: string, secret?: string }
  if (body.secret !== undefined) secret = body.secret
  return body.id
}

async function drained (): Promise<void> {
  for (;;) {
    const { rows } = await check.query("select count(*)::int as n from webhook_deliveries where state = 'pending'")
    if (rows[0].n === 0) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

// 1. Ingest A/B: a warm-up run (not counted: the server's first seconds run cold code), then
// without / with / with / without, so a drift over the runs (a warmer server, larger tables)
// weighs on both sides alike.
const sub = await subscription(true)
await subscription(false, sub)
await ingest(Math.max(3, Math.round(seconds / 2)))
const ab: Array<{ run: string, with: boolean, rps: number, p50: number, p99: number, non2xx: number, sentDuring: number }> = []
const deliveredSoFar = async (): Promise<number> => (await check.query("select count(*)::int as n from webhook_deliveries where state <> 'pending'")).rows[0].n
for (const [i, on] of [false, true, true, false].entries()) {
  await subscription(on, sub)
  const before = await deliveredSoFar()
  const result = await ingest(seconds)
  ab.push({ run: `${on ? 'with one subscription' : 'without subscription'} (${i < 2 ? 1 : 2})`, with: on, ...result, sentDuring: await deliveredSoFar() - before })
  await drained()
}
await subscription(true, sub)

// 2. Throughput: a backlog committed at once (one batch through the recorder with the
// outbound-webhook hook: its messages, events and deliveries in one transaction).
arrivals.length = 0
const { rows: [{ before }] } = await check.query('select coalesce(max(id), 0)::text as before from message_events')
const t0 = Date.now()
const writer = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
const backlogAt = new Date()
await recordEvents(writer, Array.from({ length: backlog }, (_, i): IncomingEvent => ({
  provider: 'twilio',
  sid: 'SM' + randomBytes(16).toString('hex'),
  status: 'sent',
  channel: 'sms',
  accountSid: ACCOUNT_SID,
  messagingServiceSid: null,
  from: '+14155550100',
  to: `+1555${String(i).padStart(7, '0')}`,
  errorCode: null,
  errorMessage: null,
  raw: {},
  receivedAt: backlogAt,
  carrierAt: null,
  source: 'webhook'
})), webhookRecordHooks())
await writer.destroy()
const unique = (): number => new Set(arrivals.filter((a) => BigInt(a.eventId) > BigInt(before)).map((a) => a.eventId)).size
await new Promise<void>((resolve) => { const tick = (): void => { if (unique() >= backlog) resolve(); else setTimeout(tick, 100) }; tick() })
const duplicates = arrivals.length - unique()
const firstAt = Math.min(...arrivals.map((a) => a.at))
const lastAt = Math.max(...arrivals.map((a) => a.at))
const throughput = Math.round(backlog / ((lastAt - firstAt) / 1000))
const fanOutMs = firstAt - t0

// 3. Lag at a steady rate.
await drained()
const { rows: attempts } = await check.query("select attempts, coalesce(last_error, '') as error, count(*)::int as n from webhook_deliveries group by 1, 2 order by 3 desc limit 5")
arrivals.length = 0
const { rows: [{ lagFrom }] } = await check.query('select coalesce(max(id), 0)::text as "lagFrom" from message_events')
const sent = rate * seconds
const start = Date.now()
for (let i = 0; i < sent; i++) {
  const due = start + (i * 1000) / rate
  if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())))
  const c = callback('SM' + randomBytes(16).toString('hex'), 'sent')
  fetch(`${server.address}${PATH}`, { method: 'POST', headers: c.headers, body: c.body }).then((r) => r.arrayBuffer(), () => {})
}
const lagged = (): typeof arrivals => arrivals.filter((a) => BigInt(a.eventId) > BigInt(lagFrom))
await new Promise<void>((resolve) => { const tick = (): void => { if (new Set(lagged().map((a) => a.eventId)).size >= sent) resolve(); else setTimeout(tick, 50) }; tick() })
const lags = lagged().map((a) => a.at - Date.parse(a.receivedAt)).sort((x, y) => x - y)
const pct = (p: number): number => lags[Math.min(lags.length - 1, Math.floor(lags.length * p))]

await server.stop()
await check.end()
await admin.query(`DROP DATABASE ${dbName} WITH (FORCE)`)
await admin.end()
receiver.close()

console.log(`\nnode ${process.version}, ${connections} connections, ${seconds} s per ingest run, WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION=${process.env.WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION ?? '32'}`)
console.log('| ingest run | req/s | p50 ms | p99 ms | non-2xx | deliveries sent during the run |')
console.log('|---|---|---|---|---|---|')
for (const r of ab) console.log(`| ${r.run} | ${r.rps} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.sentDuring} |`)
const mean = (on: boolean): number => { const runs = ab.filter((r) => r.with === on); return runs.reduce((sum, r) => sum + r.rps, 0) / runs.length }
console.log(`\ningest with one subscription: ${(100 * mean(true) / mean(false)).toFixed(1)} % of without (mean of two runs each, after a warm-up run)`)
console.log(`delivery throughput: ${backlog} deliveries in ${lastAt - firstAt} ms = ${throughput} deliveries/s (first delivery ${fanOutMs} ms after the backlog committed)`)
console.log(`lag commit → delivery at ${rate} callbacks/s for ${seconds} s (${lags.length} deliveries): p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lags.at(-1)} ms`)
console.log(`duplicates during the backlog: ${duplicates}; deliveries by attempts and last error: ${attempts.map((r: { attempts: number, error: string, n: number }) => `${r.n}×${r.attempts}${r.error === '' ? '' : ` (${r.error})`}`).join(', ')}`)
const warnings = server.logs.filter((l) => l.component === 'webhooks-out' && Number(l.level) >= 40).map((l) => String(l.msg))
console.log(`sender and dispatcher warnings: ${warnings.length === 0 ? 'none' : [...new Set(warnings)].map((m) => `${warnings.filter((w) => w === m).length}× ${m}`).join('; ')}`)
console.log(`load average at the end: ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')} on ${(await import('node:os')).cpus().length} cores`)
console.log(`signatures checked: ${Math.floor((backlog + sent) / 50)} sampled, ${bad} bad`)
