/**
 * A fresh, migrated PostgreSQL database per test file.
 * Uses `TEST_DATABASE_URL` (a server where we may CREATE DATABASE) when set; otherwise starts a
 * PostgreSQL container with testcontainers, which needs Docker. With neither, tests fail loudly:
 * they never silently skip.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Kysely } from 'kysely'
import { openDatabase, type DatabaseHandle } from '../../src/db/connect.ts'
import type { Database } from '../../src/db/database.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'

interface Teardown { teardown: (fn: () => unknown) => void }

async function serverUrl (t: Teardown): Promise<string> {
  const fromEnv = process.env.TEST_DATABASE_URL
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  let PostgreSqlContainer
  try {
    ({ PostgreSqlContainer } = await import('@testcontainers/postgresql'))
  } catch (err) {
    throw new Error('Set TEST_DATABASE_URL to a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres), or run Docker for testcontainers', { cause: err })
  }
  const container = await new PostgreSqlContainer('postgres:17-alpine').start()
  t.teardown(async () => { await container.stop() })
  return container.getConnectionUri()
}

/**
 * Creates a database named `tidings_test_<random>` on the test server and drops it at teardown.
 * @returns its connection URL.
 */
export async function createTestDatabaseUrl (t: Teardown): Promise<string> {
  const base = await serverUrl(t)
  const name = `tidings_test_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: base })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: base })
    await c.connect()
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await c.end()
  })
  const url = new URL(base)
  url.pathname = `/${name}`
  return url.toString()
}

/** A fresh migrated database, opened with Tidings' own `openDatabase`, closed at teardown. */
export async function createTestDatabase (t: Teardown): Promise<{ url: string, handle: DatabaseHandle, db: Kysely<Database> }> {
  const url = await createTestDatabaseUrl(t)
  const handle = await openDatabase({ databaseUrl: url, dataDir: '' })
  // Registered after the DROP, so it runs first (tap runs teardowns last-in first-out).
  t.teardown(async () => { await handle.close() })
  await migrateToLatest(handle.db)
  return { url, handle, db: handle.db }
}
