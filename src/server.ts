/**
 * Starts Tidings: load config, open the database (`DATABASE_URL`, or the embedded PostgreSQL in
 * `DATA_DIR` when it is unset, started here and stopped last), migrate unless `MIGRATE_ON_START=false`, build, listen, and shut down
 * gracefully on SIGINT/SIGTERM (in-flight requests finish, then the pool closes).
 */
import v8 from 'node:v8'
import closeWithGrace from 'close-with-grace'
import type { FastifyBaseLogger } from 'fastify'
import { buildApp } from './app.ts'
import { loadConfigOrExit } from './config/config.ts'
import { openDatabase } from './db/connect.ts'
import { resolveDatabaseUrl } from './db/embedded-postgres.ts'
import { migrateToLatest } from './db/migrate.ts'
import { unavailableReason, waitForDatabase } from './db/wait-for-database.ts'
import { jobQueueConnectionOf } from './fallback/queue.ts'

/**
 * How far V8 lets the old generation grow past the live heap before its next full collection:
 * 30 % (`--heap-growing-percent`, a V8 flag Node refuses in NODE_OPTIONS, hence set here) instead
 * of V8's own factor, which on a small heap allows up to four times the live size. Under the
 * bench's 32 connections the peak RSS went from 229 to 178 MiB with no measurable CPU cost
 * (docs/performance.md, Memory).
 */
const HEAP_GROWING_PERCENT = 30
v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)

/** How long shutdown may take before the process exits anyway, in ms. */
const SHUTDOWN_DELAY_MS = 10_000

/**
 * Until close-with-grace takes over, SIGINT/SIGTERM end the process with a normal exit (130/143),
 * so 'exit' hooks run: an embedded PostgreSQL being started is stopped, not left running. Node's
 * default for these signals ends the process without them.
 */
function exitOnSignal (signal: NodeJS.Signals): void {
  process.exit(signal === 'SIGINT' ? 130 : 143)
}

async function main (): Promise<void> {
  process.once('SIGINT', exitOnSignal)
  process.once('SIGTERM', exitOnSignal)
  // Started by a parent over an IPC channel (a supervisor, the tests): when the parent is gone,
  // even killed with SIGKILL, shut down as on SIGTERM instead of running on as an orphan.
  if (process.send !== undefined) {
    process.channel?.unref() // the channel alone does not keep the process running
    process.once('disconnect', () => { process.kill(process.pid, 'SIGTERM') })
  }
  const config = loadConfigOrExit(process.env)
  const { url, embedded } = await resolveDatabaseUrl(config)
  // Set once the app (and its logger) exists; a connection can only drop after that.
  const logTo: { log?: FastifyBaseLogger } = {}
  const database = await openDatabase({
    databaseUrl: url,
    poolMax: config.databasePoolMax,
    readPoolMax: config.resilience.databaseReadPoolMax,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    onConnectionError: (err, pool) => logTo.log?.warn({ pool, reason: unavailableReason(err) }, 'database connection lost; requests using it answer 503 and new connections are opened')
  })
  const app = await buildApp(config, { db: database.db, readDb: database.readDb, listen: database.listen, poolStats: database.poolStats, readPoolStats: database.readPoolStats, jobQueue: jobQueueConnectionOf(database) })
  logTo.log = app.log
  if (embedded !== undefined) {
    app.log.warn({ dataDir: config.dataDir, port: embedded.port, how: embedded.how }, 'DATABASE_URL is not set: using the embedded PostgreSQL in DATA_DIR (for development and trials; use a managed PostgreSQL in production)')
  }
  try {
    await waitForDatabase(database.db, { timeoutMs: config.resilience.databaseStartupTimeoutMs, log: app.log })
  } catch (err) {
    app.log.fatal({ err }, 'could not start: the database is not available')
    await database.close()
    await embedded?.stop()
    process.exit(1)
  }
  if (config.migrateOnStart) {
    const ran = await migrateToLatest(database.db)
    if (ran.length > 0) app.log.info({ migrations: ran.map((r) => r.migrationName) }, 'migrated')
  }

  process.removeListener('SIGINT', exitOnSignal)
  process.removeListener('SIGTERM', exitOnSignal)
  closeWithGrace({ delay: SHUTDOWN_DELAY_MS }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else app.log.info({ signal }, 'shutting down')
    await app.close()
    await database.close()
    await embedded?.stop()
  })

  await app.listen({ port: config.port, host: config.host })
}

await main()
