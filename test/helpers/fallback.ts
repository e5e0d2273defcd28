/**
 * The app with the SMS fallback running (pg-boss polling fast) on a fresh PostgreSQL database,
 * its Twilio REST client pointed at a FAKE Twilio API on loopback.
 */
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import { buildApp } from '../../src/app.ts'
import { loadConfig, type Config } from '../../src/config/config.ts'
import type { Database, FallbackRow, MessageRow } from '../../src/db/database.ts'
import { jobQueueConnectionOf } from '../../src/fallback/queue.ts'
import { startFakeTwilio, type FakeTwilio } from '../fakes/fake-twilio.ts'
import { ACCOUNT_SID, contractChecker, messageSid, testEnv } from './app.ts'
import { createTestDatabase } from './database.ts'

/** The WhatsApp sender that has an SMS sender configured in `fallbackEnv`. */
export const WA_FROM = '+14155238886'
/** Its SMS sender. */
export const SMS_FROM = '+14155550100'
/** A WhatsApp sender mapped to a Messaging Service. */
export const WA_FROM_SERVICE = '+14155238887'
export const SERVICE_SID = 'MG' + 'c'.repeat(32)
/** A WhatsApp sender with no SMS sender. */
export const WA_FROM_UNMAPPED = '+14155230000'

interface TapLike { teardown: (fn: () => unknown) => void }

/** Fast settings for tests: short polling, 1 s backoff, 1 s Twilio timeout, 3 attempts. */
export function fallbackEnv (fakeUrl: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return testEnv({
    TWILIO_API_BASE_URL: fakeUrl,
    FALLBACK_SMS_FROM_MAP: `whatsapp:${WA_FROM}=${SMS_FROM},whatsapp:${WA_FROM_SERVICE}=${SERVICE_SID}`,
    FALLBACK_POLL_INTERVAL_SECONDS: '0.5',
    FALLBACK_RETRY_DELAY_SECONDS: '1',
    FALLBACK_MAX_ATTEMPTS: '3',
    TWILIO_REQUEST_TIMEOUT_MS: '1000',
    ...overrides
  })
}

export interface FallbackTestApp {
  app: FastifyInstance
  db: Kysely<Database>
  config: Config
  fake: FakeTwilio
  /** The test database's URL (for other processes). */
  url: string
}

/** The app with the fallback running, on a fresh database, against a fresh fake Twilio; closed at teardown. */
export async function buildFallbackApp (t: TapLike, env: Record<string, string | undefined> = {}): Promise<FallbackTestApp> {
  const checkContract = contractChecker(t)
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const { db, url, handle } = await createTestDatabase(t)
  const config = loadConfig(fallbackEnv(fake.url, env))
  const app = await buildApp(config, { db, jobQueue: jobQueueConnectionOf(handle), listen: handle.listen, poolStats: handle.poolStats })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  await app.ready()
  return { app, db, config, fake, url }
}

/** A random E.164 US number, so each test has its own recipient. */
export function randomNumber (): string {
  return '+1555' + String(Math.floor(Math.random() * 1e7)).padStart(7, '0')
}

/** A WhatsApp status callback's parameters, as Twilio documents them. */
export function whatsappCallback (sid: string, status: string, opts: { from?: string, to: string, errorCode?: string }): Record<string, string> {
  const params: Record<string, string> = {
    MessageSid: sid,
    SmsSid: sid,
    MessageStatus: status,
    SmsStatus: status,
    AccountSid: ACCOUNT_SID,
    From: `whatsapp:${opts.from ?? WA_FROM}`,
    To: `whatsapp:${opts.to}`,
    ApiVersion: '2010-04-01',
    ChannelPrefix: 'whatsapp',
    ChannelInstallSid: 'XE' + '0'.repeat(32),
    ChannelToAddress: opts.to
  }
  if (opts.errorCode !== undefined) {
    params.ErrorCode = opts.errorCode
    params.ChannelStatusMessage = 'Message failed to send'
    params.EventType = 'UNDELIVERED'
  }
  return params
}

/** Stores a WhatsApp message as if Tidings had sent it (with its text), before any callback. */
export async function storeWhatsAppMessage (db: Kysely<Database>, opts: { to: string, from?: string, body: string | null, fallback?: boolean }): Promise<string> {
  const sid = messageSid()
  await db.insertInto('messages').values({
    sid,
    provider: 'twilio',
    channel: 'whatsapp',
    account_sid: ACCOUNT_SID,
    messaging_service_sid: null,
    from_address: opts.from ?? WA_FROM,
    to_address: opts.to,
    status: null,
    error_code: null,
    error_message: null,
    body: opts.body,
    sent_at: null,
    delivered_at: null,
    read_at: null,
    failed_at: null,
    fallback: opts.fallback ?? true
  }).execute()
  return sid
}

/** Polls `probe` until it returns something other than `undefined`. */
export async function waitFor<T> (probe: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Waits until the fallback of `originalSid` is in one of `states`. */
export async function waitForFallback (db: Kysely<Database>, originalSid: string, states: readonly string[], timeoutMs?: number): Promise<FallbackRow> {
  return await waitFor(async () => {
    const row = await db.selectFrom('fallbacks').selectAll().where('original_sid', '=', originalSid).executeTakeFirst()
    return row !== undefined && states.includes(row.state) ? row : undefined
  }, `fallback of ${originalSid} to be ${states.join('/')}`, timeoutMs)
}

export async function messageRow (db: Kysely<Database>, sid: string): Promise<MessageRow | undefined> {
  return await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirst()
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}
