/**
 * `npm run demo`: starts Tidings on the embedded PostgreSQL default (in a fresh temporary folder),
 * with a FAKE Twilio REST API on loopback beside it (Twilio is unreachable from here), replays a
 * realistic stream of Twilio status callbacks built from Twilio's documented parameter sets and
 * signed with the twilio library, shows the 63049 WhatsApp failure get its SMS fallback through the
 * fake, replays a Resend stream signed with svix, then prints every message's final status and
 * timeline as read back through the REST API. Exits 0 when every message ends as expected.
 * Every request waits out 503/429 (Retry-After) and every answer is reported, never assumed, so a
 * busy machine makes the demo slower, not wrong.
 * With `--serve` (`npm run demo -- --serve`), it then keeps Tidings running on the demo's data and
 * prints the operator console's URL and an API key to log in with, until Ctrl-C.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import twilio from 'twilio'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { jobQueueConnectionOf } from '../src/fallback/queue.ts'
import { startFakeTwilio } from '../test/fakes/fake-twilio.ts'
import { ARROW, heading, printLogLine, request } from './demo-http.ts'
import { replayResendStream } from './demo-resend.ts'
import { startWebhooksDemo, webhooksDemoEnv } from './demo-webhooks-out.ts'

const ACCOUNT_SID = 'AC' + 'd'.repeat(32)
const AUTH_TOKEN = 'demo_auth_token_' + randomBytes(8).toString('hex')
const API_KEY = 'k_demo_' + randomBytes(12).toString('hex')
const RESEND_SECRET = 'whsec_' + randomBytes(24).toString('base64')
const PUBLIC_BASE_URL = 'https://hooks.example.com'
const STATUS_PATH = '/webhooks/twilio/status'

const sid = (prefix = 'SM'): string => prefix + randomBytes(16).toString('hex')

interface Step { label: string, params: Record<string, string> }

function callback (messageSid: string, status: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MessageSid: messageSid,
    SmsSid: messageSid,
    MessageStatus: status,
    SmsStatus: status,
    AccountSid: ACCOUNT_SID,
    From: '+14155550100',
    To: '+15558675310',
    ApiVersion: '2010-04-01',
    ...extra
  }
}

function whatsapp (messageSid: string, status: string, extra: Record<string, string> = {}): Record<string, string> {
  return callback(messageSid, status, {
    From: 'whatsapp:+14155238886',
    To: 'whatsapp:+15551234567',
    ChannelPrefix: 'whatsapp',
    ChannelInstallSid: 'XE' + 'e'.repeat(32),
    ChannelToAddress: '+1555123XXXX',
    ...extra
  })
}

const smsOk = sid()
const smsCarrierFiltered = sid()
const waRead = sid()
const waMarketingBlocked = sid()
const smsOutOfOrder = sid()

const expected: Record<string, { name: string, status: string }> = {
  [smsOk]: { name: 'SMS, delivered (with a retried duplicate)', status: 'delivered' },
  [smsCarrierFiltered]: { name: 'SMS, carrier filtered (30007)', status: 'undelivered' },
  [waRead]: { name: 'WhatsApp, read', status: 'read' },
  [waMarketingBlocked]: { name: 'WhatsApp, marketing template blocked (63049)', status: 'failed' },
  [smsOutOfOrder]: { name: 'SMS, delivered arrives before sent', status: 'delivered' }
}

const stream: Step[] = [
  { label: 'SMS sent', params: callback(smsOk, 'sent') },
  { label: 'SMS delivered (carrier receipt)', params: callback(smsOk, 'delivered', { RawDlrDoneDate: '2611240912' }) },
  { label: 'SMS delivered, retried by Twilio', params: callback(smsOk, 'delivered', { RawDlrDoneDate: '2611240912' }) },
  { label: 'SMS sent', params: callback(smsCarrierFiltered, 'sent') },
  { label: 'SMS undelivered 30007', params: callback(smsCarrierFiltered, 'undelivered', { ErrorCode: '30007', RawDlrDoneDate: '2611240913' }) },
  { label: 'WhatsApp sent', params: whatsapp(waRead, 'sent') },
  { label: 'WhatsApp delivered', params: whatsapp(waRead, 'delivered', { EventType: 'DELIVERED' }) },
  { label: 'WhatsApp read', params: whatsapp(waRead, 'read', { EventType: 'READ' }) },
  { label: 'WhatsApp failed 63049', params: whatsapp(waMarketingBlocked, 'failed', { ErrorCode: '63049', EventType: 'UNDELIVERED', ChannelStatusMessage: 'Meta chose not to deliver this WhatsApp message' }) },
  { label: 'SMS delivered (before sent!)', params: callback(smsOutOfOrder, 'delivered') },
  { label: 'SMS sent (late)', params: callback(smsOutOfOrder, 'sent') }
]

const SMS_FALLBACK_FROM = '+14155550199'
const fake = await startFakeTwilio()
// Sent by another system: Tidings never saw its text, so the fallback worker fetches it from "Twilio".
fake.seed({ sid: waMarketingBlocked, account_sid: ACCOUNT_SID, to: 'whatsapp:+15551234567', from: 'whatsapp:+14155238886', body: 'Spring sale: 20% off all tables this weekend. Reply STOP to opt out.' })

const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-demo-'))
const config = loadConfig({
  TWILIO_API_BASE_URL: fake.url,
  FALLBACK_SMS_FROM: SMS_FALLBACK_FROM,
  FALLBACK_POLL_INTERVAL_SECONDS: '1',
  // Errors only: the demo's output is its report, not Tidings' log.
  LOG_LEVEL: 'error',
  // The demo's client runs in Tidings' own event loop, so load shedding would measure the demo
  // itself; off here (every request also waits out a 503 anyway).
  MAX_EVENT_LOOP_DELAY_MS: '0',
  DATA_DIR: dataDir,
  PUBLIC_BASE_URL,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: AUTH_TOKEN,
  API_KEYS: `demo:${API_KEY}`,
  RESEND_WEBHOOK_SECRET: RESEND_SECRET,
  ...webhooksDemoEnv()
})
const postgres = await startEmbeddedPostgres(dataDir)
// Patient pool: on a busy machine a connection can take seconds, which is no reason to refuse.
const database = await openDatabase({ databaseUrl: postgres.url, connectionTimeoutMs: 30_000, statementTimeoutMs: 30_000 })
let failures = 0
try {
  await migrateToLatest(database.db)
  const app = await buildApp(config, { db: database.db, jobQueue: jobQueueConnectionOf(database), logStream: { write: printLogLine } })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const auth = { authorization: `Bearer ${API_KEY}` }
  const post = async (params: Record<string, string>): Promise<string> => (await request(address + STATUS_PATH, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, PUBLIC_BASE_URL + STATUS_PATH, params) },
    body: new URLSearchParams(params).toString()
  })).summary

  console.log(heading('Tidings'))
  console.log(`  listening at ${address}, on an embedded PostgreSQL in ${dataDir}`)
  console.log(`  a FAKE Twilio REST API (a stand-in, not Twilio) at ${fake.url} receives the SMS fallbacks`)
  const webhooksOut = await startWebhooksDemo(address, API_KEY, (line) => console.log(`  ${line}`))

  console.log(heading('Twilio status callbacks, each signed like Twilio signs them'))
  for (const step of stream) {
    console.log(`  ${step.params.MessageSid.slice(0, 10)}…  ${step.label.padEnd(34)} ${ARROW} ${await post(step.params)}`)
  }

  console.log(heading('SMS fallback of the WhatsApp 63049 failure (FALLBACK_SMS_FROM is set)'))
  interface FallbackView { state: string, sid: string | null, reason: string | null }
  let fallback = null as FallbackView | null
  for (let i = 0; i < 240 && fallback?.state !== 'sent'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    const answer = await request<{ fallback?: FallbackView | null }>(`${address}/v1/messages/${waMarketingBlocked}`, { headers: auth })
    fallback = answer.body?.fallback ?? null
  }
  const smsSid = fallback?.sid ?? null
  const sentToFake = fake.sent()
  console.log(`  fallback state: ${fallback?.state ?? 'none'}; the FAKE Twilio API received ${sentToFake.length} SMS:`)
  for (const m of sentToFake) console.log(`    ${m.sid} from ${m.from} to ${m.to}: "${m.body}" (StatusCallback ${m.status_callback})`)
  if (smsSid === null || sentToFake.length !== 1) {
    failures++
    console.log('  ✘ expected exactly one SMS fallback')
  } else {
    expected[smsSid] = { name: 'SMS fallback of the 63049 WhatsApp message', status: 'delivered' }
    const sms = { MessageSid: smsSid, SmsSid: smsSid, AccountSid: ACCOUNT_SID, From: SMS_FALLBACK_FROM, To: '+15551234567', ApiVersion: '2010-04-01' }
    console.log(`  the fallback's own callbacks: sent ${ARROW} ${await post({ ...sms, MessageStatus: 'sent', SmsStatus: 'sent' })}, delivered ${ARROW} ${await post({ ...sms, MessageStatus: 'delivered', SmsStatus: 'delivered', RawDlrDoneDate: '2611240931' })}`)
  }

  console.log(heading('What the REST API answers'))
  type Message = Record<string, string | null> & { fallback?: { state: string, sid: string | null, status: string | null } | null, fallback_of?: string | null }
  for (const [messageSid, want] of Object.entries(expected)) {
    const message = await request<Message | undefined>(`${address}/v1/messages/${messageSid}`, { headers: auth })
    const events = await request<{ data?: Array<Record<string, string | null>> } | undefined>(`${address}/v1/messages/${messageSid}/events`, { headers: auth })
    const m = message.body
    const ok = message.status === 200 && m?.status === want.status
    if (!ok) failures++
    console.log(`\n  ${ok ? '✔' : '✘'} ${want.name}`)
    if (message.status !== 200 || m === undefined || events.status !== 200 || events.body?.data === undefined) {
      console.log(`    GET /v1/messages/${messageSid} ${ARROW} ${message.summary}; /events ${ARROW} ${events.summary}`)
      continue
    }
    console.log(`    ${messageSid}  ${m.channel}  ${m.from} ${ARROW} ${m.to}`)
    console.log(`    status: ${m.status}${m.error_code === null ? '' : `  error: ${m.error_code}${m.error_message === null ? '' : ` (${m.error_message})`}`}`)
    console.log(`    timeline: ${events.body.data.map((e) => `${e.status}${e.carrier_at === null ? '' : ` [carrier ${e.carrier_at}]`}`).join(` ${ARROW} `)}`)
    if (m.fallback != null) console.log(`    fallback: ${m.fallback.state}, SMS ${m.fallback.sid ?? '-'} is ${m.fallback.status ?? '-'}`)
    if (m.fallback_of != null) console.log(`    fallback of: ${m.fallback_of}`)
  }

  console.log(heading('Resend email events, each signed the Svix way'))
  try {
    const resend = await replayResendStream({ baseUrl: address, secret: RESEND_SECRET, apiKey: API_KEY, print: (line) => console.log(line === '' ? '' : `  ${line}`) })
    const delivered = resend.emails.find((e) => e.status === 'email.delivered')
    const bounced = resend.emails.find((e) => e.status === 'email.bounced')
    if (delivered === undefined || delivered.open_count !== 2 || delivered.click_count !== 1 || bounced === undefined) {
      failures++
      console.log('  ✘ the Resend stream did not end as expected')
    }
  } catch (err) {
    failures++
    console.log(`  ✘ ${(err as Error).message}`)
  }
  console.log(heading('Outbound webhooks, each verified with standardwebhooks'))
  failures += await webhooksOut.report((line) => console.log(line === '' ? '' : `  ${line}`))
  if (process.argv.includes('--serve')) {
    console.log(heading('Operator console, on the demo\'s data'))
    console.log(`  open ${address}/console/ and log in with the API key ${API_KEY}`)
    console.log('  press Ctrl-C to stop')
    await new Promise((resolve) => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve) })
  }
  await app.close()
} finally {
  await database.close()
  await postgres.stop()
  await fake.close()
  rmSync(dataDir, { recursive: true, force: true })
}
console.log(failures === 0 ? '\nEvery message ended in the right status.' : `\n${failures} message(s) ended in the wrong status.`)
process.exit(failures === 0 ? 0 : 1)
