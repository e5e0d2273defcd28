import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { defaultReadPoolMax } from '../config/resilience.ts'
import type { Database } from './database.ts'
import { marksStatements } from './round-trips.ts'

export { preparedStatement, sentWithNext } from './round-trips.ts'

// bigint (int8) ids exceed Number.MAX_SAFE_INTEGER in the long run: keep them as strings (pg's default).

/** What `openDatabase` needs; a subset of `Config`. */
export interface DatabaseOptions {
  /** PostgreSQL URL (the embedded default's comes from `startEmbeddedPostgres`). */
  databaseUrl: string
  /** Pool size (PostgreSQL only). */
  poolMax?: number
  /** Statement timeout in ms (PostgreSQL only). */
  statementTimeoutMs?: number
  /** How long to wait for a pool connection before failing, in ms. */
  connectionTimeoutMs?: number
  /**
   * Size of the second, smaller pool for reads (`readDb`: the `/v1` API, stats, stream catch-up,
   * `/metrics`), so that reads can never take the connections webhooks record with (PostgreSQL only).
   */
  readPoolMax?: number
  /** Told of every connection that dropped (logged by the server); the process carries on. */
  onConnectionError?: (err: Error, pool: 'write' | 'read') => void
}

/** An open database: the Kysely handle plus what it runs on. */
export interface DatabaseHandle {
  /** Writes: recording webhooks, sending, the fallback worker (`DATABASE_POOL_MAX`). */
  db: Kysely<Database>
  /** Reads that must not take the writers' connections (`DATABASE_READ_POOL_MAX`). */
  readDb: Kysely<Database>
  /** The PostgreSQL URL, for components that open their own pool (the job queue). */
  url: string
  /** Closes both pools. Idempotent. */
  close: () => Promise<void>
  /**
   * Calls `onNotify` on every NOTIFY of `channel` (PostgreSQL LISTEN on a dedicated connection that
   * reconnects by itself). Resolves to an unsubscribe function.
   */
  listen: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>
  /** Pool state for metrics (PostgreSQL only). */
  poolStats?: () => { total: number, idle: number, waiting: number }
  /** The read pool's state for metrics (PostgreSQL only). */
  readPoolStats?: () => { total: number, idle: number, waiting: number }
}

/** Delay before a lost LISTEN connection is re-opened, in ms. */
const RELISTEN_DELAY_MS = 1000

function postgresListener (connectionString: string) {
  return async (channel: string, onNotify: () => void): Promise<() => Promise<void>> => {
    let client: pg.Client | undefined
    let stopped = false
    let retry: NodeJS.Timeout | undefined
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString, connectionTimeoutMillis: 5000 })
      c.on('notification', (msg) => { if (msg.channel === channel) onNotify() })
      const reconnect = (): void => {
        if (stopped || client !== c) return
        client = undefined
        c.removeAllListeners('end')
        c.end().catch(() => {})
        retry = setTimeout(() => { connect().catch(() => {}) }, RELISTEN_DELAY_MS)
        retry.unref()
      }
      c.on('error', reconnect)
      c.on('end', reconnect)
      client = c
      try {
        await c.connect()
        await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
        onNotify() // anything committed while we were not listening
      } catch (err) {
        reconnect()
        throw err
      }
    }
    await connect().catch(() => {})
    return async () => {
      stopped = true
      clearTimeout(retry)
      const c = client
      client = undefined
      if (c !== undefined) {
        c.removeAllListeners('end')
        await c.end().catch(() => {})
      }
    }
  }
}

/**
 * A pg pool whose clients survive their connection dropping (server restart or crash, network
 * cut): pg emits `'error'` on a client whose socket dies, and pg-pool listens only while the client
 * is idle, so a client checked out by Kysely (mid-query, mid-transaction, between the statements of
 * a transaction) would raise an uncaught exception and take the process down. Every client gets its
 * own listener for its whole life; the query in flight still rejects with the error (the webhook
 * answers 503), and pg-pool discards the dead client on release (`_queryable` is false).
 */
export function resilientPool (config: pg.PoolConfig, onError: (err: Error) => void = () => {}): pg.Pool {
  const pool = new pg.Pool(config)
  // An idle client losing its connection.
  pool.on('error', (err) => onError(err))
  pool.on('connect', (client) => {
    // A client in use losing its connection (and, harmlessly, an idle one too: both listeners run).
    client.on('error', (err) => onError(err))
    marksStatements(client)
  })
  return pool
}

function statsOf (pool: pg.Pool): () => { total: number, idle: number, waiting: number } {
  return () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount })
}

/**
 * Opens PostgreSQL at `databaseUrl` with a write pool and a read pool. Connecting is lazy: an unreachable server surfaces as errors on the first query,
 * which the webhook turns into 503.
 */
export async function openDatabase (opts: DatabaseOptions): Promise<DatabaseHandle> {
  if (opts.databaseUrl !== '') {
    const poolConfig = {
      connectionString: opts.databaseUrl,
      connectionTimeoutMillis: opts.connectionTimeoutMs ?? 2000,
      statement_timeout: opts.statementTimeoutMs ?? 5000,
      query_timeout: (opts.statementTimeoutMs ?? 5000) + 1000,
      idleTimeoutMillis: 30_000
    }
    const poolMax = opts.poolMax ?? 10
    const pool = resilientPool({ ...poolConfig, max: poolMax, application_name: 'tidings' }, (err) => opts.onConnectionError?.(err, 'write'))
    // Reads wait for a read connection as long as a statement may run: the read pool is their
    // queue (webhooks never wait behind it), and a heavy read is limited before it gets here.
    const readPool = resilientPool({
      ...poolConfig,
      max: opts.readPoolMax ?? defaultReadPoolMax(poolMax),
      connectionTimeoutMillis: Math.max(poolConfig.connectionTimeoutMillis, opts.statementTimeoutMs ?? 5000),
      application_name: 'tidings-read'
    }, (err) => opts.onConnectionError?.(err, 'read'))
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    const readDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: readPool }) })
    let closed = false
    return {
      db,
      readDb,
      url: opts.databaseUrl,
      listen: postgresListener(opts.databaseUrl),
      poolStats: statsOf(pool),
      readPoolStats: statsOf(readPool),
      close: async () => {
        if (closed) return
        closed = true
        await Promise.all([db.destroy(), readDb.destroy()])
      }
    }
  }
  // pg would read an empty URL as its defaults (PGHOST…): a caller's mistake, not a database.
  throw new Error('openDatabase: databaseUrl is empty')
}
