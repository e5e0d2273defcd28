/**
 * The ingest benchmark's parts (`npm run bench` runs them from bench/ingest.ts; the test suite runs
 * a tiny stream through them in test/bench-ingest.test.ts so they cannot rot).
 *
 * A realistic signed Twilio stream: messages sent over SMS and WhatsApp, each with the status
 * callbacks Twilio sends for it (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status),
 * interleaved in time, some out of order and some delivered twice, signed with twilio-node's own
 * `getExpectedTwilioSignature`. autocannon sends each callback exactly once; afterwards the database
 * is checked: every acknowledged `(MessageSid, MessageStatus)` stored exactly once, every message in
 * the status precedence says it must end in.
 */
import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import autocannon from 'autocannon'
import pg from 'pg'
import twilio from 'twilio'
import { rankOf } from '../src/domain/status-precedence.ts'
import { startScriptEnv, startScriptV8Flags, startServer, type ServerProcess } from '../test/helpers/process.ts'

export const BENCH_ACCOUNT_SID = 'AC' + 'f'.repeat(32)
export const BENCH_PUBLIC_URL = 'https://hooks.example.com'
export const STATUS_PATH = '/webhooks/twilio/status'

/** One signed callback, ready to send. */
export interface Callback {
  sid: string
  status: string
  body: string
  signature: string
}

export interface StreamMix {
  messages: number
  /** Share of WhatsApp messages (0..1). */
  whatsapp: number
  /** Share of messages that fail. */
  failures: number
  /** Share of messages with two callbacks swapped. */
  outOfOrder: number
  /** Share of callbacks sent twice. */
  duplicates: number
}

/** The mix the ingest issue measured with: 20,000 messages, about 3.4 callbacks each. */
export const REALISTIC: StreamMix = { messages: 20_000, whatsapp: 0.35, failures: 0.10, outOfOrder: 0.05, duplicates: 0.05 }

const SMS_FAILURES = ['30003', '30005', '30006', '30007', '30008']
const WHATSAPP_FAILURES = ['63049', '63016', '63024', '63003']

