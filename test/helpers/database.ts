/**
 * A fresh, migrated PostgreSQL database per test file, on the server database-source.ts finds
 * (TEST_DATABASE_URL, else a container, else the embedded PostgreSQL from npm). Under `tap` every
 * file shares the run's one server and copies its migrated template (`CREATE DATABASE … TEMPLATE`,
 * graphile-worker's way: much faster than migrating per file); a file run alone starts its own.
 * Tests never silently skip: with no server at all they fail with the reason.
 */
import pg from 'pg'
import type { Kysely } from 'kysely'
import { openDatabase, type DatabaseHandle } from '../../src/db/connect.ts'
import type { Database } from '../../src/db/database.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { readRunState, startTestServer, uniqueName, withDatabase } from './database-source.ts'

interface Teardown { teardown: (fn: () => unknown) => void }

interface Server { url: string, template: string | undefined }

let own: Promise<Server> | undefined

/** The run's shared server, or (a file run alone) one started for this process and stopped at exit. */
async function server (): Promise<Server> {
  const run = readRunState()
  if (run !== undefined) return { url: run.url, template: run.template }
  own ??= (async () => {
    const started = await startTestServer()
    process.stderr.write(`# test database: ${started.description}\n`)
    // One server for every test of this file: stopped when the root test ends.
    const tap = (await import('tap')).default
    tap.teardown(async () => { await started.stop() })
    return { url: started.url, template: undefined }
  })()
  return await own
}

async function admin (url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try { await client.query(sql) } finally { await client.end() }
}

async function createDatabase (t: Teardown, template: string | undefined): Promise<string> {
  const base = await server()
  const name = uniqueName('tidings_test')
  await admin(base.url, `CREATE DATABASE ${name}${template === undefined ? '' : ` TEMPLATE ${template}`}`)
  t.teardown(async () => { await admin(base.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) })
  return withDatabase(base.url, name)
}

/**
 * Creates an empty database `tidings_test_<random>` on the test server and drops it at teardown.
 * @returns its connection URL.
 */
export async function createTestDatabaseUrl (t: Teardown): Promise<string> {
  return await createDatabase(t, undefined)
}

/** A fresh migrated database, opened with Tidings' own `openDatabase`, closed at teardown. */
export async function createTestDatabase (t: Teardown): Promise<{ url: string, handle: DatabaseHandle, db: Kysely<Database> }> {
  const template = (await server()).template
  const url = await createDatabase(t, template)
  // Patient timeouts: on a loaded machine a pool wait or a commit can take seconds, and a 503 there
  // would fail a behaviour test for the machine's sake. Tests about timeouts open their own handle.
  const handle = await openDatabase({ databaseUrl: url, connectionTimeoutMs: 30_000, statementTimeoutMs: 30_000 })
  // Registered after the DROP, so it runs first (tap runs teardowns last-in first-out).
  t.teardown(async () => { await handle.close() })
  // On the template this finds nothing to do; alone, it migrates.
  await migrateToLatest(handle.db)
  return { url, handle, db: handle.db }
}
