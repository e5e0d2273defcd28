/**
 * Starts Tidings: load config, open the database (`DATABASE_URL`, or the embedded PostgreSQL in
 * `DATA_DIR` when it is unset, started here and stopped last), migrate unless `MIGRATE_ON_START=false`, build, listen, and shut down
 * gracefully on SIGINT/SIGTERM (in-flight requests finish, then the pool closes).
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { loadConfigOrExit } from './config/config.ts'
import { openDatabase } from './db/connect.ts'
import { resolveDatabaseUrl } from './db/embedded-postgres.ts'
import { migrateToLatest } from './db/migrate.ts'
import { jobQueueConnectionOf } from './fallback/queue.ts'

/** How long shutdown may take before the process exits anyway, in ms. */
const SHUTDOWN_DELAY_MS = 10_000

async function main (): Promise<void> {
  const config = loadConfigOrExit(process.env)
  const { url, embedded } = await resolveDatabaseUrl(config)
  const database = await openDatabase({
    databaseUrl: url,
    poolMax: config.databasePoolMax,
    statementTimeoutMs: config.databaseStatementTimeoutMs
  })
  const app = await buildApp(config, { db: database.db, listen: database.listen, poolStats: database.poolStats, jobQueue: jobQueueConnectionOf(database) })
  if (embedded !== undefined) {
    app.log.warn({ dataDir: config.dataDir, port: embedded.port, how: embedded.how }, 'DATABASE_URL is not set: using the embedded PostgreSQL in DATA_DIR (for development and trials; use a managed PostgreSQL in production)')
  }
  if (config.migrateOnStart) {
    const ran = await migrateToLatest(database.db)
    if (ran.length > 0) app.log.info({ migrations: ran.map((r) => r.migrationName) }, 'migrated')
  }

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
