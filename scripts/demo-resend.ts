/**
 * Replays a realistic Resend webhook stream against a running Tidings and prints what the REST API
 * then says about each email. `npm run demo` can call `replayResendStream`; run alone
 * (`node scripts/demo-resend.ts`) it starts Tidings on a throw-away embedded database first.
 *
 * The stream, signed with svix exactly as Resend signs (https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests):
 * - email 1: `email.sent`, `email.delivered`, two opens (two deliveries), a click, and a retried
 *   delivery of the first open (same `svix-id`: acknowledged, counted once);
 * - email 2: `email.sent`, then `email.bounced` (Permanent/General), delivered out of order.
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Webhook } from 'svix'
import { ARROW, heading, printLogLine, request } from './demo-http.ts'

export interface ResendDemoOptions {
  /** Where Tidings listens, e.g. `http://127.0.0.1:3000`. */
  baseUrl: string
  /** A `whsec_…` secret Tidings has in `RESEND_WEBHOOK_SECRET`. */
  secret: string
  /** An API key Tidings has in `API_KEYS` (the key, without its name). */
  apiKey: string
  /** Where lines go (default `console.log`). */
  print?: (line: string) => void
}

export interface ResendDemoResult {
  /** Each email's final state as read back through `GET /v1/messages/:sid`. */
  emails: Array<{ sid: string, status: string | null, error_code: string | null, open_count: number, click_count: number, events: string[] }>
  /** Every webhook answer, in order: `200 recorded`, `200 duplicate`, ... */
  answers: string[]
}

interface Delivery { label: string, svixId: string, payload: Record<string, unknown> }

const FROM = 'Acme Receipts <receipts@acme.example>'

function event (type: string, emailId: string, to: string[], subject: string, at: Date, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type,
    created_at: at.toISOString(),
    data: { email_id: emailId, from: FROM, to, subject, created_at: new Date(at.getTime() - 2000).toISOString(), tags: { category: 'receipt' }, ...extra }
  }
}

/** Builds the stream: realistic payloads (https://resend.com/docs/dashboard/webhooks/event-types), times a few seconds apart. */
function stream (now: Date): Delivery[] {
  const t = (s: number): Date => new Date(now.getTime() - 60_000 + s * 1000)
  const receipt = randomUUID()
  const bounced = randomUUID()
  const to1 = ['ada@example.com', 'accounts@example.com']
  const to2 = ['nobody@bounce.example']
  const firstOpen: Delivery = { label: 'email 1 opened', svixId: `msg_${randomUUID().replace(/-/g, '')}`, payload: event('email.opened', receipt, to1, 'Your receipt #1042', t(20)) }
  const svix = (): string => `msg_${randomUUID().replace(/-/g, '')}`
  return [
    { label: 'email 1 sent', svixId: svix(), payload: event('email.sent', receipt, to1, 'Your receipt #1042', t(0)) },
    { label: 'email 1 delivered', svixId: svix(), payload: event('email.delivered', receipt, to1, 'Your receipt #1042', t(3)) },
    firstOpen,
    { label: 'email 1 opened (retry of the same delivery)', svixId: firstOpen.svixId, payload: firstOpen.payload },
    { label: 'email 1 opened again', svixId: svix(), payload: event('email.opened', receipt, to1, 'Your receipt #1042', t(40)) },
    {
      label: 'email 1 clicked',
      svixId: svix(),
      payload: event('email.clicked', receipt, to1, 'Your receipt #1042', t(42), {
        click: { ipAddress: '203.0.113.24', link: 'https://acme.example/receipts/1042', timestamp: t(41).toISOString(), userAgent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)' }
      })
    },
    {
      label: 'email 2 bounced (arrives before its sent)',
      svixId: svix(),
      payload: event('email.bounced', bounced, to2, 'Welcome to Acme', t(6), {
        bounce: { type: 'Permanent', subType: 'General', message: "The recipient's mail server permanently rejected the email.", diagnosticCode: ['smtp; 550 5.1.1 user unknown'] }
      })
    },
    { label: 'email 2 sent', svixId: svix(), payload: event('email.sent', bounced, to2, 'Welcome to Acme', t(1)) }
  ]
}

/**
 * Posts the stream to `POST /webhooks/resend`, then prints each email's status, engagement and
 * timeline from the REST API.
 * @throws when Tidings answers a webhook with anything but 200.
 */
