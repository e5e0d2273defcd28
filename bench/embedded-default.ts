/**
 * Benchmark of the embedded default (no DATABASE_URL): start time to the first `/health` 200 on a
 * fresh and on an existing DATA_DIR, idle and loaded memory, and new-callback throughput at
 * BENCH_CONNECTIONS (default 8). Run: `node bench/embedded-default.ts [seconds]`.
 * Memory is the PSS (proportional set size: shared pages split between the processes sharing them)
 * summed over the server and every process it started (the embedded PostgreSQL's backends), so
 * an engine in child processes is not flattered by counting only Node's RSS.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import autocannon from 'autocannon'
import twilio from 'twilio'
import { startServer, type ServerProcess } from '../test/helpers/process.ts'

const seconds = Number(process.argv[2] ?? 10)
const connections = Number(process.env.BENCH_CONNECTIONS ?? 8)
const ACCOUNT_SID = 'AC' + 'f'.repeat(32)
const TOKEN = 'bench_token_' + randomBytes(8).toString('hex')
const PUBLIC = 'https://hooks.example.com'
const PATH = '/webhooks/twilio/status'
const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-bench-embedded-'))
const env = {
  DATA_DIR: dataDir,
  PUBLIC_BASE_URL: PUBLIC,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: TOKEN,
  API_KEYS: `bench:k_bench_${randomBytes(12).toString('hex')}`,
  LOG_LEVEL: 'warn',
  RATE_LIMIT_PER_MINUTE: '100000000'
}

/** Descendants of `pid` (and `pid` itself), from `ps`. */
function tree (pid: number): number[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' }).trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number))
  const out = [pid]
  for (let i = 0; i < out.length; i++) for (const [p, pp] of rows) if (pp === out[i]) out.push(p)
  return out
}
function pssMiB (pid: number): number {
  let kib = 0
  for (const p of tree(pid)) {
    try { kib += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'))?.[1] ?? 0) } catch { /* exited */ }
  }
  return Math.round(kib / 1024)
}
async function timedStart (): Promise<{ server: ServerProcess, ms: number }> {
  const started = Date.now()
  const server = await startServer(env, 120_000) // resolves once /health answers 200
  return { server, ms: Date.now() - started }
}

const first = await timedStart()
await first.server.stop()
const second = await timedStart()
const server = second.server
await new Promise((resolve) => setTimeout(resolve, 3000))
const idle = pssMiB(server.child.pid as number)
let peak = 0
const sampler = setInterval(() => { peak = Math.max(peak, pssMiB(server.child.pid as number)) }, 500)
const result = await autocannon({
  url: server.address,
  connections,
  duration: seconds,
  requests: [{
    method: 'POST',
    path: PATH,
    setupRequest: (req) => {
      const sid = 'SM' + randomBytes(16).toString('hex')
      const params = { MessageSid: sid, SmsSid: sid, MessageStatus: 'sent', SmsStatus: 'sent', AccountSid: ACCOUNT_SID, From: '+14155550100', To: '+15558675310', ApiVersion: '2010-04-01' }
      return { ...req, body: new URLSearchParams(params).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(TOKEN, PUBLIC + PATH, params) } }
    }
  }]
} as autocannon.Options)
clearInterval(sampler)
await server.stop()
rmSync(dataDir, { recursive: true, force: true })
console.log(`| start, fresh DATA_DIR (s) | start, existing DATA_DIR (s) | idle PSS (MiB) | loaded PSS peak (MiB) | new callbacks/s at ${connections} conn. | non-2xx |`)
console.log('|---|---|---|---|---|---|')
console.log(`| ${(first.ms / 1000).toFixed(1)} | ${(second.ms / 1000).toFixed(1)} | ${idle} | ${peak} | ${Math.round(result.requests.average)} | ${result.non2xx} |`)
