import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import type { Database } from './database.ts'

// bigint (int8) ids exceed Number.MAX_SAFE_INTEGER in the long run: keep them as strings (pg's default).

/** What `openDatabase` needs; a subset of `Config`. */
export interface DatabaseOptions {
  /** PostgreSQL URL (the embedded default's comes from `startEmbeddedPostgres`). */
  databaseUrl: string
  /** Pool size. */
  poolMax?: number
  /** Statement timeout in ms. */
  statementTimeoutMs?: number
  /** How long to wait for a pool connection before failing, in ms. */
  connectionTimeoutMs?: number
}

/** An open database: the Kysely handle plus what it runs on. */
export interface DatabaseHandle {
  db: Kysely<Database>
  /** The PostgreSQL URL, for components that open their own pool (the job queue). */
  url: string
  /** Closes the pool. Idempotent. */
  close: () => Promise<void>
  /**
   * Calls `onNotify` on every NOTIFY of `channel` (LISTEN on a dedicated connection that reconnects
   * by itself). Resolves to an unsubscribe function.
   */
  listen: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>
  /** Pool state for metrics. */
  poolStats?: () => { total: number, idle: number, waiting: number }
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
 * Opens PostgreSQL at `databaseUrl`. Connecting is lazy: an unreachable server surfaces as errors
 * on the first query, which the webhook turns into 503.
 * @throws when `databaseUrl` is empty.
 */
export async function openDatabase (opts: DatabaseOptions): Promise<DatabaseHandle> {
  if (opts.databaseUrl !== '') {
    const pool = new pg.Pool({
      connectionString: opts.databaseUrl,
      max: opts.poolMax ?? 10,
      connectionTimeoutMillis: opts.connectionTimeoutMs ?? 2000,
      statement_timeout: opts.statementTimeoutMs ?? 5000,
      query_timeout: (opts.statementTimeoutMs ?? 5000) + 1000,
      idleTimeoutMillis: 30_000
    })
    // An idle client losing its connection must not crash the process.
    pool.on('error', () => {})
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    let closed = false
    return {
      db,
      url: opts.databaseUrl,
      listen: postgresListener(opts.databaseUrl),
      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
      close: async () => {
        if (closed) return
        closed = true
        await db.destroy()
      }
    }
  }
  // pg would read an empty URL as its defaults (PGHOST…): a caller's mistake, not a database.
  throw new Error('openDatabase: databaseUrl is empty')
}