export async function replayResendStream (opts: ResendDemoOptions): Promise<ResendDemoResult> {
  const print = opts.print ?? ((line: string) => { console.log(line) })
  const base = opts.baseUrl.replace(/\/+$/, '')
  const webhook = new Webhook(opts.secret)
  const deliveries = stream(new Date())
  const answers: string[] = []
  for (const d of deliveries) {
    const body = JSON.stringify(d.payload)
    const now = new Date()
    const answer = await request(`${base}/webhooks/resend`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'svix-id': d.svixId,
        'svix-timestamp': String(Math.floor(now.getTime() / 1000)),
        'svix-signature': webhook.sign(d.svixId, now, body)
      },
      body
    })
    answers.push(answer.summary)
    print(`${d.label.padEnd(44)} ${ARROW} ${answer.summary}`)
    if (answer.status !== 200) throw new Error(`POST /webhooks/resend answered ${answer.summary} for "${d.label}"${typeof answer.body?.message === 'string' ? `: ${answer.body.message}` : ''}`)
  }

  const get = async (url: string): Promise<any> => {
    const answer = await request(`${base}${url}`, { headers: { authorization: `Bearer ${opts.apiKey}` } })
    if (answer.status !== 200) throw new Error(`GET ${url} answered ${answer.summary}`)
    return answer.body
  }
  const emails: ResendDemoResult['emails'] = []
  const sids = [...new Set(deliveries.map((d) => (d.payload.data as { email_id: string }).email_id))]
  for (const sid of sids) {
    const m = await get(`/v1/messages/${sid}`)
    const ev = await get(`/v1/messages/${sid}/events`)
    print('')
    print(`email ${sid}  "${m.subject}" to ${m.recipients.join(', ')}`)
    print(`  status ${m.status}${m.error_code === null ? '' : `  error ${m.error_code}: ${m.error_message}`}`)
    print(`  sent ${m.sent_at ?? '-'}  delivered ${m.delivered_at ?? '-'}  bounced ${m.bounced_at ?? '-'}`)
    print(`  opens ${m.engagement.open_count} (first ${m.engagement.first_opened_at ?? '-'})  clicks ${m.engagement.click_count} (first ${m.engagement.first_clicked_at ?? '-'})`)
    for (const e of ev.data) print(`  event #${e.id} ${e.status.padEnd(16)} at ${e.occurred_at ?? e.received_at}`)
    for (const e of ev.engagement) print(`  ${e.kind.padEnd(7)} #${e.id} at ${e.occurred_at}${e.link === null ? '' : ` ${e.link}`}`)
    emails.push({ sid, status: m.status, error_code: m.error_code, open_count: m.engagement.open_count, click_count: m.engagement.click_count, events: ev.data.map((e: { status: string }) => e.status) })
  }
  return { emails, answers }
}

/** Alone: Tidings on a throw-away embedded PostgreSQL, the stream, then shut down. */
async function main (): Promise<void> {
  const { buildApp } = await import('../src/app.ts')
  const { loadConfig } = await import('../src/config/config.ts')
  const { openDatabase } = await import('../src/db/connect.ts')
  const { startEmbeddedPostgres } = await import('../src/db/embedded-postgres.ts')
  const { migrateToLatest } = await import('../src/db/migrate.ts')
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-demo-resend-'))
  const secret = 'whsec_' + Buffer.from(randomUUID()).toString('base64')
  const apiKey = `k_demo_${randomUUID().replace(/-/g, '')}`
  const config = loadConfig({
    LOG_LEVEL: 'error',
    // The client shares Tidings' event loop: load shedding would measure the demo itself.
    MAX_EVENT_LOOP_DELAY_MS: '0',
    TWILIO_ACCOUNT_SID: 'AC' + '0'.repeat(32),
    TWILIO_AUTH_TOKEN: 'demo-token-not-used',
    API_KEYS: `demo:${apiKey}`,
    RESEND_WEBHOOK_SECRET: secret
  })
  const postgres = await startEmbeddedPostgres(dataDir)
  const database = await openDatabase({ databaseUrl: postgres.url, connectionTimeoutMs: 30_000, statementTimeoutMs: 30_000 })
  const app = await buildApp(config, { db: database.db, logStream: { write: printLogLine } })
  try {
    await migrateToLatest(database.db)
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    console.log(heading('Resend email events, each signed the Svix way'))
    await replayResendStream({ baseUrl: address, secret, apiKey, print: (line) => console.log(line === '' ? '' : `  ${line}`) })
  } finally {
    await app.close()
    await database.close()
    await postgres.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main()
}
