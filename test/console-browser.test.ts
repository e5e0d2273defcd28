/**
 * The operator console in a real browser (Debian's Chromium, headless, via playwright-core)
 * against a real Tidings listening on loopback, on a fresh test database. One browser for the
 * whole file; the steps run in order on one page, as an operator would use it.
 *
 * Set CONSOLE_SCREENSHOTS_DIR=docs/img to refresh the README's screenshots from this run.
 */
import path from 'node:path'
import t from 'tap'
import { sql, type Kysely } from 'kysely'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import type { Database, NewMessageRow } from '../src/db/database.ts'
import { API_KEY, contractChecker, messageSid, postSigned, smsCallback, testEnv } from './helpers/app.ts'
import { openBrowser } from './helpers/browser.ts'
import { insertStoredMessage } from './helpers/seed.ts'
import { eventually, subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { startReceiver } from './fakes/webhook-receiver.ts'
import { startOwnPostgres } from './helpers/own-postgres.ts'
import { openDatabase } from '../src/db/connect.ts'
import { migrateToLatest } from '../src/db/migrate.ts'

/** The seeded day the chart is checked on, and the week around it for the screenshots. */
const SEEDED_DAY = '2026-11-20T00:00:00.000Z'
const WEEK_START = '2026-11-14T00:00:00.000Z'
const DAY = 24 * 3600_000
const WA_TO = '+15551234567'

type Seed = Omit<Partial<NewMessageRow>, 'created_at'> & { sid: string, channel: NewMessageRow['channel'], status: string, created_at: Date }

async function insertMessage (db: Kysely<Database>, m: Seed): Promise<void> {
  await insertStoredMessage(db, { from_address: '+14155550100', to_address: '+15550001111', ...m })
}

/**
 * A week of history: on each day some SMS, WhatsApp and email messages with outcomes and delivery
 * times. The seeded day has exactly 6 SMS delivered, 3 WhatsApp failed (63016) and 2 emails
 * delivered: 11 messages, 8 delivered, 3 failed.
 */
async function seedHistory (db: Kysely<Database>): Promise<void> {
  const rows: Seed[] = []
  for (let d = 0; d < 7; d++) {
    const day = Date.parse(WEEK_START) + d * DAY
    const seeded = day === Date.parse(SEEDED_DAY)
    const counts = seeded ? { sms: 6, smsFailed: 0, wa: 0, waFailed: 3, email: 2 } : { sms: 8 + (d * 5) % 7, smsFailed: 1 + d % 3, wa: 4 + (d * 3) % 5, waFailed: d % 2, email: 2 + d % 3 }
    const at = (i: number): Date => new Date(day + (8 + (i * 7) % 12) * 3600_000 + i * 60_000)
    let i = 0
    const add = (channel: NewMessageRow['channel'], status: string, extra: Pick<NewMessageRow, 'error_code' | 'to_address' | 'open_count'> = {}): void => {
      const created = at(i++)
      const delivered = ['delivered', 'read', 'email.delivered'].includes(status)
      rows.push({
        sid: channel === 'email' ? `em_${messageSid().slice(2)}` : messageSid(),
        channel,
        status,
        created_at: created,
        sent_at: new Date(created.getTime() + 1000),
        delivered_at: delivered ? new Date(created.getTime() + 1000 + (3 + (i * 13) % 40) * 1000) : null,
        ...extra
      })
    }
    for (let k = 0; k < counts.sms; k++) add('sms', 'delivered')
    for (let k = 0; k < counts.smsFailed; k++) add('sms', 'undelivered', { error_code: '30007' })
    for (let k = 0; k < counts.wa; k++) add('whatsapp', k % 2 === 0 ? 'read' : 'delivered')
    for (let k = 0; k < counts.waFailed; k++) add('whatsapp', 'failed', { error_code: '63016' })
    for (let k = 0; k < counts.email; k++) add('email', 'email.delivered', { to_address: 'ada@example.com', open_count: k % 2 })
  }
  for (const r of rows) await insertMessage(db, r)
}

t.test('the console in Chromium: login, live feed, search, message page, charts, webhooks, logout', async (t) => {
  const checkContract = contractChecker(t)
  // A server of its own: the live feed must not wait for other tests' transactions (see own-postgres.ts).
  const handle = await openDatabase({ databaseUrl: (await startOwnPostgres(t)).url })
  t.teardown(async () => { await handle.close() })
  const db = handle.db
  await migrateToLatest(db)
  await seedHistory(db)
  // With outbound webhooks, to a receiver on loopback that refuses its first request once, so one
  // delivery takes two attempts. Closed after the app, whose sender may still be posting to it.
  const receiver = await startReceiver((_req, n) => ({ status: n === 1 ? 503 : 204 }))
  t.teardown(async () => { await receiver.close() })
  const config = loadConfig(testEnv({ PUBLIC_BASE_URL: 'https://hooks.example.com', LOG_LEVEL: 'silent', ...webhooksEnv() }))
  const app = await buildApp(config, { db, readDb: handle.readDb, listen: handle.listen, poolStats: handle.poolStats, readPoolStats: handle.readPoolStats })
  checkContract(app)
  t.teardown(async () => { await app.close() })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  // The test's key subscribes through the API before any callback, so each of them is delivered.
  const subscription = await subscribe(base, receiver)

  // A WhatsApp message that failed and got an SMS fallback, recorded through real callbacks.

  const wa = messageSid()
  const waParams = (status: string, extra: Record<string, string> = {}): Record<string, string> =>
    smsCallback(wa, status, { From: 'whatsapp:+14155238886', To: `whatsapp:${WA_TO}`, ChannelPrefix: 'whatsapp', ...extra })
  t.equal(await postSigned(base, waParams('sent')), 200)
  t.equal(await postSigned(base, waParams('failed', { ErrorCode: '63016' })), 200)
  const sms = messageSid()
  t.equal(await postSigned(base, smsCallback(sms, 'sent', { To: WA_TO })), 200)
  t.equal(await postSigned(base, smsCallback(sms, 'delivered', { To: WA_TO })), 200)
  await db.updateTable('messages').set({ fallback_of: wa }).where('sid', '=', sms).execute()
  await db.updateTable('messages').set({ fallback_sid: sms }).where('sid', '=', wa).execute()
  await db.insertInto('fallbacks').values({ original_sid: wa, state: 'sent', reason: null, trigger_error_code: '63016', to_address: WA_TO, sms_from: '+14155550199', messaging_service_sid: null, fallback_sid: sms, error_code: null, error_message: null, attempts: 1, attempt_started_at: null, lease_until: null, job_id: null }).execute()

  const { page, offLoopback, pageErrors } = await openBrowser(t, 'console')
  const screenshotsDir = process.env.CONSOLE_SCREENSHOTS_DIR
  const shoot = async (name: string): Promise<void> => {
    if (screenshotsDir !== undefined && screenshotsDir !== '') await page.screenshot({ path: path.join(screenshotsDir, `${name}.png`) })
  }

  // A wrong key is refused, and no cookie is set.
  await page.goto(`${base}/console/`)
  await page.getByLabel('API key').fill('k_wrong_key_0123456789')
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.getByText('That API key is not valid.').waitFor({ timeout: 5000 })
  t.same((await page.context().cookies()).map((c) => c.name), [], 'no cookie for a wrong key')

  // The right key logs in, with the keyboard.
  await page.getByLabel('API key').fill(API_KEY)
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: 'Live feed' }).waitFor({ timeout: 5000 })
  const cookie = (await page.context().cookies()).find((c) => c.name === 'tidings_session')
  t.match(cookie, { httpOnly: true, sameSite: 'Strict' }, 'the session cookie')
  t.equal(await page.locator('#who').textContent(), 'key: billing')

  // A callback posted now appears in the live feed within 2 s, with its masked recipient and error meaning.
  await page.locator('.connection[data-state="live"]').waitFor({ timeout: 5000 })
  await page.waitForTimeout(300)
  const live = messageSid()
  t.equal(await postSigned(base, smsCallback(live, 'undelivered', { ErrorCode: '30003' })), 200)
  const row = page.locator(`tr[data-sid="${live}"]`)
  await row.waitFor({ timeout: 2000 })
  t.match(await row.textContent(), /undelivered/)
  t.match(await row.textContent(), /30003 Unreachable destination handset/)
  t.match(await row.locator('.address').textContent(), /^\+155•+10$/, 'the recipient is masked')
  await row.getByRole('button', { name: 'Reveal recipient' }).click()
  t.equal(await row.locator('.address').textContent(), '+15558675310', 'and revealed on request')
  t.match(await row.locator('time').getAttribute('title'), /^UTC \d{4}-\d{2}-\d{2} \d{2}:\d{2}/, 'local time with UTC on hover')

  // Pause holds new events back; the filter hides other channels.
  await page.getByRole('button', { name: 'Pause' }).click()
  const held = messageSid()
  t.equal(await postSigned(base, smsCallback(held, 'sent')), 200)
  await page.getByRole('button', { name: 'Resume (1 new)' }).waitFor({ timeout: 2000 })
  t.equal(await page.locator(`tr[data-sid="${held}"]`).count(), 0, 'paused: not shown')
  await page.getByRole('button', { name: 'Resume (1 new)' }).click()
  await page.locator(`tr[data-sid="${held}"]`).waitFor({ timeout: 2000 })
  await page.getByLabel('Channel').selectOption('email')
  t.equal(await page.locator('tbody tr').count(), 0, 'no email events')
  await page.getByLabel('Channel').selectOption('')
  await page.getByLabel('Status').selectOption('failed')
  t.equal(await page.locator(`tr[data-sid="${held}"]`).count(), 0, 'sent is not failed')
  t.equal(await page.locator(`tr[data-sid="${live}"]`).count(), 1)
  await page.getByLabel('Status').selectOption('')
  await shoot('console-feed')

  // Readable at phone width: nothing but tables (which scroll in place) is wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 })
  t.ok(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1'), 'no horizontal scrolling at 390 px')
  await page.setViewportSize({ width: 1280, height: 800 })

  // Search by recipient, with the whatsapp: prefix, finds the WhatsApp message.
  await page.getByRole('link', { name: 'Search' }).click()
  await page.getByLabel('Recipient').fill(`whatsapp:${WA_TO}`)
  await page.getByRole('button', { name: 'Search' }).click()
  await page.getByRole('link', { name: wa }).waitFor({ timeout: 5000 })
  t.equal(await page.getByRole('link', { name: sms }).count(), 1, 'the fallback SMS went to the same number')

  // The message page: status, timeline with collapsed parameters, and the fallback link both ways.
  await page.getByRole('link', { name: wa }).click()
  await page.getByRole('heading', { name: 'Timeline' }).waitFor({ timeout: 5000 })
  const timeline = page.locator('.timeline').first()
  t.same(await timeline.locator('.event .badge').allTextContents(), ['sent', 'failed'])
  t.equal(await timeline.locator('details[open]').count(), 0, 'raw parameters start collapsed')
  await timeline.locator('summary').first().click()
  t.match(await timeline.locator('pre').first().textContent(), /"MessageStatus": "sent"/)
  t.match(await page.locator('.fallback-link').textContent(), new RegExp(`SMS fallback: sent — ${sms} is delivered`))
  t.match(await page.getByRole('heading', { name: 'Reconciliation history' }).locator('xpath=..').textContent(), /Never reconciled/)
  await shoot('console-message')
  await page.locator('.fallback-link').getByRole('link', { name: sms }).click()
  await page.getByText('This SMS is the fallback of WhatsApp message').waitFor({ timeout: 5000 })
  t.equal(await page.locator('.fallback-link').getByRole('link', { name: wa }).count(), 1, 'and back')

  // The chart for the seeded day shows the seeded counts.
  await page.goto(`${base}/console/#/charts?bucket=day&since=${WEEK_START}&until=${new Date(Date.parse(SEEDED_DAY) + DAY).toISOString()}`)
  const seededRow = page.locator(`tr[data-start="${SEEDED_DAY}"]`)
  await seededRow.waitFor({ timeout: 5000 })
  t.equal(await seededRow.locator('[data-col="total"]').textContent(), '11')
  t.equal(await seededRow.locator('[data-col="delivered"]').textContent(), '8')
  t.equal(await seededRow.locator('[data-col="failed"]').textContent(), '3')
  t.match(await seededRow.textContent(), /email 2\/0\/0, sms 6\/0\/0, whatsapp 0\/3\/0/)
  t.equal(await page.locator('.chart canvas').count(), 4, 'four charts drawn')
  t.match(await page.locator('table.errors').textContent(), /63016WhatsApp: free-form message outside the 24-hour window/)
  await page.waitForTimeout(200)
  await shoot('console-charts')

  // Webhooks: the key's subscription and its deliveries, once every callback of the test (6 status
  // changes) has been delivered; read-only, and the signing secret is never shown.
  const deliveries = async (): Promise<Array<{ state: string, attempts: number }>> =>
    (await sql<{ state: string, attempts: number }>`select state, attempts from webhook_deliveries where subscription_id = ${subscription.id}`.execute(db)).rows
  await eventually(async () => { const d = await deliveries(); return d.length === 6 && d.every((r) => r.state === 'delivered') }, 20_000, 'all 6 status changes delivered')
  t.same((await deliveries()).map((r) => r.attempts).sort(), [1, 1, 1, 1, 1, 2], 'the first delivery took two attempts')
  t.equal(receiver.unverified().length, 0, 'the receiver verified every delivery with the secret')
  await page.getByRole('link', { name: 'Webhooks' }).click()
  await page.getByRole('heading', { name: 'Webhooks', exact: true }).waitFor()
  const section = page.locator('section.subscription')
  await section.getByRole('heading', { name: receiver.url }).waitFor({ timeout: 5000 })
  t.equal(await section.count(), 1, 'one subscription listed')
  const subTable = section.locator('table', { has: page.locator('caption', { hasText: 'Subscription' }) })
  t.match(await subTable.textContent(), receiver.url, 'its URL in the subscription table')
  t.match(await subTable.textContent(), /message\.status/, 'and its event types')
  const deliveryTable = section.locator('table', { has: page.locator('caption', { hasText: 'Recent deliveries' }) })
  const headers = await deliveryTable.locator('thead th').allTextContents()
  const column = async (name: string): Promise<string[]> => {
    const i = headers.indexOf(name)
    t.not(i, -1, `a "${name}" column`)
    return await deliveryTable.locator(`tbody tr td:nth-child(${i + 1})`).allTextContents()
  }
  t.same(await column('state'), Array(6).fill('delivered'), 'six deliveries, all delivered')
  t.same((await column('attempts')).sort(), ['1', '1', '1', '1', '1', '2'], 'with their attempts')
  t.same(await column('last status code'), Array(6).fill('204'), 'and the last response')
  t.equal(await page.locator('main .error').count(), 0, 'no error on the webhooks page')
  const html = await page.content()
  t.notOk(html.includes(subscription.secret), 'the signing secret is not on the page')
  t.notMatch(html, /whsec_/, 'nor any secret')
  await shoot('console-webhooks')
  // The session cookie cannot change subscriptions: 403 read_only_session, and nothing changed.
  const refused = await page.evaluate(async ([url, id]) => {
    const create = await fetch('/v1/subscriptions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url, event_types: ['message.status'] }) })
    const remove = await fetch(`/v1/subscriptions/${id}`, { method: 'DELETE' })
    return [{ status: create.status, code: (await create.json() as { code: string }).code }, { status: remove.status, code: (await remove.json() as { code: string }).code }]
  }, [receiver.url, subscription.id])
  t.same(refused, [{ status: 403, code: 'read_only_session' }, { status: 403, code: 'read_only_session' }], 'POST and DELETE with the cookie are refused')
  t.same((await sql<{ id: string }>`select id::text as id from webhook_subscriptions`.execute(db)).rows.map((r) => r.id), [subscription.id], 'the subscription is unchanged')

  // Logout ends the session: the server forgets it and the page asks for a key again.
  await page.getByRole('button', { name: 'Log out' }).click()
  await page.getByLabel('API key').waitFor({ timeout: 5000 })
  t.equal((await db.selectFrom('console_sessions').selectAll().execute()).length, 0, 'session deleted')
  t.equal(await page.evaluate(async () => (await fetch('/v1/messages')).status), 401, '/v1 refuses the browser afterwards')

  t.same(offLoopback, [], 'no request left loopback')
  // Expected: the 401s of "no session yet" and of the wrong key, the 401 of the fetch just above,
  // and the 403s of the cookie's attempts to change subscriptions.
  const expected = (e: string): boolean => /status of 401 .*\/(console\/session|v1\/messages)\)$/.test(e) || /status of 403 .*\/v1\/subscriptions(\/[0-9a-f-]+)?\)$/.test(e)
  t.same(pageErrors.filter((e) => !expected(e)), [], 'no script errors or CSP violations')
})