/** A deterministic pseudo-random source (mulberry32), so runs replay the same stream. */
function random (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * Builds and signs the stream, in the order a provider would send it.
 * @param token - the auth token of `BENCH_ACCOUNT_SID`.
 */
export function buildStream (mix: StreamMix, token: string, seed = 1): Callback[] {
  const rnd = random(seed)
  const timed: Array<{ at: number, params: Record<string, string> }> = []
  const runId = randomBytes(4).toString('hex')
  for (let m = 0; m < mix.messages; m++) {
    const sid = 'SM' + runId + m.toString(16).padStart(24, '0')
    const whatsapp = rnd() < mix.whatsapp
    const viaService = rnd() < 0.5
    const to = `+1555${String(Math.floor(rnd() * 1e7)).padStart(7, '0')}`
    const from = whatsapp ? 'whatsapp:+14155238886' : '+14155550100'
    const base: Record<string, string> = {
      MessageSid: sid,
      SmsSid: sid,
      AccountSid: BENCH_ACCOUNT_SID,
      From: from,
      To: whatsapp ? `whatsapp:${to}` : to,
      ApiVersion: '2010-04-01',
      ...(viaService ? { MessagingServiceSid: 'MG' + 'e'.repeat(32) } : {}),
      ...(whatsapp ? { ChannelPrefix: 'whatsapp', ChannelInstallSid: 'XE' + 'a'.repeat(32), ChannelToAddress: to } : {})
    }
    // With a Messaging Service the initial status is `accepted`, so `queued` gets a callback.
    const statuses: Array<[string, Record<string, string>]> = viaService ? [['queued', {}]] : []
    if (rnd() < mix.failures) {
      if (whatsapp) {
        statuses.push(['failed', { ErrorCode: WHATSAPP_FAILURES[Math.floor(rnd() * WHATSAPP_FAILURES.length)], EventType: 'UNDELIVERED' }])
      } else {
        statuses.push(['sent', {}], [rnd() < 0.7 ? 'undelivered' : 'failed', { ErrorCode: SMS_FAILURES[Math.floor(rnd() * SMS_FAILURES.length)] }])
      }
    } else {
      statuses.push(['sent', {}], ['delivered', whatsapp ? { EventType: 'DELIVERED' } : { RawDlrDoneDate: '2612011200' }])
      if (whatsapp && rnd() < 0.8) statuses.push(['read', { EventType: 'READ' }])
    }
    if (statuses.length > 1 && rnd() < mix.outOfOrder) {
      const k = Math.floor(rnd() * (statuses.length - 1));
      [statuses[k], statuses[k + 1]] = [statuses[k + 1], statuses[k]]
    }
    let at = rnd() * 600
    for (const [status, extra] of statuses) {
      at += 0.5 + rnd() * 5
      const params = { ...base, MessageStatus: status, SmsStatus: status, ...extra }
      timed.push({ at, params })
      if (rnd() < mix.duplicates) timed.push({ at: at + rnd() * 3, params })
    }
  }
  timed.sort((a, b) => a.at - b.at)
  const url = BENCH_PUBLIC_URL + STATUS_PATH
  return timed.map(({ params }) => ({
    sid: params.MessageSid,
    status: params.MessageStatus,
    body: new URLSearchParams(params).toString(),
    signature: twilio.getExpectedTwilioSignature(token, url, params)
  }))
}

/** What one autocannon run measured. */
export interface RunResult {
  label: string
  connections: number
  callbacks: number
  /** Callbacks acknowledged per second, over the whole run. */
  perSecond: number
  p50: number
  p99: number
  non2xx: number
  errors: number
  /** Server process CPU over the run, in % of one core. */
  serverCpu: number
  /** Highest server RSS sampled during the run, MiB. */
  peakRssMiB: number
  /**
   * CPU time of the PostgreSQL backends serving the bench database, in µs per acknowledged
   * callback, and in % of one core over the run (`null` when the backends cannot be read, e.g. a
   * server on another host or user).
   */
  dbCpuUsPerCallback: number | null
  dbCpu: number | null
  /**
   * Acknowledged callbacks per writing transaction: callbacks over the transaction ids the server
   * assigned during the run (every recording batch takes one; the few other writers, such as the
   * job queue's maintenance, count too). `null` without `databaseUrl`.
   */
  perTransaction: number | null
  /** Server process CPU time in µs per acknowledged callback. */
  serverCpuUsPerCallback: number
  /** Indices into the stream of the callbacks answered 2xx. */
  acknowledged: Set<number>
  /** Responses by HTTP status, e.g. `{ 200: 8100, 503: 3 }`. */
  statusCodes: Record<string, number>
}

/** CPU time the process `pid` has used so far, in clock ticks (10 ms). */
export function cpuTicks (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime + stime (fields 14, 15), clock ticks
}

/**
 * CPU ticks (10 ms) used so far by each PostgreSQL backend connected to the database at `url`, by
 * pid; `null` when /proc cannot show them (the database on another host, or another user's).
 */
/** The server's next transaction id: how many writing transactions began so far, without taking one. */
async function nextXid (url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return Number((await client.query<{ x: string }>('select pg_snapshot_xmax(pg_current_snapshot())::text as x')).rows[0].x)
  } finally {
    await client.end()
  }
}

async function backendTicks (url: string): Promise<Map<number, number> | null> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()')
    const ticks = new Map<number, number>()
    for (const { pid } of rows) {
      try { ticks.set(pid, cpuTicks(pid)) } catch { return null }
    }
    return ticks
  } finally {
    await client.end()
  }
}

/** Resident memory of the process `pid` now, MiB. */
export function rssMiB (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
}

