/**
 * `npm run bench`: the ingest benchmark. Starts the real server (`node src/server.ts`) on a fresh
 * PostgreSQL database per run and replays a realistic signed Twilio stream with autocannon, each
 * callback sent once, then checks the database (see bench/ingest-lib.ts).
 *
 *   npm run bench                          # 3 runs: 8 and 32 connections, group commit off, 1M preloaded
 *   npm run bench -- --runs 1 --messages 5000 --preload 0
 *
 * Options: --runs N (3), --messages N (20000), --connections 8,32, --preload N events (1000000; 0
 * skips the full-table scenario), --baseline (on; --no-baseline skips the WEBHOOK_BATCH_MAX=1 run),
 * --env KEY=VALUE (repeatable; server configuration for every scenario), --before <server.ts of
 * another checkout> (the same stream against an older tree's server, e.g. main before a change,
 * in the same run: `git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci)`,
 * then `--before /tmp/before/src/server.ts`). The server's Node options:
 * BENCH_SERVER_NODE_OPTIONS (e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof').
 * The database server is TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
 * Results go to docs/performance.md by hand, with the machine they ran on.
 */
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { buildStream, checkDatabase, freshDatabase, preload, REALISTIC, replay, startBenchServer, type Check, type RunResult } from './ingest-lib.ts'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    messages: { type: 'string', default: String(REALISTIC.messages) },
    connections: { type: 'string', default: '8,32' },
    preload: { type: 'string', default: '1000000' },
    baseline: { type: 'boolean', default: true },
    'no-baseline': { type: 'boolean', default: false },
    env: { type: 'string', multiple: true, default: [] },
    before: { type: 'string' }
  }
})
const base = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const runs = Number(values.runs)
const connectionList = values.connections.split(',').map(Number)
const preloadEvents = Number(values.preload)
const baseline = values.baseline && !values['no-baseline']
// --env KEY=VALUE (repeatable): server configuration for every scenario, e.g. --env WEBHOOK_BATCH_CONCURRENCY=2.
const serverEnv = Object.fromEntries(values.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
const token = 'bench_token_' + randomBytes(8).toString('hex')

const stream = buildStream({ ...REALISTIC, messages: Number(values.messages) }, token)
console.log(`stream: ${stream.length} signed callbacks for ${values.messages} messages (35 % WhatsApp, 10 % failures, 5 % out of order, 5 % duplicates); node ${process.version}`)

type Row = RunResult & Check & { run: number }
const rows: Row[] = []

async function scenario (run: number, label: string, connections: number, env: Record<string, string> = {}, preloaded = 0, entry?: string): Promise<void> {
  const db = await freshDatabase(base)
  const server = await startBenchServer(db.url, token, { ...serverEnv, ...env }, entry)
  try {
    if (preloaded > 0) {
      const t0 = Date.now()
      await preload(db.url, preloaded)
      console.log(`  preloaded ${preloaded} events in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
    }
    const result = await replay(server, stream, connections, label, db.url)
    const check = await checkDatabase(db.url, stream, result.acknowledged)
    rows.push({ ...result, ...check, run })
    console.log(`  run ${run} ${label} @${connections}: ${result.perSecond}/s p50 ${result.p50} ms p99 ${result.p99} ms non-2xx ${result.non2xx} errors ${result.errors} cpu ${result.serverCpu} % (${result.serverCpuUsPerCallback} µs/callback) db cpu ${result.dbCpu ?? '?'} % (${result.dbCpuUsPerCallback ?? '?'} µs/callback) rss ${result.peakRssMiB} MiB ${result.perTransaction ?? '?'} callbacks/transaction codes ${JSON.stringify(result.statusCodes)}; lost ${check.lost} doubled ${check.doubled} wrong ${check.wrongStatus}`)
  } finally {
    await server.stop()
    await db.drop()
  }
}

for (let run = 1; run <= runs; run++) {
  for (const c of connectionList) await scenario(run, 'group commit (default)', c)
  if (baseline) await scenario(run, 'group commit off (WEBHOOK_BATCH_MAX=1)', Math.max(...connectionList), { WEBHOOK_BATCH_MAX: '1' })
  if (preloadEvents > 0) await scenario(run, `${preloadEvents} events stored first`, Math.max(...connectionList), {}, preloadEvents)
  if (values.before !== undefined) await scenario(run, `before: ${values.before}`, Math.max(...connectionList), {}, 0, path.resolve(values.before))
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)] }
const groups = new Map<string, Row[]>()
for (const r of rows) {
  const key = `${r.label} | ${r.connections}`
  groups.set(key, [...(groups.get(key) ?? []), r])
}
console.log(`\nmedian of ${runs} run(s); each run sends every callback once`)
console.log('| scenario | connections | callbacks/s | p50 ms | p99 ms | non-2xx | lost | wrong final status | server CPU % (µs/callback) | database CPU % (µs/callback) | peak RSS MiB | callbacks a transaction | runs (callbacks/s) |')
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for (const [key, rs] of groups) {
  const [label, connections] = key.split(' | ')
  console.log(`| ${label} | ${connections} | ${median(rs.map((r) => r.perSecond))} | ${median(rs.map((r) => r.p50))} | ${median(rs.map((r) => r.p99))} | ${rs.reduce((n, r) => n + r.non2xx + r.errors, 0)} | ${rs.reduce((n, r) => n + r.lost + r.doubled, 0)} | ${rs.reduce((n, r) => n + r.wrongStatus, 0)} | ${median(rs.map((r) => r.serverCpu))} (${median(rs.map((r) => r.serverCpuUsPerCallback))}) | ${rs[0].dbCpu === null ? '?' : `${median(rs.map((r) => r.dbCpu ?? 0))} (${median(rs.map((r) => r.dbCpuUsPerCallback ?? 0))})`} | ${median(rs.map((r) => r.peakRssMiB))} | ${rs[0].perTransaction === null ? '?' : median(rs.map((r) => r.perTransaction ?? 0))} | ${rs.map((r) => r.perSecond).join(' / ')} |`)
}
const bad = rows.some((r) => r.lost + r.doubled + r.wrongStatus > 0)
if (bad) {
  console.error('\nFAILED: an acknowledged callback was lost or a message ended in the wrong status')
  process.exitCode = 1
}
