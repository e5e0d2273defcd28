/**
 * A TCP proxy on loopback between Tidings and PostgreSQL that a test can cut, stall and restore:
 * the database faults of docs/reliability.md without touching the shared server.
 *
 * - `cut()` resets every open connection (the client sees ECONNRESET, as after a server crash);
 *   new connections are still accepted.
 * - `down()` resets every open connection and every new one until `restore()` (a server that is
 *   not answering: start-up with the database down, a restart).
 * - `stall()` stops forwarding in both directions; bytes wait, nothing is lost, no error is seen
 *   (a network partition or a frozen server) until `restore()`.
 * - `cutWhen(pattern)` resets every connection the moment a client sends bytes matching `pattern`,
 *   after forwarding them when `forward` is true (e.g. `/commit/i`: the server may have committed
 *   but the client never hears so). Once, then the proxy forwards normally again.
 */
import net from 'node:net'

export interface TcpProxy {
  /** The port the proxy listens on (127.0.0.1). */
  port: number
  /** `url` with its host and port replaced by the proxy's. */
  urlThrough: (url: string) => string
  /** Connections open now. */
  readonly open: number
  cut: () => void
  down: () => void
  stall: () => void
  restore: () => void
  /**
   * Cuts every connection when a client next sends bytes matching `pattern`.
   * @returns a promise that resolves when that happened.
   */
  cutWhen: (pattern: RegExp, opts?: { forward?: boolean }) => Promise<void>
  close: () => Promise<void>
}

interface Pair { client: net.Socket, server: net.Socket }

/** Starts a proxy to `target` (host and port of PostgreSQL) on a free loopback port. */
export async function startTcpProxy (target: { host: string, port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>()
  let mode: 'up' | 'down' | 'stalled' = 'up'
  let trigger: { pattern: RegExp, forward: boolean, fired: () => void } | undefined

  const reset = (pair: Pair): void => {
    pairs.delete(pair)
    pair.client.resetAndDestroy()
    pair.server.resetAndDestroy()
  }
  const cutAll = (): void => { for (const pair of [...pairs]) reset(pair) }

  const server = net.createServer((client) => {
    if (mode === 'down') { client.resetAndDestroy(); return }
    const upstream = net.connect(target.port, target.host)
    const pair: Pair = { client, server: upstream }
    pairs.add(pair)
    const drop = (): void => {
      if (!pairs.has(pair)) return
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.on('data', (chunk: Buffer) => {
      const t = trigger
      if (t !== undefined && t.pattern.test(chunk.toString('latin1'))) {
        trigger = undefined
        if (t.forward) upstream.write(chunk, () => { setImmediate(() => { cutAll(); t.fired() }) })
        else { cutAll(); t.fired() }
        return
      }
      if (!upstream.write(chunk)) client.pause()
    })
    upstream.on('drain', () => { if (mode !== 'stalled') client.resume() })
    upstream.on('data', (chunk: Buffer) => { if (!client.write(chunk)) upstream.pause() })
    client.on('drain', () => { if (mode !== 'stalled') upstream.resume() })
    if (mode === 'stalled') { client.pause(); upstream.pause() }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo

  return {
    port,
    urlThrough: (url) => {
      const u = new URL(url)
      u.hostname = '127.0.0.1'
      u.port = String(port)
      return u.toString()
    },
    get open () { return pairs.size },
    cut: cutAll,
    down: () => { mode = 'down'; cutAll() },
    stall: () => {
      mode = 'stalled'
      for (const { client, server } of pairs) { client.pause(); server.pause() }
    },
    restore: () => {
      mode = 'up'
      for (const { client, server } of pairs) { client.resume(); server.resume() }
    },
    cutWhen: async (pattern, opts = {}) => await new Promise<void>((resolve) => {
      trigger = { pattern, forward: opts.forward ?? false, fired: resolve }
    }),
    close: async () => {
      cutAll()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