/** Sends every callback of `stream` exactly once at `connections` connections. */
export async function replay (server: ServerProcess, stream: readonly Callback[], connections: number, label: string, databaseUrl?: string): Promise<RunResult> {
  const pid = server.child.pid as number
  const db0 = databaseUrl === undefined ? null : await backendTicks(databaseUrl)
  const xid0 = databaseUrl === undefined ? null : await nextXid(databaseUrl)
  let next = 0
  const acknowledged = new Set<number>()
  let peak = rssMiB(pid)
  const sampler = setInterval(() => { peak = Math.max(peak, rssMiB(pid)) }, 200)
  const ticks0 = cpuTicks(pid)
  // The run's time: from the first request to the last answer. autocannon ends an `amount` run
  // on its one-second tick, so its own wall time rounds up to whole seconds (17,165 callbacks in
  // 5.1 s measured as 6.0 s: every figure the same 2,857/s).
  let firstSent: bigint | undefined
  let lastAnswered = process.hrtime.bigint()
  const result = await autocannon({
    url: server.address,
    connections,
    amount: stream.length,
    timeout: 30,
    requests: [{
      method: 'POST',
      path: STATUS_PATH,
      setupRequest: (req, context: Record<string, unknown>) => {
        const i = next++
        context.i = i
        firstSent ??= process.hrtime.bigint()
        const cb = stream[Math.min(i, stream.length - 1)]
        return { ...req, body: cb.body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': cb.signature } }
      },
      onResponse: (status: number, _body: string, context: Record<string, unknown>) => {
        if (status >= 200 && status < 300) acknowledged.add(context.i as number)
        lastAnswered = process.hrtime.bigint()
      }
    }]
  } as autocannon.Options)
  const seconds = Math.max(Number(lastAnswered - (firstSent ?? lastAnswered)) / 1e9, 1e-3)
  clearInterval(sampler)
  const ticks = cpuTicks(pid) - ticks0
  const db1 = databaseUrl === undefined ? null : await backendTicks(databaseUrl)
  const xids = databaseUrl === undefined || xid0 === null ? null : await nextXid(databaseUrl) - xid0
  let dbTicks: number | null = null
  if (db0 !== null && db1 !== null) {
    dbTicks = 0
    for (const [backend, t] of db1) dbTicks += t - (db0.get(backend) ?? 0)
  }
  const acked = Math.max(acknowledged.size, 1)
  return {
    label,
    connections,
    callbacks: stream.length,
    perSecond: Math.round(acknowledged.size / seconds),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    serverCpu: Math.round(ticks / seconds), // 100 ticks a second = 100 % of one core
    peakRssMiB: Math.round(peak),
    serverCpuUsPerCallback: Math.round(ticks * 1e4 / acked), // one tick = 10 ms = 10,000 µs
    dbCpu: dbTicks === null ? null : Math.round(dbTicks / seconds),
    dbCpuUsPerCallback: dbTicks === null ? null : Math.round(dbTicks * 1e4 / acked),
    perTransaction: xids === null ? null : Math.round(10 * acknowledged.size / Math.max(xids, 1)) / 10,
    acknowledged,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, stat]) => [code, stat?.count ?? 0]))
  }
}

/** What the database holds after a run, against what was acknowledged. */
export interface Check {
  /** Acknowledged `(sid, status)` pairs not stored. */
  lost: number
  /** Stored pairs more than once (impossible with the UNIQUE constraint; checked anyway). */
  doubled: number
  /** Messages whose current status is not the highest-ranked status acknowledged for them. */
  wrongStatus: number
  messages: number
}

