/**
 * Bearer API-key authentication for the `/v1` routes. Keys are held as SHA-256 digests and
 * compared in constant time against every configured key (no early exit), so neither the key
 * nor which key matched leaks through timing. The key's name is logged with the request.
 *
 * With `session`, a request without an `Authorization` header may instead carry the console's
 * session cookie (`src/routes/console.ts`), for GET/HEAD only: a cookie is sent by the browser on
 * its own, so it must never be able to change anything (no sending, no subscription changes).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ApiKey } from '../config/config.ts'
import { AppError } from '../errors.ts'
import { addLogFields } from '../http/request-log.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Name of the API key that authenticated the request (`/v1` routes). */
    apiKeyName?: string
  }
}

/** Name of the console's session cookie. */
export const SESSION_COOKIE = 'tidings_session'

/** The name of the key matching `presented`, or `undefined`. Constant time over all keys. */
export function matchApiKey (keys: readonly ApiKey[], presented: string): string | undefined {
  const digest = createHash('sha256').update(presented).digest()
  let match: string | undefined
  for (const key of keys) {
    if (timingSafeEqual(key.hash, digest) && match === undefined) match = key.name
  }
  return match
}

/**
 * Registers an `onRequest` hook, in the encapsulating context only, that requires
 * `Authorization: Bearer <key>`.
 * @throws {AppError} `unauthorized` (401) when the header is missing, malformed or the key unknown.
 */
export const apiKeyAuth = fp(async function apiKeyAuth (app: FastifyInstance, opts: {
  keys: readonly ApiKey[]
  /** Looks a session cookie up (`findSession`); without it, cookies are ignored. */
  session?: (token: string) => Promise<string | undefined>
}) {
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const header = request.headers.authorization
    const cookie = request.cookies?.[SESSION_COOKIE]
    if (header === undefined && cookie !== undefined && cookie !== '' && opts.session !== undefined) {
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        throw new AppError('read_only_session', 'A console session can only read; send an API key as "Authorization: Bearer <key>" to change anything')
      }
      const sessionKey = await opts.session(cookie)
      if (sessionKey === undefined) throw new AppError('unauthorized', 'The console session has expired or ended; log in again with an API key')
      request.apiKeyName = sessionKey
      request.log = reply.log = request.log.child({ apiKey: sessionKey, session: true })
      addLogFields(request, { apiKey: sessionKey, session: true })
      return
    }
    const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
    const name = m === null ? undefined : matchApiKey(opts.keys, m[1])
    if (name === undefined) {
      throw new AppError('unauthorized', 'Send a valid API key as "Authorization: Bearer <key>"')
    }
    request.apiKeyName = name
    // The request's other lines through its logger; its one "request completed" line by its fields.
    request.log = reply.log = request.log.child({ apiKey: name })
    addLogFields(request, { apiKey: name })
  })
}, { name: 'api-key-auth' })
