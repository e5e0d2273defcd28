/**
 * A real Tidings process (`node src/server.ts`) whose database connections all go through a TCP
 * proxy the test controls (test/helpers/tcp-proxy.ts), on a fresh test database.
 */
import type { Kysely } from 'kysely'
import pg from 'pg'
import type { Test } from 'tap'
import { openDatabase } from '../../src/db/connect.ts'
import type { Database } from '../../src/db/database.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL } from './app.ts'
import { createTestDatabase } from './database.ts'
import { lostAcknowledged, type Load } from './load.ts'
import { spawn, type ChildProcess } from 'node:child_process'
import { SERVER_ENTRY, startServer, type ServerProcess } from './process.ts'
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts'

interface TapLike { teardown: (fn: () => unknown) => void }

export interface FaultRig {
  server: ServerProcess
  proxy: TcpProxy
  /** Direct to the test database, not through the proxy: for checks. */
  db: Kysely<Database>
  url: string
  /** Exit codes (or signals) of the server, if it exited. */
  exits: string[]
}

/** The environment of a server behind `proxy` (Twilio signing as in test/helpers/app.ts). */
export function faultEnv (proxiedUrl: string, env: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    DATABASE_URL: proxiedUrl,
    MIGRATE_ON_START: 'false',
    PUBLIC_BASE_URL,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    API_KEYS: `billing:${API_KEY}`,
    // Every request logs a line; warn keeps the pipe quiet under load (startServer then polls /health).
    LOG_LEVEL: 'warn',
    ...env
  }
}

/**
 * Starts the proxy and the server on a fresh migrated database (on the test server, or on
 * `opts.serverUrl`, e.g. the test's own PostgreSQL); both stop at teardown.
 */
export async function startFaultRig (t: TapLike, env: Record<string, string | undefined> = {}, opts: { serverUrl?: string } = {}): Promise<FaultRig> {
  const { db, url } = opts.serverUrl === undefined ? await createTestDatabase(t) : await migratedDatabaseOn(t, opts.serverUrl)
  const target = new URL(url)
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  t.teardown(async () => { await proxy.close() })
  const server = await startServer(faultEnv(proxy.urlThrough(url), env), 90_000)
  const exits: string[] = []
  server.child.once('exit', (code, signal) => { exits.push(String(code ?? signal)) })
  t.teardown(async () => { await server.stop() })
  return { server, proxy, db, url, exits }
}

/** A fresh migrated database `tidings_faults` on the server at `serverUrl`. */
async function migratedDatabaseOn (t: TapLike, serverUrl: string): Promise<{ db: Kysely<Database>, url: string }> {
  const admin = new pg.Client({ connectionString: serverUrl })
  await admin.connect()
  await admin.query('CREATE DATABASE tidings_faults')
  await admin.end()
  const u = new URL(serverUrl)
  u.pathname = '/tidings_faults'
  const url = u.toString()
  const handle = await openDatabase({ databaseUrl: url })
  t.teardown(async () => { await handle.close() })
  await migrateToLatest(handle.db)
  return { db: handle.db, url }
}

/** Polls `probe` every 100 ms until it is true; throws after `timeoutMs`. */
export async function until (probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

export async function sleep (ms: number): Promise<void> { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** `promise`, or an error after `ms` (a fault that never triggers must not hang the test). */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms) })])
  } finally { clearTimeout(timer) }
}

/**
 * The checks every fault test ends with: a callback sent after `restoredAt` is acknowledged, the
 * process never exited, every acknowledged callback is stored. Reports the recovery time.
 */
export async function survived (t: Test, rig: FaultRig, load: Load, restoredAt: number, what: string): Promise<void> {
  const recovered = await load.ackedAfter(restoredAt)
  await sleep(300)
  await load.stop()
  t.same(rig.exits, [], 'the process did not exit')
  t.equal(rig.server.child.exitCode, null, 'and is running')
  t.same(await lostAcknowledged(rig.db, load.attempts), [], 'every acknowledged callback is stored')
  t.comment(`${what}: recovery ${recovered - restoredAt} ms; answers ${JSON.stringify(load.counts())}`)
}

export interface SpawnedServer {
  child: ChildProcess
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>
  /** Resolves with the first log line (so far or to come) whose `msg` matches. */
  logged: (msg: RegExp, timeoutMs?: number) => Promise<Record<string, unknown>>
  exited: Promise<number | null>
}

/** `node src/server.ts` with `env`, watched line by line from its first log line (LOG_LEVEL info). */
export function spawnServer (env: Record<string, string | undefined>): SpawnedServer {
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', MAX_EVENT_LOOP_DELAY_MS: '0', ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const logs: Array<Record<string, unknown>> = []
  let buffered = ''
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString()
    let nl
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      try { logs.push(JSON.parse(line) as Record<string, unknown>) } catch { /* not a log line */ }
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    logs,
    exited,
    logged: async (msg, timeoutMs = 90_000) => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const line = logs.find((l) => typeof l.msg === 'string' && msg.test(l.msg))
        if (line !== undefined) return line
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no log line ${String(msg)} (exit code ${String(child.exitCode)})`)
        await sleep(50)
      }
    }
  }
}
