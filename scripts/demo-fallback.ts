/**
 * `npm run demo:fallback`: the WhatsApp → SMS fallback, visibly, on the embedded PGlite default.
 *
 * Starts a FAKE Twilio REST API on loopback (Twilio is not reachable from here; it is clearly not
 * Twilio) and Tidings beside it with `TWILIO_API_BASE_URL` pointing at the fake. Then it plays
 * Twilio: a WhatsApp message (whose text only "Twilio" knows) is `sent`, then `failed` with 63049;
 * Tidings sends the SMS fallback through the fake, and the SMS's own callbacks (`sent`,
 * `delivered`) come back. Prints both messages as the REST API shows them, linked, and exits 0.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import twilio from 'twilio'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { jobQueueConnectionOf } from '../src/fallback/queue.ts'
import { startFakeTwilio } from '../test/fakes/fake-twilio.ts'

const ACCOUNT_SID = 'AC' + 'd'.repeat(32)
const AUTH_TOKEN = 'demo_auth_token_not_a_secret'
const API_KEY = 'k_demo_0123456789abcdef'
const WHATSAPP_FROM = '+14155238886'
const SMS_FROM = '+14155550100'
const RECIPIENT = '+15551234567'

const sid = (): string => 'SM' + randomBytes(16).toString('hex')
const say = (line: string): void => { process.stdout.write(line + '\n') }

const fake = await startFakeTwilio()
say(`FAKE Twilio API (a stand-in, not Twilio) listening at ${fake.url}`)
const dataDir = await mkdtemp(path.join(tmpdir(), 'tidings-demo-fallback-'))
const database = await openDatabase({ databaseUrl: undefined, dataDir })
await migrateToLatest(database.db)

/** A free loopback port: PUBLIC_BASE_URL (which callbacks are signed for) must be known before the app is built. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
const port = await freePort()
const publicBaseUrl = `http://127.0.0.1:${port}`
const config = loadConfig({
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  PUBLIC_BASE_URL: publicBaseUrl,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: AUTH_TOKEN,
  API_KEYS: `demo:${API_KEY}`,
  TWILIO_API_BASE_URL: fake.url,
  FALLBACK_SMS_FROM: SMS_FROM,
  FALLBACK_POLL_INTERVAL_SECONDS: '0.5'
})
const app = await buildApp(config, { db: database.db, jobQueue: jobQueueConnectionOf(database) })
await app.listen({ host: '127.0.0.1', port })
say(`Tidings listening at ${publicBaseUrl} (embedded PGlite in ${dataDir})`)

async function callback (params: Record<string, string>): Promise<void> {
  const url = `${publicBaseUrl}/webhooks/twilio/status`
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, params)
    },
    body: new URLSearchParams(params).toString()
  })
  say(`  callback ${params.MessageSid} ${params.MessageStatus}${params.ErrorCode !== undefined ? ` (${params.ErrorCode})` : ''} → HTTP ${res.status}`)
}

async function show (messageSid: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${publicBaseUrl}/v1/messages/${messageSid}`, { headers: { authorization: `Bearer ${API_KEY}` } })
  return await res.json() as Record<string, unknown>
}

let exitCode = 0
try {
  const whatsapp = sid()
  // Sent by another system: Tidings never saw its text, so the worker fetches it from "Twilio".
  fake.seed({ sid: whatsapp, account_sid: ACCOUNT_SID, to: `whatsapp:${RECIPIENT}`, from: `whatsapp:${WHATSAPP_FROM}`, body: 'Your table for 2 is booked for 19:30. Reply C to cancel.' })
  const base = { AccountSid: ACCOUNT_SID, From: `whatsapp:${WHATSAPP_FROM}`, To: `whatsapp:${RECIPIENT}`, ApiVersion: '2010-04-01', ChannelPrefix: 'whatsapp' }
  say('\nTwilio reports the WhatsApp message:')
  await callback({ ...base, MessageSid: whatsapp, SmsSid: whatsapp, MessageStatus: 'sent', SmsStatus: 'sent' })
  await callback({ ...base, MessageSid: whatsapp, SmsSid: whatsapp, MessageStatus: 'failed', SmsStatus: 'failed', ErrorCode: '63049', EventType: 'UNDELIVERED', ChannelStatusMessage: 'Meta chose not to deliver this marketing message' })

  const deadline = Date.now() + 20_000
  let original = await show(whatsapp)
  while ((original.fallback as { state?: string } | null)?.state !== 'sent' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    original = await show(whatsapp)
  }
  const smsSid = (original.fallback as { sid?: string } | null)?.sid
  if (smsSid === undefined || smsSid === null) throw new Error(`no fallback was sent: ${JSON.stringify(original.fallback)}`)
  const sent = fake.sent()
  say(`\nThe FAKE Twilio API received ${sent.length} SMS: ${sent.map((m) => `${m.sid} from ${m.from} to ${m.to}, "${m.body}", StatusCallback ${m.status_callback}`).join('; ')}`)

  say('\nTwilio reports the fallback SMS:')
  const smsBase = { AccountSid: ACCOUNT_SID, From: SMS_FROM, To: RECIPIENT, ApiVersion: '2010-04-01', MessageSid: smsSid, SmsSid: smsSid }
  await callback({ ...smsBase, MessageStatus: 'sent', SmsStatus: 'sent' })
  await callback({ ...smsBase, MessageStatus: 'delivered', SmsStatus: 'delivered', RawDlrDoneDate: '2611240830' })

  say('\nGET /v1/messages/' + whatsapp)
  say(JSON.stringify(await show(whatsapp), null, 2))
  say('\nGET /v1/messages/' + smsSid)
  say(JSON.stringify(await show(smsSid), null, 2))
  if (sent.length !== 1) throw new Error(`expected exactly one SMS, the fake received ${sent.length}`)
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`)
  exitCode = 1
} finally {
  await app.close()
  await database.close()
  await fake.close()
  await rm(dataDir, { recursive: true, force: true })
}
process.exitCode = exitCode
