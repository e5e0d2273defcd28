/**
 * The operator console: `/console/` serves the browser files of `src/console/` (plain ES modules
 * and CSS, no build step) and uPlot from `node_modules` (never a CDN), and
 * `POST|GET|DELETE /console/session` trade an API key for a session cookie and end it.
 *
 * The cookie is HttpOnly, `SameSite=Strict`, `Secure` when `PUBLIC_BASE_URL` is https, and expires
 * with its row in `console_sessions` (`CONSOLE_SESSION_TTL`). With it the browser may only read
 * `/v1` (`src/plugins/api-key-auth.ts`). CSRF: SameSite=Strict keeps the cookie off cross-site
 * requests, and login and logout also require an `Origin` naming this server, so another site
 * cannot log a browser in or out either.
 *
 * Security headers (@fastify/helmet) are registered in this plugin's context only: the console's
 * strict CSP (no inline scripts or styles) would break Swagger UI on `/docs`, which inlines both.
 */
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import helmet from '@fastify/helmet'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import type { ApiKey } from '../config/config.ts'
import { createSession, deleteSession, findSession } from '../db/console-sessions.ts'
import type { Database } from '../db/database.ts'
import { AppError } from '../errors.ts'
import { matchApiKey, SESSION_COOKIE } from '../plugins/api-key-auth.ts'
import { ErrorBody } from './schemas.ts'

/** The console's browser files. */
export const CONSOLE_DIR = fileURLToPath(new URL('../console/', import.meta.url))
const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'))

export interface ConsoleOptions {
  db: Kysely<Database>
  keys: readonly ApiKey[]
  /** `PUBLIC_BASE_URL`: its scheme decides `Secure`, its origin is accepted on login and logout. */
  publicBaseUrl: string
  sessionTtlMs: number
}

const SessionBody = Type.Object({
  api_key_name: Type.String(),
  expires_at: Type.String({ format: 'date-time' })
})

export const consoleRoutes: FastifyPluginAsyncTypebox<ConsoleOptions> = async (app, opts) => {
  const secure = opts.publicBaseUrl.startsWith('https:')
  const publicOrigin = new URL(opts.publicBaseUrl).origin
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"]
      }
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Only over https: a Strict-Transport-Security header on plain http is ignored at best.
    strictTransportSecurity: secure ? undefined : false
  })

  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'strict' as const, secure }

  /** CSRF guard for the cookie-changing routes: the browser's Origin must be this server. */
  const checkOrigin = (request: FastifyRequest): void => {
    const origin = request.headers.origin
    const own = `${request.protocol}://${request.host}`
    if (origin === undefined || (origin !== own && origin !== publicOrigin)) {
      throw new AppError('origin_mismatch', `Log in and out from the console itself (Origin ${origin === undefined ? 'missing' : 'not allowed'})`)
    }
  }

  app.get('/console', { schema: { hide: true } }, async (_request, reply) => await reply.redirect('/console/'))
  await app.register(fastifyStatic, { root: CONSOLE_DIR, prefix: '/console/', index: 'index.html', cacheControl: true, maxAge: 0 })
  await app.register(fastifyStatic, {
    root: UPLOT_DIR,
    prefix: '/console/vendor/uplot/',
    decorateReply: false,
    allowedPath: (pathName) => pathName === '/uPlot.esm.js' || pathName === '/uPlot.min.css'
  })

  app.post('/console/session', {
    schema: {
      summary: 'Log in to the console: exchange an API key for a session cookie',
      body: Type.Object({ api_key: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false }),
      response: { 200: SessionBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody }
    }
  }, async (request, reply) => {
    checkOrigin(request)
    const name = matchApiKey(opts.keys, request.body.api_key)
    const key = opts.keys.find((k) => k.name === name)
    if (key === undefined) throw new AppError('unauthorized', 'That API key is not valid; use one from API_KEYS')
    const { token, expiresAt } = await createSession(opts.db, key, opts.sessionTtlMs)
    reply.setCookie(SESSION_COOKIE, token, { ...cookieOptions, expires: expiresAt })
    request.log.info({ apiKey: key.name }, 'console session created')
    return { api_key_name: key.name, expires_at: expiresAt.toISOString() }
  })

  app.get('/console/session', {
    schema: {
      summary: 'The current console session',
      response: { 200: SessionBody, 401: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => {
    const token = request.cookies[SESSION_COOKIE]
    const session = token === undefined ? undefined : await findSession(opts.db, opts.keys, token)
    if (session === undefined) throw new AppError('unauthorized', 'No console session; log in with an API key')
    return { api_key_name: session.apiKeyName, expires_at: session.expiresAt.toISOString() }
  })

  app.delete('/console/session', {
    schema: {
      summary: 'Log out of the console',
      response: { 403: ErrorBody, 503: ErrorBody }
    }
  }, async (request, reply) => {
    checkOrigin(request)
    const token = request.cookies[SESSION_COOKIE]
    if (token !== undefined && token !== '') await deleteSession(opts.db, token)
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    // No body and no content-type: the route's schema types replies with a body, hence the widening.
    return await (reply as FastifyReply).code(204).send()
  })
}
