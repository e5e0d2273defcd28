/**
 * Shared start of the one-off maintenance commands (`npm run reconcile`, `npm run retention`):
 * the full configuration (exit 1 with every problem listed when it is invalid), the database,
 * and a logger on stderr so stdout carries only the command's report.
 */
import pino, { type Logger } from 'pino'
import { loadConfigOrExit, type Config } from '../src/config/config.ts'
import { openDatabase, type DatabaseHandle } from '../src/db/connect.ts'
import { resolveDatabaseUrl } from '../src/db/embedded-postgres.ts'
import { loggerOptions } from '../src/logger.ts'

export interface Cli {
  config: Config
  database: DatabaseHandle
  log: Logger
  /** Closes the pool, then stops the embedded PostgreSQL if this command started it. */
  close: () => Promise<void>
}

export async function startCli (): Promise<Cli> {
  const config = loadConfigOrExit(process.env)
  const log = pino(loggerOptions(config.logLevel), pino.destination(2))
  // With DATABASE_URL unset this reuses the embedded PostgreSQL of a running server (or starts one).
  const { url, embedded } = await resolveDatabaseUrl(config)
  const database = await openDatabase({
    databaseUrl: url,
    poolMax: 2,
    statementTimeoutMs: config.databaseStatementTimeoutMs
  })
  const close = async (): Promise<void> => {
    await database.close()
    await embedded?.stop()
  }
  return { config, database, log, close }
}
