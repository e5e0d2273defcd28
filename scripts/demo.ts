/**
 * `npm run demo`: starts Tidings on the embedded PGlite default (in a fresh temporary folder),
 * replays a realistic stream of Twilio status callbacks built from Twilio's documented parameter
 * sets and signed with the twilio library, then prints every message's final status and timeline
 * as read back through the REST API. Exits 0 when every message ends as expected.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import twilio from 'twilio'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'
import { replayResendStream } from './demo-resend.ts'

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

const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-demo-'))
const config = loadConfig({
  LOG_LEVEL: 'warn',
  DATA_DIR: dataDir,
  PUBLIC_BASE_URL,
  TWILIO_ACCOUNT_SID: ACCOUNT_SID,
  TWILIO_AUTH_TOKEN: AUTH_TOKEN,
  API_KEYS: `demo:${API_KEY}`,
  RESEND_WEBHOOK_SECRET: RESEND_SECRET
})
const database = await openDatabase({ databaseUrl: undefined, dataDir })
let failures = 0
try {
  await migrateToLatest(database.db)
  const app = await buildApp(config, { db: database.db })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  console.log(`Tidings is running on embedded PGlite (${dataDir}) at ${address}\n`)
  console.log('Replaying Twilio status callbacks, each signed like Twilio signs them:')
  for (const step of stream) {
    const res = await fetch(address + STATUS_PATH, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, PUBLIC_BASE_URL + STATUS_PATH, step.params)
      },
      body: new URLSearchParams(step.params).toString()
    })
    const body = await res.json() as { outcome?: string, code?: string }
    console.log(`  ${step.params.MessageSid.slice(0, 10)}…  ${step.label.padEnd(34)} → ${res.status} ${body.outcome ?? body.code}`)
  }

  console.log('\nWhat the REST API answers:')
  const auth = { authorization: `Bearer ${API_KEY}` }
  for (const [messageSid, want] of Object.entries(expected)) {
    const message = await (await fetch(`${address}/v1/messages/${messageSid}`, { headers: auth })).json() as Record<string, string | null>
    const events = await (await fetch(`${address}/v1/messages/${messageSid}/events`, { headers: auth })).json() as { data: Array<Record<string, string | null>> }
    const ok = message.status === want.status
    if (!ok) failures++
    console.log(`\n  ${ok ? '✔' : '✘'} ${want.name}`)
    console.log(`    ${messageSid}  ${message.channel}  ${message.from} → ${message.to}`)
    console.log(`    status: ${message.status}${message.error_code === null ? '' : `  error: ${message.error_code}${message.error_message === null ? '' : ` (${message.error_message})`}`}`)
    console.log(`    timeline: ${events.data.map((e) => `${e.status}${e.carrier_at === null ? '' : ` [carrier ${e.carrier_at}]`}`).join(' → ')}`)
  }

  console.log('\nReplaying Resend email events, each signed the Svix way:')
  const resend = await replayResendStream({ baseUrl: address, secret: RESEND_SECRET, apiKey: API_KEY, print: (line) => console.log(`  ${line}`) })
  const delivered = resend.emails.find((e) => e.status === 'email.delivered')
  const bounced = resend.emails.find((e) => e.status === 'email.bounced')
  if (delivered === undefined || delivered.open_count !== 2 || delivered.click_count !== 1 || bounced === undefined) {
    failures++
    console.log('  ✘ the Resend stream did not end as expected')
  }
  await app.close()
} finally {
  await database.close()
  rmSync(dataDir, { recursive: true, force: true })
}
console.log(failures === 0 ? '\nEvery message ended in the right status.' : `\n${failures} message(s) ended in the wrong status.`)
process.exit(failures === 0 ? 0 : 1)
