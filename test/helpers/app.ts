/**
 * Builds the real app on a fresh database and signs Twilio callbacks with twilio-node's own
 * `getExpectedTwilioSignature`.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Kysely } from 'kysely'
import twilio from 'twilio'
import { buildApp } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config/config.ts'
import type { Database } from '../../src/db/database.ts'
import { checkResponse } from './contract.ts'
import { RESEND_SECRET } from './resend.ts'
import { createTestDatabase } from './database.ts'

export const ACCOUNT_SID = 'AC' + 'a'.repeat(32)
export const AUTH_TOKEN = 'test_auth_token_primary_0001'
export const SECOND_TOKEN = 'test_auth_token_rotated_0002'
export const SUB_ACCOUNT_SID = 'AC' + 'b'.repeat(32)
export const SUB_ACCOUNT_TOKEN = 'test_auth_token_subaccount_03'
export const PUBLIC_BASE_URL = 'https://hooks.example.com'
export const API_KEY = 'k_test_billing_0123456789abcdef'
export const OTHER_API_KEY = 'k_test_crm_fedcba9876543210'
export const STATUS_PATH = '/webhooks/twilio/status'

/** Test environment; override any variable. */
export function testEnv (overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    LOG_LEVEL: 'silent',
    PUBLIC_BASE_URL,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_AUTH_TOKENS: `${ACCOUNT_SID}:${SECOND_TOKEN},${SUB_ACCOUNT_SID}:${SUB_ACCOUNT_TOKEN}`,
    API_KEYS: `billing:${API_KEY},crm:${OTHER_API_KEY}`,
    RESEND_WEBHOOK_SECRET: RESEND_SECRET,
    // Load shedding watches this process's event loop, which also runs tap, fake providers and
    // other servers here: off, except in the tests about it (test/operations.test.ts).
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...overrides
  }
}

interface TapLike { teardown: (fn: () => unknown) => void }

/**
 * Checks every JSON response of an app against openapi.yaml and fails the test at teardown if one
 * does not match. Call it before creating the database: its teardown then runs last (teardowns
 * run last-in first-out), after the pool is closed, so a failure cannot leave anything open.
 */
export function contractChecker (t: TapLike): (app: FastifyInstance) => void {
  const violations: string[] = []
  t.teardown(() => {
    if (violations.length > 0) throw new Error(`responses outside the contract:\n${[...new Set(violations)].join('\n')}`)
  })
  return (app) => {
    app.addHook('onSend', async (request, reply, payload) => {
      const url = request.routeOptions.url
      if (url !== undefined && typeof payload === 'string') {
        const problem = checkResponse(request.method, url, reply.statusCode, reply.getHeader('content-type') as string | undefined, payload)
        if (problem !== undefined) violations.push(problem)
      }
      return payload
    })
  }
}

/** The app on a fresh migrated PostgreSQL database; closed at teardown. */
export async function buildTestApp (t: TapLike, env: Record<string, string | undefined> = {}): Promise<{ app: FastifyInstance, db: Kysely<Database>, config: Config, url: string }> {
  const checkContract = contractChecker(t)
  const { db, url, handle } = await createTestDatabase(t)
  const config = loadConfig(testEnv(env))
  const app = await buildApp(config, { db, readDb: handle.readDb, listen: handle.listen, poolStats: handle.poolStats, readPoolStats: handle.readPoolStats })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  return { app, db, config, url }
}

/** A random Twilio message SID (`SM`/`MM` + 32 hex). */
export function messageSid (prefix: 'SM' | 'MM' = 'SM'): string {
  let hex = ''
  for (let i = 0; i < 32; i++) hex += Math.floor(Math.random() * 16).toString(16)
  return prefix + hex
}

/** A form body exactly as Twilio sends it (`application/x-www-form-urlencoded`, UTF-8). */
export function formBody (params: Record<string, string>): string {
  return new URLSearchParams(params).toString()
}

/** Signs like Twilio: HMAC-SHA1 over the public URL and the sorted parameters. */
export function sign (params: Record<string, string>, opts: { token?: string, url?: string } = {}): string {
  return twilio.getExpectedTwilioSignature(opts.token ?? AUTH_TOKEN, opts.url ?? PUBLIC_BASE_URL + STATUS_PATH, params)
}

/** A status callback's parameters, as Twilio documents them for SMS. */
export function smsCallback (sid: string, status: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MessageSid: sid,
    SmsSid: sid,
    MessageStatus: status,
    SmsStatus: status,
    AccountSid: ACCOUNT_SID,
    From: '+14155550100',
    To: '+15558675310',
    ApiVersion: '2010-04-01',
    ...extra
  }
}

/** Posts a signed status callback through `app.inject`. */
export async function postCallback (
  app: FastifyInstance,
  params: Record<string, string>,
  opts: { token?: string, path?: string, signature?: string | null, signParams?: Record<string, string> } = {}
): Promise<LightMyRequestResponse> {
  const path = opts.path ?? STATUS_PATH
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
  const signature = opts.signature === undefined
    ? sign(opts.signParams ?? params, { token: opts.token, url: PUBLIC_BASE_URL + path })
    : opts.signature
  if (signature !== null) headers['x-twilio-signature'] = signature
  return await app.inject({ method: 'POST', url: path, headers, payload: formBody(params) })
}

/** GET with the test API key. */
export async function apiGet (app: FastifyInstance, url: string, key: string = API_KEY): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } })
}

/**
 * POSTs a signed status callback to a running server over real HTTP.
 * @returns the HTTP status, or 0 when the connection failed (e.g. the process was killed).
 */
export async function postSigned (baseUrl: string, params: Record<string, string>): Promise<number> {
  try {
    const res = await fetch(`${baseUrl}${STATUS_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign(params) },
      body: formBody(params)
    })
    await res.arrayBuffer()
    return res.status
  } catch {
    return 0
  }
}
