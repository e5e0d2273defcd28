/**
 * The outbound HTTP client of webhook deliveries (undici): bounded sockets per target, connect,
 * header and whole-request timeouts, no redirects (undici follows none unless told to), at most a
 * few KiB of the response read and the rest discarded, and every connection made to an address the
 * SSRF guard checked (`./target-guard.ts`). The shape follows supabase/storage's webhook sender.
 */
import { createRequire } from 'node:module'
import ipaddr from 'ipaddr.js'
import type * as Undici from 'undici'
import type { WebhooksOutConfig } from '../config/webhooks-out.ts'
import { guardedLookup, hostOf, isAllowedHost, refusedRange } from './target-guard.ts'

/** What one attempt came to. */
export interface AttemptResult {
  /** HTTP status, or null when no response came (refused, network error, timeout). */
  statusCode: number | null
  /** Seconds asked for by `Retry-After` (429 and 503 only), when given. */
  retryAfterS: number | null
  /** A short description of a failure for `last_error` (never a secret), or null on 2xx. */
  error: string | null
  /** The kind of outcome, for metrics: `2xx`, `4xx`, `5xx`, `timeout`, `network`, `refused`. */
  kind: '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'network' | 'refused'
}

let undiciLib: typeof Undici | undefined

/**
 * undici, loaded on the first delivery (or by `warm`, at start when subscriptions exist): importing
 * it costs about 4.6 MiB of resident memory (docs/performance.md), which a process without
 * subscriptions never needs, and 60–80 ms of blocking `require`.
 */
function undici (): typeof Undici {
  undiciLib ??= createRequire(import.meta.url)('undici') as typeof Undici
  return undiciLib
}

/** Bytes of a response body read before the connection's rest is discarded. */
const MAX_BODY_BYTES = 4096

export interface WebhookHttpClient {
  /** POSTs `body` with `headers` to `url`; never throws. */
  post: (url: string, headers: Record<string, string>, body: string) => Promise<AttemptResult>
  /** Loads undici now (60–80 ms of blocking `require`) instead of on the first delivery, under load. */
  warm: () => void
  close: () => Promise<void>
}

/** `Retry-After` as seconds (delta-seconds or an HTTP date), or null. */
export function retryAfterSeconds (value: string | string[] | undefined, now = Date.now()): number | null {
  const v = Array.isArray(value) ? value[0] : value
  if (v === undefined || v.trim() === '') return null
  if (/^\d+$/.test(v.trim())) return Number(v.trim())
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000))
}

/**
 * Creates the client.
 * @param opts.connectionsPerOrigin - sockets per target origin (the per-subscription concurrency).
 */
export function createWebhookHttpClient (config: Pick<WebhooksOutConfig, 'allowedNetworks' | 'allowedHosts' | 'timeoutMs'>, opts: { connectionsPerOrigin: number }): WebhookHttpClient {
  const timeout = config.timeoutMs
  let agent: Undici.Agent | undefined
  const agentOf = (): Undici.Agent => {
    agent ??= new (undici().Agent)({
      connections: opts.connectionsPerOrigin,
      connect: { timeout: Math.min(timeout, 10_000), lookup: guardedLookup(config) as never },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 30_000
    })
    return agent
  }
  return {
    async post (url, headers, body) {
      let target: URL
      try { target = new URL(url) } catch { return { statusCode: null, retryAfterS: null, error: 'invalid url', kind: 'refused' } }
      // An IP literal never goes through `lookup`: check it here.
      const host = hostOf(target)
      if (ipaddr.isValid(host) && !isAllowedHost(config, host)) {
        const range = refusedRange(config, host)
        if (range !== null) return { statusCode: null, retryAfterS: null, error: `target refused: ${host} is a ${range} address, which webhooks may not reach`, kind: 'refused' }
      }
      try {
        const res = await undici().request(target, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'Tidings-Webhooks/1', ...headers },
          body,
          dispatcher: agentOf(),
          signal: AbortSignal.timeout(timeout)
        })
        await res.body.dump({ limit: MAX_BODY_BYTES }).catch(() => {})
        const code = res.statusCode
        const retryAfterS = code === 429 || code === 503 ? retryAfterSeconds(res.headers['retry-after']) : null
        const kind = code < 300 && code >= 200 ? '2xx' : code < 400 ? '3xx' : code < 500 ? '4xx' : '5xx'
        return { statusCode: code, retryAfterS, error: kind === '2xx' ? null : `HTTP ${code}`, kind }
      } catch (err) {
        const e = err as { name?: string, code?: string, message?: string, cause?: { code?: string, message?: string } }
        const code = e.code ?? e.cause?.code
        if (code === 'ETARGETREFUSED') return { statusCode: null, retryAfterS: null, error: String(e.message).slice(0, 300), kind: 'refused' }
        if (e.name === 'TimeoutError' || e.name === 'AbortError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
          return { statusCode: null, retryAfterS: null, error: `timed out after ${timeout} ms`, kind: 'timeout' }
        }
        return { statusCode: null, retryAfterS: null, error: `${code ?? e.name ?? 'error'}: ${String(e.message ?? '').slice(0, 200)}`, kind: 'network' }
      }
    },
    warm () { agentOf() },
    async close () { await agent?.close() }
  }
}
