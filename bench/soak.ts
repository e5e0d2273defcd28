/**
 * `npm run bench:soak`: the soak run (issue 10). The real server on a fresh database (as
 * `npm run bench` starts it, bench/ingest-lib.ts), the realistic signed Twilio stream sent at a
 * fixed rate (each callback once, over keep-alive connections), one `GET /v1/stream` client
 * connected the whole time and `GET /v1/stats` every 10 s. Every 10 s it samples the server's RSS
 * and CPU, its event-loop delay from `/metrics`, the callbacks acknowledged, non-2xx, the window's
 * latency and the stream events received. At the end: a table per minute, first against last
 * minute, and the checks (nothing acknowledged lost, doubled or in the wrong final status; the
 * stream delivered every stored event once, in id order, without reconnecting).
 *
 *   npm run bench:soak                                  # 10 minutes at 500 callbacks/s
 *   npm run bench:soak -- --minutes 1 --rate 200
 *
 * Options: --minutes (10), --rate callbacks/s (500: about half of what `npm run bench` measures
 * at 32 connections on the 2-core machine, docs/performance.md), --messages (default: enough for
 * the run, at about 2.86 callbacks a realistic message), --connections (32), --env KEY=VALUE
 * (repeatable; server configuration). The database server is TEST_DATABASE_URL. Figures go to
 * docs/reliability.md by hand.
 *
 * The sender is paced here rather than by autocannon's `overallRate`, which gives each connection
 * a budget per second and spends it at once, in bursts at each second's start.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { Pool } from 'undici'
import { API_KEY } from '../test/helpers/app.ts'
import { openStream, type SseClient } from '../test/helpers/sse.ts'
import { buildStream, checkDatabase, cpuTicks, freshDatabase, REALISTIC, rssMiB, startBenchServer, STATUS_PATH } from './ingest-lib.ts'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '500' },
    messages: { type: 'string' },
    connections: { type: 'string', default: '32' },
    env: { type: 'string', multiple: true, default: [] }
  }
})
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const minutes = Number(values.minutes)
const rate = Number(values.rate)
const connections = Number(values.connections)
const SAMPLE_MS = 10_000
const samplesWanted = Math.round(minutes * 60_000 / SAMPLE_MS)
const total = Math.round(rate * samplesWanted * SAMPLE_MS / 1000)
const messages = Number(values.messages ?? Math.ceil(total / 2.8))
const serverEnv = Object.fromEntries(values.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
const token = 'bench_token_' + randomBytes(8).toString('hex')
const auth = { authorization: `Bearer ${API_KEY}` }

const stream = buildStream({ ...REALISTIC, messages }, token)
if (stream.length < total) {
  console.error(`${messages} messages make ${stream.length} callbacks; the run needs ${total}: raise --messages`)
  process.exit(2)
}
console.log(`soak: ${minutes} min at ${rate} callbacks/s over ${connections} connections = ${total} of ${stream.length} signed callbacks (${messages} messages); node ${process.version}`)

/** One 10-s sample; "window" figures cover the 10 s before it. */
interface Sample {
  t: number
  acknowledged: number
  non2xx: number
  errors: number
  windowAcked: number
  p50: number
  p99: number
  rssMiB: number
  heapMiB: number
  /** Event-loop delay from prom-client's histogram, reset at every scrape, ms. */
  loopP99: number
  loopMean: number
  cpu: number
  streamEvents: number
  statsStatus: number
  statsMs: number
  /** Server log lines at warn or above in the window. */
  warnings: number
}

