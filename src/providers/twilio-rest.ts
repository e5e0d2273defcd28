/**
 * The Twilio REST client Tidings sends with (twilio-node), and how its errors are read.
 *
 * Credentials: the account that owns the message when Tidings has a token for it, otherwise the
 * first configured account (`TWILIO_ACCOUNT_SID`, else the first of `TWILIO_AUTH_TOKENS`), always
 * with the first token listed for that account (list the current token first during rotation).
 *
 * `TWILIO_API_BASE_URL` (tests and the demo only) sends every request to another origin, e.g.
 * the fake Twilio API on loopback: twilio-node builds `https://api.twilio.com/2010-04-01/…` URLs
 * and hands them to its `httpClient`, so a `RequestClient` that swaps the origin and keeps path and
 * query is the one place that needs to know.
 */
import http from 'node:http'
import { createRequire } from 'node:module'
import type twilio from 'twilio'
import type { Config } from '../config/config.ts'

export type TwilioClient = twilio.Twilio

let lib: typeof twilio | undefined

/**
 * twilio-node, loaded on first use: importing it costs about 35 MiB of resident memory
 * (docs/performance.md), which a process that only records callbacks never needs.
 */
export function twilioLib (): typeof twilio {
  lib ??= createRequire(import.meta.url)('twilio') as typeof twilio
  return lib
}

/** True when `err` is twilio-node's `RestException` (never while twilio-node is not loaded: nothing could have thrown one). */
export function isTwilioRestException (err: unknown): err is InstanceType<typeof twilio.RestException> {
  return lib !== undefined && err instanceof lib.RestException
}

type Request<TData> = Parameters<typeof twilio.RequestClient.prototype.request<TData>>[0]
type Response<TData> = Awaited<ReturnType<typeof twilio.RequestClient.prototype.request<TData>>>

/**
 * Connections per Twilio host, as twilio-node's default (its https agent's `maxSockets`). More
 * requests than this wait for a free connection; that wait counts in the request's timeout
 * (axios and Node 24; test/twilio-client.test.ts holds it), so a send that queued behind a slow
 * Twilio gives up within `TWILIO_REQUEST_TIMEOUT_MS` instead of reaching Twilio after its
 * caller's lease ran out (docs/fallback.md, rule 3).
 */
export const TWILIO_MAX_SOCKETS = 20

/** twilio-node's HTTP client; with `baseUrl`, pointed there instead of `https://*.twilio.com`. */
function requestClient (baseUrl: string | undefined, timeoutMs: number): twilio.RequestClient {
  const Base = twilioLib().RequestClient
  if (baseUrl === undefined) return new Base({ timeout: timeoutMs, maxSockets: TWILIO_MAX_SOCKETS })
  class BaseUrlRequestClient extends Base {
    override async request<TData>(opts: Request<TData>): Promise<Response<TData>> {
      const original = new URL(opts.uri)
      const uri = new URL(original.pathname + original.search, baseUrl).href
      return await super.request({ ...opts, uri })
    }
  }
  const client = new BaseUrlRequestClient({ timeout: timeoutMs, maxSockets: TWILIO_MAX_SOCKETS })
  // The base URL may be plain http (the fake on loopback): the same pool as https gets.
  client.axios.defaults.httpAgent = new http.Agent({ keepAlive: true, maxSockets: TWILIO_MAX_SOCKETS })
  return client
}

export interface TwilioRestOptions {
  /** Auth tokens per AccountSid, in configuration order (`Config.twilioAuthTokens`). */
  tokens: ReadonlyMap<string, readonly string[]>
  /** `Config.twilioApiBaseUrl`: another origin for every request (tests and demo only). */
  baseUrl: string | undefined
  /** Timeout of one request, in ms. */
  timeoutMs: number
}

/** Returns the client for an account (see the file comment for which credentials), cached. */
export type TwilioClientFor = (accountSid: string | null) => TwilioClient

/**
 * Builds the client factory. Automatic 429 retries inside twilio-node stay off: retries belong to
 * the job queue, which backs off across attempts and processes.
 */
export function createTwilioClients (opts: TwilioRestOptions): TwilioClientFor {
  const clients = new Map<string, TwilioClient>()
  const first = opts.tokens.keys().next().value
  return (accountSid) => {
    const sid = accountSid !== null && opts.tokens.has(accountSid) ? accountSid : first
    if (sid === undefined) throw new Error('no Twilio account is configured')
    let client = clients.get(sid)
    if (client === undefined) {
      const token = opts.tokens.get(sid)?.[0] ?? ''
      client = twilioLib()(sid, token, { httpClient: requestClient(opts.baseUrl, opts.timeoutMs), autoRetry: false })
      clients.set(sid, client)
    }
    return client
  }
}

/** The client factory for Tidings' configuration (tokens, `TWILIO_API_BASE_URL`, request timeout). */
export function twilioClientsOf (config: Pick<Config, 'twilioAuthTokens' | 'twilioApiBaseUrl' | 'twilioRequestTimeoutMs'>): TwilioClientFor {
  return createTwilioClients({ tokens: config.twilioAuthTokens, baseUrl: config.twilioApiBaseUrl, timeoutMs: config.twilioRequestTimeoutMs })
}

/**
 * How a failed Twilio request ends:
 * - `rejected`: Twilio refused for good (a 4xx other than 429, e.g. 21610 unsubscribed, 21211
 *   invalid number); retrying cannot help;
 * - `retryable`: 429, 5xx, a timeout or a network error. `maybeAccepted` is false only when the
 *   request certainly did not create anything (429, connection refused); after a 5xx, a timeout or
 *   a dropped connection Twilio may have accepted it.
 * Errors codes: https://www.twilio.com/docs/api/errors
 */
export type TwilioFailure =
  | { kind: 'rejected', code: string, message: string }
  | { kind: 'retryable', code: string, message: string, maybeAccepted: boolean }

const NOT_SENT_NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

/** Reads a twilio-node error; `undefined` when `err` is not a Twilio or network failure (a bug). */
export function classifyTwilioError (err: unknown): TwilioFailure | undefined {
  if (isTwilioRestException(err)) {
    const code = err.code !== undefined ? String(err.code) : `http_${err.status}`
    const message = err.message ?? `HTTP ${err.status}`
    if (err.status === 429) return { kind: 'retryable', code, message, maybeAccepted: false }
    if (err.status >= 500) return { kind: 'retryable', code, message, maybeAccepted: true }
    return { kind: 'rejected', code, message }
  }
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown, message?: unknown, isAxiosError?: unknown }
    const code = typeof e.code === 'string' ? e.code : undefined
    if (code !== undefined && (e.isAxiosError === true || /^E[A-Z_]+$/.test(code))) {
      return {
        kind: 'retryable',
        code,
        message: typeof e.message === 'string' ? e.message : code,
        maybeAccepted: !NOT_SENT_NETWORK_CODES.has(code)
      }
    }
  }
  return undefined
}

/** The HTTP status of a Twilio API error (`RestException`), `undefined` for anything else. */
export function twilioHttpStatus (err: unknown): number | undefined {
  return isTwilioRestException(err) ? err.status : undefined
}
