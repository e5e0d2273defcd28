/**
 * A TCP proxy on loopback in front of PostgreSQL that a test can cut, so database faults are real
 * socket faults (never the shared server stopped, never our own code stubbed):
 * - `refuse(ms)` stops listening (new connections get ECONNREFUSED) and destroys every open one;
 * - `failAtStatement(n)` counts the statements clients send (PostgreSQL frontend messages `Q`,
 *   simple query, and `P`, parse: https://www.postgresql.org/docs/current/protocol-message-formats.html)
 *   and, instead of forwarding the n-th, cuts every connection and refuses new ones for a moment;
 * - `holdCommitAnswerAfter(text, ms)` lets the server commit but holds its answer to the client for
 *   `ms`: a client stalled right after its commit, as a paused process or a blocked event loop is;
 *   `holdAnswerTo(text, ms)` does the same for a statement that commits on its own.
 * (test/helpers/tcp-proxy.ts is another developer's, more general proxy.)
 */
import net from 'node:net'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from '../../src/db/database.ts'
import { createTestDatabase } from './database.ts'

export interface CutProxy {
  /** The proxied server's URL (same user and database, the proxy's port). */
  url: string
  /** Statements (`Q`/`P` messages) seen so far, over every connection. */
  statements: () => number
  /**
   * Round trips so far, over every connection: messages that make the server answer and wait for
   * the client (`Q`, simple query, and `S`, Sync, which ends an extended-protocol pipeline).
   */
  roundTrips: () => number
  /** Refuses connections for `ms` and destroys the open ones. */
  refuse: (ms: number) => Promise<void>
  /** Cuts everything when the `n`-th statement from now arrives (that statement never reaches the server). */
  failAtStatement: (n: number, refuseMs?: number) => void
  /** True when the armed `failAtStatement` fired (or none is armed). */
  fired: () => boolean
  /**
   * On the first connection that sends a statement containing `text`, forwards the next `commit`
   * but holds everything the server sends back on that connection for `ms` (the transaction is
   * committed; its client learns so `ms` later). Once.
   */
  holdCommitAnswerAfter: (text: string, ms: number) => void
  /**
   * Forwards the first statement containing `text` (one outside a transaction commits as it runs)
   * but holds everything the server sends back on that connection for `ms`. Once.
   */
  holdAnswerTo: (text: string, ms: number) => void
  /** Disarms a `failAtStatement` that has not fired. */
  disarm: () => void
  close: () => Promise<void>
}

export async function startCutProxy (targetUrl: string): Promise<CutProxy> {
  const target = new URL(targetUrl)
  const sockets = new Set<net.Socket>()
  let seen = 0
  let trips = 0
  let failAt: number | undefined
  let refuseMsOnFail = 100
  let didFire = true
  let listening = false
  let closed = false
  let holdAfter: { text: string, ms: number, at: 'commit' | 'statement' } | undefined

  const cutAll = (): void => { for (const s of sockets) s.destroy() }
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname)
    sockets.add(client); sockets.add(upstream)
    const drop = (): void => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
    client.on('error', drop); upstream.on('error', drop); client.on('close', drop); upstream.on('close', drop)
    // While `held` is set, the server's answers wait in it (holdCommitAnswerAfter, holdAnswerTo).
    let held: Buffer[] | undefined
    let holding: 'armed' | undefined
    upstream.on('data', (chunk: Buffer) => { if (held !== undefined) held.push(chunk); else client.write(chunk) })
    let buffer = Buffer.alloc(0)
    let started = false
    client.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      for (;;) {
        // The startup message has no type byte; every later one is type (1) + length (4, itself included).
        const header = started ? 5 : 4
        if (buffer.length < header) return
        const length = started ? buffer.readInt32BE(1) + 1 : buffer.readInt32BE(0)
        if (buffer.length < length) return
        const message = buffer.subarray(0, length)
        buffer = buffer.subarray(length)
        if (!started) {
          // An SSLRequest (code 80877103) is followed by a real startup message.
          if (!(length === 8 && message.readInt32BE(4) === 80877103)) started = true
        } else if (message[0] === 0x53) {
          trips++
        } else if (message[0] === 0x51 || message[0] === 0x50) {
          if (message[0] === 0x51) trips++
          seen++
          const text = holdAfter === undefined ? '' : message.toString('utf8', 5)
          if (holdAfter !== undefined && holding === undefined && text.includes(holdAfter.text)) holding = 'armed'
          if (holding === 'armed' && holdAfter !== undefined && (holdAfter.at === 'statement' || /^commit\b/i.test(text))) {
            const ms = holdAfter.ms
            holdAfter = undefined
            holding = undefined
            held = []
            setTimeout(() => { for (const c of held ?? []) client.write(c); held = undefined }, ms)
          }
          if (failAt !== undefined && seen >= failAt) {
            failAt = undefined
            didFire = true
            refuse(refuseMsOnFail).catch(() => {})
            return
          }
        }
        upstream.write(message)
      }
    })
  })
  const listen = async (port: number): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    listening = true
  }
  await listen(0)
  const port = (server.address() as net.AddressInfo).port
  const refuse = async (ms: number): Promise<void> => {
    if (listening) {
      listening = false
      await new Promise<void>((resolve) => { server.close(() => resolve()); cutAll() })
    }
    await new Promise((resolve) => setTimeout(resolve, ms))
    if (!closed && !listening) await listen(port)
  }
  const url = new URL(targetUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.toString(),
    statements: () => seen,
    roundTrips: () => trips,
    refuse,
    failAtStatement: (n, refuseMs = 100) => { failAt = seen + n; refuseMsOnFail = refuseMs; didFire = false },
    holdCommitAnswerAfter: (text, ms) => { holdAfter = { text, ms, at: 'commit' } },
    holdAnswerTo: (text, ms) => { holdAfter = { text, ms, at: 'statement' } },
    fired: () => didFire,
    disarm: () => { failAt = undefined; didFire = true },
    close: async () => {
      closed = true
      cutAll()
      if (listening) await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/**
 * A Kysely database over `url` (the proxy's) like `openDatabase`'s, except that a client checked out
 * inside a transaction when its connection is cut gets an `error` listener. node-postgres emits an
 * unhandled `error` then, which would end the test process; src/db/connect.ts is being made
 * resilient to this in another branch (issue 10), so this test-only pool does it here.
 */
export function proxiedDatabase (url: string, opts: { queryTimeoutMs?: number } = {}): { db: Kysely<Database>, close: () => Promise<void> } {
  const pool = new pg.Pool({ connectionString: url, max: 40, connectionTimeoutMillis: 2000, statement_timeout: 5000, query_timeout: opts.queryTimeoutMs ?? 6000 })
  pool.on('error', () => {})
  pool.on('connect', (client) => { client.on('error', () => {}) })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  return { db, close: async () => { await db.destroy() } }
}

/**
 * A fresh test database (`createTestDatabase`) with a cut proxy in front of it and a Kysely over
 * the proxy (`proxiedDatabase`), all closed at teardown: `db` and `handle` reach the database
 * directly (the test's own checks, pg-boss), `proxied.db` through the proxy (the code under test).
 */
export async function proxiedTestDatabase (t: { teardown: (fn: () => unknown) => void }, opts: { queryTimeoutMs?: number } = {}) {
  const { db, url, handle } = await createTestDatabase(t)
  const proxy = await startCutProxy(url)
  t.teardown(async () => { await proxy.close() })
  const proxied = proxiedDatabase(proxy.url, opts)
  t.teardown(async () => { await proxied.close() })
  return { db, url, handle, proxy, proxied }
}