function percentile (sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

function metric (text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}

const r1 = (x: number): number => Math.round(x * 10) / 10

const db = await freshDatabase(base)
// The test API key, so this script knows it (startBenchServer makes up one otherwise).
const server = await startBenchServer(db.url, token, { API_KEYS: `bench:${API_KEY}`, ...serverEnv })
const pid = server.child.pid as number
const pool = new Pool(server.address, { connections, pipelining: 1 })
let exitCode = 0
try {
  // The stream client, from the first event (`Last-Event-ID: 0`), so its count can be compared
  // with the table exactly. If it is disconnected it resumes after the last id it got (counted).
  let sse: SseClient = await openStream(`${server.address}/v1/stream`, { ...auth, 'last-event-id': '0' })
  let streamEvents = 0
  let lastId = 0n
  let outOfOrder = 0
  let reconnects = 0
  let stopping = false
  const drainStream = (): void => {
    for (const e of sse.events.splice(0)) {
      const id = BigInt(e.id)
      if (id <= lastId) outOfOrder++; else lastId = id
      streamEvents++
    }
  }
  const streamKept = (async () => {
    for (;;) {
      await sse.ended
      drainStream()
      if (stopping) return
      reconnects++
      console.log(`  stream ended at event ${lastId}; reconnecting`)
      for (;;) {
        try {
          sse = await openStream(`${server.address}/v1/stream`, { ...auth, 'last-event-id': String(lastId) })
          break
        } catch (err) {
          console.log(`  stream: ${(err as Error).message}; retrying in 1 s`)
          await sleep(1000)
        }
      }
    }
  })()

  let sent = 0
  let settled = 0
  let non2xx = 0
  let errors = 0
  const acknowledged = new Set<number>()
  const codes: Record<string, number> = {}
  let window: number[] = []
  const send = (i: number): void => {
    const cb = stream[i]
    const t0 = performance.now()
    pool.request({
      method: 'POST',
      path: STATUS_PATH,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': cb.signature },
      body: cb.body
    }).then(async (res) => {
      await res.body.dump()
      window.push(performance.now() - t0)
      codes[res.statusCode] = (codes[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 200 && res.statusCode < 300) acknowledged.add(i); else non2xx++
    }, () => { errors++ }).finally(() => { settled++ })
  }

  const samples: Sample[] = []
  const warningExamples: string[] = []
  const started = performance.now()
  // Open loop: callbacks go out on the clock, whether or not earlier ones were answered.
  const pacer = setInterval(() => {
    const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000))
    while (sent < due) send(sent++)
  }, 5)
  let ticks = cpuTicks(pid)
  let ackedBefore = 0
  console.log('  t s | acked | non-2xx | errors | callbacks/s | p50 ms | p99 ms | RSS MiB | heap MiB | loop p99 ms | loop mean ms | CPU % | stream events | stats')
  for (let k = 1; k <= samplesWanted; k++) {
    await sleep(started + k * SAMPLE_MS - performance.now())
    const latencies = window.sort((a, b) => a - b)
    window = []
    const t = (performance.now() - started) / 1000
    const ticksNow = cpuTicks(pid)
    const rss = rssMiB(pid)
    const metrics = await fetch(`${server.address}/metrics`).then(async (r) => await r.text())
    const s0 = performance.now()
    const stats = await fetch(`${server.address}/v1/stats`, { headers: auth }).then(async (r) => { await r.arrayBuffer(); return r.status }, () => 0)
    const statsMs = performance.now() - s0
    drainStream()
    // The server's parsed log lines are kept by startServer; only warnings matter here.
    const logs = server.logs.splice(0)
    const warned = logs.filter((l) => typeof l.level === 'number' && l.level >= 40)
    for (const l of warned) if (warningExamples.length < 5) warningExamples.push(JSON.stringify(l).slice(0, 300))
    const sample: Sample = {
      t: Math.round(t),
      acknowledged: acknowledged.size,
      non2xx,
      errors,
      windowAcked: acknowledged.size - ackedBefore,
      p50: r1(percentile(latencies, 0.5)),
      p99: r1(percentile(latencies, 0.99)),
      rssMiB: Math.round(rss),
      heapMiB: Math.round(metric(metrics, 'tidings_nodejs_heap_size_used_bytes') / 2 ** 20),
      loopP99: r1(metric(metrics, 'tidings_nodejs_eventloop_lag_p99_seconds') * 1000),
      loopMean: r1(metric(metrics, 'tidings_nodejs_eventloop_lag_mean_seconds') * 1000),
      cpu: Math.round((ticksNow - ticks) / (SAMPLE_MS / 1000)),
      streamEvents,
      statsStatus: stats,
      statsMs: Math.round(statsMs),
      warnings: warned.length
    }
    ticks = ticksNow
    ackedBefore = acknowledged.size
    samples.push(sample)
    console.log(`  ${sample.t} | ${sample.acknowledged} | ${non2xx} | ${errors} | ${Math.round(sample.windowAcked * 1000 / SAMPLE_MS)} | ${sample.p50} | ${sample.p99} | ${sample.rssMiB} | ${sample.heapMiB} | ${sample.loopP99} | ${sample.loopMean} | ${sample.cpu} | ${streamEvents} | ${stats} in ${sample.statsMs} ms${warned.length > 0 ? ` | ${warned.length} warnings` : ''}`)
  }
  clearInterval(pacer)
  while (sent < total) send(sent++)
  const drainBy = Date.now() + 60_000
  const allAnswered = (): boolean => settled >= total
  while (!allAnswered() && Date.now() < drainBy) await sleep(100)
  const unanswered = total - settled

  // The stream lags the commits by up to a poll or two; wait until it has every stored event.
  const client = new pg.Client({ connectionString: db.url })
  await client.connect()
  let stored = { n: 0, max: 0n }
  const caughtUpBy = Date.now() + 30_000
  for (;;) {
    const { rows } = await client.query<{ n: string, max: string | null }>('select count(*)::text as n, max(id)::text as max from message_events')
    stored = { n: Number(rows[0].n), max: BigInt(rows[0].max ?? '0') }
    drainStream()
    if ((streamEvents >= stored.n && lastId >= stored.max) || Date.now() > caughtUpBy) break
    await sleep(500)
  }
  await client.end()
  stopping = true
  sse.close()
  await streamKept

  const perMinute = 60_000 / SAMPLE_MS
  const minuteRows: Sample[][] = []
  for (let i = 0; i < samples.length; i += perMinute) minuteRows.push(samples.slice(i, i + perMinute))
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  console.log(`\nsoak: ${minutes} min at ${rate} callbacks/s; per minute (10-s samples: latency and loop p99 are the worst window's, RSS and heap the minute's last sample)`)
  console.log('| minute | callbacks/s | acknowledged | non-2xx + errors | callback p99 ms | server RSS MiB | heap used MiB | event-loop delay p99 ms | event-loop delay mean ms | server CPU % | stream events | `/v1/stats` worst ms |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
  minuteRows.forEach((rows, m) => {
    const last = rows[rows.length - 1]
    const acked = rows.reduce((n, s) => n + s.windowAcked, 0)
    console.log(`| ${m + 1} | ${Math.round(acked / (rows.length * SAMPLE_MS / 1000))} | ${last.acknowledged} | ${last.non2xx + last.errors} | ${Math.max(...rows.map((s) => s.p99))} | ${last.rssMiB} | ${last.heapMiB} | ${Math.max(...rows.map((s) => s.loopP99))} | ${r1(mean(rows.map((s) => s.loopMean)))} | ${Math.round(mean(rows.map((s) => s.cpu)))} | ${last.streamEvents} | ${Math.max(...rows.map((s) => s.statsMs))} |`)
  })
  const first = minuteRows[0]
  const lastMinute = minuteRows[minuteRows.length - 1]
  const describe = (rows: Sample[]): string =>
    `RSS ${Math.round(mean(rows.map((s) => s.rssMiB)))} MiB (${Math.min(...rows.map((s) => s.rssMiB))}–${Math.max(...rows.map((s) => s.rssMiB))}), heap ${Math.round(mean(rows.map((s) => s.heapMiB)))} MiB, event-loop delay p99 ${r1(mean(rows.map((s) => s.loopP99)))} ms mean ${r1(mean(rows.map((s) => s.loopMean)))} ms`
  console.log(`\nfirst minute (means of its samples): ${describe(first)}`)
  console.log(`last minute  (means of its samples): ${describe(lastMinute)}`)
  console.log('(prom-client samples the loop every 10 ms and records the whole interval: an idle loop reads about 10 ms)')

  const stats = samples.map((s) => s.statsStatus)
  console.log(`\n/v1/stats: ${stats.filter((s) => s === 200).length} of ${stats.length} answered 200${stats.some((s) => s !== 200) ? ` (others: ${stats.filter((s) => s !== 200).join(', ')})` : ''}`)
  console.log(`responses by status: ${JSON.stringify(codes)}; connection errors ${errors}; unanswered ${unanswered}`)
  if (warningExamples.length > 0) console.log(`server warnings (${samples.reduce((n, s) => n + s.warnings, 0)}), first ones:\n  ${warningExamples.join('\n  ')}`)

  const check = await checkDatabase(db.url, stream, acknowledged)
  console.log(`database: ${check.messages} messages acknowledged; lost ${check.lost}, doubled ${check.doubled}, wrong final status ${check.wrongStatus}`)
  console.log(`stream: ${streamEvents} events received, ${stored.n} rows in message_events (last id ${stored.max}, last received ${lastId}); out of order or repeated ${outOfOrder}; reconnects ${reconnects}`)
  const failures = [
    check.lost + check.doubled + check.wrongStatus > 0 && 'an acknowledged callback was lost or doubled, or a message ended in the wrong status',
    (streamEvents !== stored.n || lastId !== stored.max || outOfOrder > 0) && 'the stream did not deliver every stored event exactly once, in order',
    reconnects > 0 && 'the stream client was disconnected',
    unanswered > 0 && `${unanswered} callbacks were never answered`
  ].filter((f) => f !== false)
  for (const f of failures) console.error(`FAILED: ${f}`)
  if (failures.length > 0) exitCode = 1
} finally {
  await pool.close()
  await server.stop()
  await db.drop()
}
process.exitCode = exitCode