/** Checks the database at `url` against the acknowledged callbacks of `stream`. */
export async function checkDatabase (url: string, stream: readonly Callback[], acknowledged: ReadonlySet<number>): Promise<Check> {
  const expected = new Map<string, Set<string>>()
  for (const i of acknowledged) {
    const cb = stream[i]
    let set = expected.get(cb.sid)
    if (set === undefined) expected.set(cb.sid, (set = new Set()))
    set.add(cb.status)
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const sids = [...expected.keys()]
    const events = await client.query<{ sid: string, status: string, n: string }>(
      'select message_sid as sid, message_status as status, count(*)::text as n from message_events where message_sid = any($1) group by 1, 2', [sids])
    const stored = new Map<string, number>()
    for (const r of events.rows) stored.set(`${r.sid} ${r.status}`, Number(r.n))
    let lost = 0
    let doubled = 0
    for (const [sid, statuses] of expected) {
      for (const s of statuses) {
        const n = stored.get(`${sid} ${s}`) ?? 0
        if (n === 0) lost++
        if (n > 1) doubled++
      }
    }
    const rows = await client.query<{ sid: string, status: string | null }>('select sid, status from messages where sid = any($1)', [sids])
    let wrongStatus = 0
    const current = new Map(rows.rows.map((r) => [r.sid, r.status]))
    for (const [sid, statuses] of expected) {
      let best: string | null = null
      for (const s of statuses) if ((rankOf('twilio', s) ?? 0) > (best === null ? 0 : rankOf('twilio', best) ?? 0)) best = s
      if (current.get(sid) !== best) wrongStatus++
    }
    return { lost, doubled, wrongStatus, messages: expected.size }
  } finally {
    await client.end()
  }
}

/** A fresh database on the server at `baseUrl`; `drop` removes it. */
export async function freshDatabase (baseUrl: string): Promise<{ url: string, drop: () => Promise<void> }> {
  const name = `tidings_bench_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: baseUrl })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    }
  }
}

/** Starts the real server (`node src/server.ts`) on `databaseUrl` for the bench account. */
export async function startBenchServer (databaseUrl: string, token: string, env: Record<string, string | undefined> = {}, entry?: string): Promise<ServerProcess> {
  return await startServer({
    DATABASE_URL: databaseUrl,
    PUBLIC_BASE_URL: BENCH_PUBLIC_URL,
    TWILIO_ACCOUNT_SID: BENCH_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: token,
    API_KEYS: `bench:k_bench_${randomBytes(12).toString('hex')}`,
    // The service as users run it: info logs (to a pipe this process reads and drops), load shedding on.
    LOG_LEVEL: 'info',
    MAX_EVENT_LOOP_DELAY_MS: '200',
    // The V8 flags `npm start` gives the server, plus e.g.
    // BENCH_SERVER_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' to profile it.
    ...startScriptEnv(),
    NODE_OPTIONS: [...startScriptV8Flags(), process.env.BENCH_SERVER_NODE_OPTIONS ?? ''].join(' ').trim(),
    ...env
  }, 60_000, entry, { keepLogs: false })
}

/**
 * Stores `events` status events (three per message) with one INSERT … SELECT generate_series each,
 * for the "full table" scenario.
 */
export async function preload (url: string, events: number): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const messages = Math.ceil(events / 3)
    await client.query(`
      insert into messages (sid, provider, channel, account_sid, from_address, to_address, status, status_rank, sent_at, delivered_at, created_at, updated_at)
      select 'SM' || md5('preload' || g), 'twilio', 'sms', $1, '+14155550100', '+1555' || lpad((g % 10000000)::text, 7, '0'),
        'delivered', 10, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
      from generate_series(1, $2::int) g`, [BENCH_ACCOUNT_SID, messages])
    await client.query(`
      insert into message_events (message_sid, message_status, channel, raw, received_at, source)
      select 'SM' || md5('preload' || g), s.status, 'sms',
        jsonb_build_object('MessageSid', 'SM' || md5('preload' || g), 'MessageStatus', s.status, 'AccountSid', $1::text), now() - interval '1 day', 'webhook'
      from generate_series(1, $2::int) g cross join (values ('queued'), ('sent'), ('delivered')) s(status)`, [BENCH_ACCOUNT_SID, messages])
    await client.query('vacuum analyze messages')
    await client.query('vacuum analyze message_events')
  } finally {
    await client.end()
  }
}
