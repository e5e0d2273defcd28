/**
 * Shared start of the one-off maintenance commands (`npm run reconcile`, `npm run retention`):
 * the full configuration (exit 1 with every problem listed when it is invalid), the database,
 * and a logger on stderr so stdout carries only the command's report.
 */
import pino, { type Logger } from 'pino'
import { loadConfigOrExit, type Config } from '../src/config/config.ts'
import { openDatabase, type DatabaseHandle } from '../src/db/connect.ts'
import { loggerOptions } from '../src/logger.ts'

export interface Cli { config: Config, database: DatabaseHandle, log: Logger }

export async function startCli (): Promise<Cli> {
  const config = loadConfigOrExit(process.env)
  const log = pino(loggerOptions(config.logLevel), pino.destination(2))
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolMax: 2,
    statementTimeoutMs: config.databaseStatementTimeoutMs
  })
  return { config, database, log }
}
