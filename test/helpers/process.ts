/**
 * Runs `node src/server.ts` as a child process and waits until it listens.
 */
import { readFileSync } from 'node:fs'
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

export const SERVER_ENTRY = fileURLToPath(new URL('../../src/server.ts', import.meta.url))

export interface ServerProcess {
  child: ChildProcess
  /** e.g. `http://127.0.0.1:43121` */
  address: string
  /** Every log line so far, parsed (only up to the "listening" line with `keepLogs: false`). */
  logs: Array<Record<string, unknown>>
  /** Sends SIGTERM and resolves with the exit code. */
  stop: () => Promise<number | null>
}

/** A TCP port that was free a moment ago. */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

const atEnd: Array<() => void> = []

/**
 * Runs `fn` (synchronous) when this process ends: at exit, or on SIGINT/SIGTERM/SIGHUP (then the
 * signal is raised again, so the process still ends as it would have). A Ctrl-C ends a test file
 * before its teardowns run, and a signal's default action skips 'exit' listeners.
 */
export function atProcessEnd (fn: () => void): void {
  atEnd.push(fn)
  if (atEnd.length > 1) return
  const run = (): void => { for (const f of atEnd.splice(0)) { try { f() } catch {} } }
  process.once('exit', run)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => { run(); process.kill(process.pid, signal) })
  }
}

/** Servers started by this test process and not yet exited. */
const running = new Set<ChildProcess>()
// A test process that ends takes its servers with it: SIGTERM, so each stops the embedded
// PostgreSQL it may have started. Without this a server spawned just as Ctrl-C arrived outlived
// the run, PostgreSQL and all.
atProcessEnd(() => { for (const child of running) child.kill('SIGTERM') })

/**
 * Starts the server with `env` and resolves once it listens: found from its "listening" log line
 * (PORT 0, the default, needs LOG_LEVEL info), or, when LOG_LEVEL is above info, by picking a free
 * port and polling `/health`.
 */
export async function startServer (env: Record<string, string | undefined>, timeoutMs = 30_000, entry: string = SERVER_ENTRY, opts: { keepLogs?: boolean } = {}): Promise<ServerProcess> {
  if (env.LOG_LEVEL !== undefined && !['info', 'debug', 'trace'].includes(env.LOG_LEVEL) && env.PORT === undefined) {
    env = { ...env, PORT: String(await freePort()) }
  }
  const polled = env.PORT !== undefined && env.PORT !== '0' ? `http://127.0.0.1:${env.PORT}` : undefined
  const child = spawn(process.execPath, [entry], {
    // Load shedding off: these tests are about behaviour, not about how busy the test machine is.
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', MAX_EVENT_LOOP_DELAY_MS: '0', ...env },
    // The IPC channel: if this process dies before stopping the server, the server sees the channel
    // close and shuts down (src/server.ts), taking its embedded PostgreSQL with it.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  running.add(child)
  child.once('exit', () => running.delete(child))
  const logs: Array<Record<string, unknown>> = []
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs)
    let buffered = ''
    // With `keepLogs: false` (benchmarks) the lines after "listening" are read and dropped, as a
    // log shipper on another machine would take them, instead of parsed by the load generator.
    let parsing = true
    child.stdout?.on('data', (d: Buffer) => {
      if (!parsing) return
      buffered += d.toString()
      let nl
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        try {
          const entry = JSON.parse(line) as Record<string, unknown>
          logs.push(entry)
          const m = typeof entry.msg === 'string' ? /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(entry.msg) : null
          if (m !== null) { clearTimeout(timer); resolve(m[1]); if (opts.keepLogs === false) { parsing = false; return } }
        } catch { /* not a log line */ }
      }
    })
    exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${stderr}`)) }, reject)
    if (polled !== undefined) {
      let settled = false
      exited.then(() => { settled = true }, () => { settled = true })
      const poll = (): void => {
        if (settled) return
        const again = (): void => { setTimeout(poll, 100) }
        fetch(`${polled}/health`).then((res) => {
          if (res.status < 500) { settled = true; clearTimeout(timer); resolve(polled) } else again()
        }, again)
      }
      poll()
    }
  })
  // Ready means /health answers 200, as a load balancer would require: right after a blocking
  // start-up (module loading, pg-boss) load shedding can answer 503 for a sample interval.
  const readyBy = Date.now() + timeoutMs
  while (Date.now() < readyBy && child.exitCode === null) {
    const status = await fetch(`${address}/health`).then((r) => r.status, () => 0)
    if (status === 200) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    child,
    address,
    logs,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM')
      return await exited
    }
  }
}

/**
 * The V8 flags (`--max-…`) of package.json's `start` script, so the bench runs the server as
 * `npm start` does (today `--max-semi-space-size=8`: docs/performance.md, Memory).
 */
export function startScriptV8Flags (): string[] {
  return startScript().split(/\s+/).filter((arg) => /^--max-[a-z-]+=\d+$/.test(arg))
}

/**
 * The environment package.json's `start` script sets before `node` (`KEY=value` or
 * `KEY=${KEY:-default}`: today `MALLOC_ARENA_MAX`, docs/performance.md, Memory), as the values the
 * script gives when the caller's environment has none.
 */
export function startScriptEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const word of startScript().split(/\s+/)) {
    const m = /^([A-Z_][A-Z0-9_]*)=(?:\$\{\1:-([^}]*)\}|([^$\s]*))$/.exec(word)
    if (m === null) break
    env[m[1]] = m[2] ?? m[3]
  }
  return env
}

function startScript (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
  return pkg.scripts.start
}
