/**
 * `npm run migrate`: runs pending migrations against DATABASE_URL (or the embedded PostgreSQL in
 * DATA_DIR, shared with a running server) and exits. Only the database variables are read, so no Twilio token is needed here.
 */
import { openDatabase } from '../src/db/connect.ts'
import { resolveDatabaseUrl } from '../src/db/embedded-postgres.ts'
import { migrateToLatest } from '../src/db/migrate.ts'

const { url, embedded } = await resolveDatabaseUrl({
  databaseUrl: process.env.DATABASE_URL === '' ? undefined : process.env.DATABASE_URL,
  dataDir: process.env.DATA_DIR ?? './data'
})
const database = await openDatabase({ databaseUrl: url })
try {
  const ran = await migrateToLatest(database.db)
  for (const r of ran) console.log(`${r.status === 'Success' ? 'applied' : r.status}: ${r.migrationName}`)
  console.log(ran.length === 0 ? 'Database is up to date.' : `${ran.length} migration(s) applied.`)
} finally {
  await database.close()
  await embedded?.stop()
}
