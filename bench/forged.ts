/**
 * Benchmark: what forged Twilio callbacks cost (issue 10). Run:
 * `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node bench/forged.ts [seconds]`.
 * Figures go to docs/fuzzing.md by hand.
 *
 * 1. CPU per rejected request, in process (`process.cpuUsage` around `app.inject`, so the figure
 *    includes Fastify's routing and body parsing, and is an upper bound for the check itself):
 *    the worst forged request that is still parsed and checked — the largest accepted body
 *    (WEBHOOK_MAX_BODY_BYTES, default 16 KiB) with the most accepted parameters
 *    (WEBHOOK_MAX_PARAMS, default 100), a well-formed but wrong signature, and no AccountSid, so
 *    every configured token (three accounts, one rotating: four) is tried; and, for comparison,
 *    one parameter over the limit (refused before the signature check).
 * 2. Valid-callback throughput of the real server (`node src/server.ts`, a child process) with
 *    autocannon, alone and while 200 forged requests per second of the kind above arrive.
 */
import { randomBytes } from 'node:crypto'
import autocannon from 'autocannon'
import pg from 'pg'
import twilio from 'twilio'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { Kysely, PostgresDialect } from 'kysely'
import type { Database } from '../src/db/database.ts'
import { startServer } from '../test/helpers/process.ts'

const seconds = Number(process.argv[2] ?? 10)
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const ACCOUNTS = ['AC' + 'f'.repeat(32), 'AC' + 'e'.repeat(32), 'AC' + 'd'.repeat(32)]
const TOKENS = ACCOUNTS.map(() => 'bench_token_' + randomBytes(8).toString('hex'))
const ROTATED = 'bench_token_' + randomBytes(8).toString('hex')
const PUBLIC = 'https://hooks.example.com'
const PATH = '/webhooks/twilio/status'
const env = {
  PUBLIC_BASE_URL: PUBLIC,
  TWILIO_AUTH_TOKENS: [...ACCOUNTS.map((a, i) => `${a}:${TOKENS[i]}`), `${ACCOUNTS[0]}:${ROTATED}`].join(','),
  API_KEYS: `bench:k_bench_${randomBytes(12).toString('hex')}`,
  LOG_LEVEL: 'warn',
  MAX_EVENT_LOOP_DELAY_MS: '0'
}

/** The largest forged body still parsed: 100 parameters, 16 KiB, no AccountSid. */
function forgedBody (params: number, bytes: number): string {
  const pairs: string[] = ['MessageSid=SM' + 'a'.repeat(32), 'MessageStatus=delivered']
  for (let i = pairs.length; i < params - 1; i++) pairs.push(`P${i}=v`)
  const head = pairs.join('&')
  return head + '&Pad=' + 'x'.repeat(Math.max(0, bytes - head.length - 5))
}
const FORGED = forgedBody(100, 16 * 1024 - 1)
const OVER = forgedBody(101, 2048)
const forgedHeaders = { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'A'.repeat(27) + '=' }

const dbName = `tidings_bench_${randomBytes(4).toString('hex')}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${dbName}`)
const url = new URL(base); url.pathname = `/${dbName}`

try {
  // --- 1. CPU per rejected request ---------------------------------------------------------------
  const config = loadConfig({ ...env, DATABASE_URL: url.toString() })
  // Forged requests are refused before any query: the pool is never used.
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url.toString(), max: 1 }) }) })
  const app = await buildApp(config, { db })
  await app.ready()
  const cpuPer = async (payload: string, n: number): Promise<{ us: number, status: number }> => {
    let status = 0
    for (let i = 0; i < 200; i++) status = (await app.inject({ method: 'POST', url: PATH, headers: forgedHeaders, payload })).statusCode
    const start = process.cpuUsage()
    for (let i = 0; i < n; i++) await app.inject({ method: 'POST', url: PATH, headers: forgedHeaders, payload })
    const used = process.cpuUsage(start)
    return { us: (used.user + used.system) / n, status }
  }
  const largest = await cpuPer(FORGED, 2000)
  const over = await cpuPer(OVER, 2000)
  await app.close()
  await db.destroy()
  console.log(`forged, largest accepted (100 params, ${FORGED.length} B, 4 tokens tried): ${largest.us.toFixed(0)} µs CPU per request (answer ${largest.status})`)
  console.log(`forged, 101 params (refused before the signature check): ${over.us.toFixed(0)} µs CPU per request (answer ${over.status})`)

  // --- 2. valid-callback throughput with and without 200 forged requests/s --------------------------
  const server = await startServer({ ...env, DATABASE_URL: url.toString(), RATE_LIMIT_PER_MINUTE: '100000000' })
  const validRequests = (): autocannon.Request[] => Array.from({ length: 1000 }, () => {
    const sid = 'SM' + randomBytes(16).toString('hex')
    const params = { MessageSid: sid, MessageStatus: 'delivered', AccountSid: ACCOUNTS[0], From: '+14155550100', To: '+15558675310' }
    return {
      method: 'POST',
      path: PATH,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(TOKENS[0], PUBLIC + PATH, params) },
      body: new URLSearchParams(params).toString()
    }
  })
  const measure = async (label: string): Promise<void> => {
    const r = await autocannon({ url: server.address, connections: 20, duration: seconds, requests: validRequests() })
    console.log(`${label}: ${Math.round(r.requests.average)} valid callbacks/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, non-2xx ${r.non2xx}`)
  }
  await measure('valid callbacks alone')
  let forgedSent = 0
  let forgedRefused = 0
  const timer = setInterval(() => {
    for (let i = 0; i < 2; i++) {
      forgedSent++
      fetch(server.address + PATH, { method: 'POST', headers: forgedHeaders, body: FORGED })
        .then(async (res) => { if (res.status === 403) forgedRefused++; await res.arrayBuffer() }, () => {})
    }
  }, 10)
  await measure('valid callbacks with 200 forged requests/s')
  clearInterval(timer)
  console.log(`forged sent: ${forgedSent}, answered 403: ${forgedRefused}`)
  await server.stop()
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  await admin.end()
}
