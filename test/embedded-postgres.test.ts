/**
 * The embedded default: with no DATABASE_URL, Tidings runs a real PostgreSQL from npm in DATA_DIR,
 * starts and stops it with the server, and shares it with the one-off commands.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import twilio from 'twilio'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, STATUS_PATH, formBody, messageSid, smsCallback } from './helpers/app.ts'
import { atProcessEnd, startServer } from './helpers/process.ts'

// Five server starts (initdb, restarts) and a migrate: minutes on a loaded machine, not a hang.
t.setTimeout(600_000)

const MIGRATE = fileURLToPath(new URL('../scripts/migrate.ts', import.meta.url))

function postmasterPid (dataDir: string): number | undefined {
  try {
    return Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return undefined
  }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** The data folders of the PostgreSQL servers this file may have left running. */
const started = new Set<string>()

/**
 * Stops (SIGINT, PostgreSQL's fast shutdown) every server this file started that still runs. The
 * servers are detached from the terminal's process group, so a Ctrl-C reaches Tidings but not
 * them, and a Tidings killed mid-test (or this file, interrupted before its teardowns) would leave
 * one behind.
 */
function stopLeftovers (): void {
  const pids = [...started].map(postmasterPid).filter((pid): pid is number => pid !== undefined && alive(pid))
  for (const pid of pids) { try { process.kill(pid, 'SIGINT') } catch {} }
  // Synchronously (this runs at exit): up to 5 s for them to go, then their folders.
  for (let i = 0; i < 100 && pids.some(alive); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
  for (const dataDir of started) rmSync(dataDir, { recursive: true, force: true })
}
atProcessEnd(stopLeftovers)

/** Never leave a server behind, even when an assertion fails halfway or the run is interrupted. */
function reap (t: Test, dataDir: string): void {
  started.add(dataDir)
  t.teardown(async () => {
    const pid = postmasterPid(dataDir)
    if (pid !== undefined && alive(pid)) { process.kill(pid, 'SIGINT'); await gone(pid) }
  })
}

async function gone (pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 100))
  return !alive(pid)
}

t.test('npm start with no DATABASE_URL runs on an embedded PostgreSQL in DATA_DIR, end to end, and stops it on SIGTERM', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  reap(t, dataDir)
  const env = {
    DATA_DIR: dataDir,
    PUBLIC_BASE_URL: 'https://hooks.example.com',
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    API_KEYS: `billing:${API_KEY}`
  }
  const server = await startServer(env, 90_000)
  t.teardown(async () => { await server.stop() })
  t.ok(server.logs.some((l) => typeof l.msg === 'string' && /embedded PostgreSQL/.test(l.msg) && l.how === 'started'), 'says it runs on the embedded PostgreSQL, freshly initialised')
  const pid = postmasterPid(dataDir)
  t.ok(pid !== undefined && alive(pid), 'the PostgreSQL server runs, its data in DATA_DIR/postgres')

  const sid = messageSid()
  const post = async (status: string): Promise<Response> => {
    const params = smsCallback(sid, status)
    return await fetch(`${server.address}${STATUS_PATH}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, `https://hooks.example.com${STATUS_PATH}`, params)
      },
      body: formBody(params)
    })
  }
  t.equal((await post('delivered')).status, 200)
  t.equal((await post('sent')).status, 200)
  t.same(await (await post('sent')).json(), { outcome: 'duplicate' })

  // A one-off command while the server runs reuses its PostgreSQL instead of starting another.
  const migrate = await promisify(execFile)(process.execPath, [MIGRATE], { env: { PATH: process.env.PATH, DATA_DIR: dataDir }, timeout: 60_000 })
  t.match(migrate.stdout, /Database is up to date\./, 'npm run migrate works beside the running server')
  t.equal(postmasterPid(dataDir), pid, 'on the same PostgreSQL server')
  t.ok(pid !== undefined && alive(pid), 'which the command left running')

  const auth = { authorization: `Bearer ${API_KEY}` }
  const message = await (await fetch(`${server.address}/v1/messages/${sid}`, { headers: auth })).json() as { status: string }
  t.equal(message.status, 'delivered')
  t.match(await (await fetch(`${server.address}/health`)).json(), { status: 'ok', database: 'ok' })

  t.equal(await server.stop(), 0, 'SIGTERM shuts down gracefully with exit code 0')
  t.ok(pid !== undefined && await gone(pid), 'and stops PostgreSQL')
  t.notOk(server.logs.some((l) => typeof l.level === 'number' && l.level >= 50), 'no error logged (job queue included)')

  // The data survives a restart: it is stored in DATA_DIR.
  const again = await startServer(env, 90_000)
  t.teardown(async () => { await again.stop() })
  t.ok(again.logs.some((l) => l.how === 'restarted'), 'the second start reuses the cluster on disk')
  const reread = await (await fetch(`${again.address}/v1/messages/${sid}`, { headers: auth })).json() as { status: string }
  t.equal(reread.status, 'delivered', 'kept across restarts')
  const second = postmasterPid(dataDir)
  t.equal(await again.stop(), 0)
  t.ok(second !== undefined && await gone(second), 'stopped again')
})

t.test('a server killed with SIGKILL leaves PostgreSQL running; the next start adopts it and stops it on shutdown', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  reap(t, dataDir)
  const env = { DATA_DIR: dataDir, PUBLIC_BASE_URL: 'https://hooks.example.com', TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: AUTH_TOKEN, API_KEYS: `billing:${API_KEY}` }
  const first = await startServer(env, 90_000)
  const pid = postmasterPid(dataDir) as number
  first.child.kill('SIGKILL')
  await first.stop()
  t.ok(alive(pid), 'PostgreSQL outlives a SIGKILLed server')
  const second = await startServer(env, 90_000)
  t.teardown(async () => { await second.stop() })
  t.ok(second.logs.some((l) => l.how === 'reused'), 'the next start reuses it')
  t.equal(await second.stop(), 0)
  t.ok(await gone(pid), 'and stops it on shutdown')
})

t.test('start-up fails with one clear error listing every bad variable', async (t) => {
  // 30 s: the error comes once the server's modules are loaded, about 1.5 s on an idle machine but
  // over 10 s during a full test run on a busy 2-core one (seen).
  await t.rejects(startServer({ PORT: 'x', TWILIO_ACCOUNT_SID: 'nope' }, 30_000), /Invalid configuration:[\s\S]*PORT[\s\S]*TWILIO_ACCOUNT_SID/)
})
