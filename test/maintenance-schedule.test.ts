/**
 * The scheduled jobs across replicas, and the one-off commands: two app instances on one
 * PostgreSQL database run each scheduled occurrence once (pg-boss schedule); `npm run reconcile`
 * and `npm run retention` as child processes. Twilio is the FAKE Twilio API on loopback.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { sql } from 'kysely'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { jobQueueConnectionOf } from '../src/fallback/queue.ts'
import { everyRule, RECONCILE_QUEUE, RETENTION_QUEUE } from '../src/maintenance/scheduler.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { ACCOUNT_SID, messageSid } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { fallbackEnv, messageRow, sleep, waitFor } from './helpers/fallback.ts'
import { insertStuckMessage, twilioFetches } from './helpers/reconcile.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))

const fake = await startFakeTwilio()
t.teardown(async () => { await fake.close() })
const { db, url, handle } = await createTestDatabase(t)

/** A Twilio SMS stuck at `sent` for 45 minutes, which the fake reports as `status`. */
async function stuckSms (status: string): Promise<string> {
  const sid = messageSid()
  await insertStuckMessage(db, {
    sid,
    provider: 'twilio',
    channel: 'sms',
    account_sid: ACCOUNT_SID,
    from_address: '+14155550100',
    to_address: '+15558675310',
    status: 'sent',
    status_rank: 5,
    sent_at: new Date()
  })
  fake.seed({ sid, account_sid: ACCOUNT_SID, to: '+15558675310', status })
  return sid
}

async function jobsIn (queue: string): Promise<number> {
  const r = await sql<{ n: string }>`select count(*)::text as n from pgboss.job where name = ${queue}`.execute(db)
  return Number(r.rows[0].n)
}

t.test('scheduled reconciliation and retention run once across two app instances on one database', async (t) => {
  // pg-boss files one job per schedule per minute: keep the test inside one minute.
  const second = new Date().getUTCSeconds()
  if (second > 35) await sleep((61 - second) * 1000)
  const minute = Math.floor(Date.now() / 60_000)
  // Still `sent` at Twilio, and due again a second after each look: every pass would fetch it again.
  const sid = await stuckSms('sent')
  const config = loadConfig(fallbackEnv(fake.url, {
    RECONCILE_INTERVAL: '1m', RECONCILE_AFTER: '1s', RETENTION_INTERVAL: '1m', SCHEDULE_CHECK_INTERVAL: '1s'
  }))
  const apps = await Promise.all([0, 1].map(async () => await buildApp(config, { db, jobQueue: jobQueueConnectionOf(handle) })))
  t.teardown(async () => { await Promise.all(apps.map(async (a) => await a.close())) })
  await Promise.all(apps.map(async (a) => await a.ready()))

  await waitFor(async () => twilioFetches(fake, sid) > 0 ? true : undefined, 'the scheduled reconciliation')
  await waitFor(async () => await jobsIn(RETENTION_QUEUE) > 0 ? true : undefined, 'the scheduled retention')
  await sleep(5000) // five more schedule checks on each instance
  t.equal(Math.floor(Date.now() / 60_000), minute, 'still the same minute') // else the counts below may be 2
  t.equal(twilioFetches(fake, sid), 1, 'the message was fetched once')
  t.equal(await jobsIn(RECONCILE_QUEUE), 1, 'one reconciliation job')
  t.equal(await jobsIn(RETENTION_QUEUE), 1, 'one retention job')
  t.equal((await messageRow(db, sid))?.reconcile_attempts, 1)
  const schedules = await sql<{ name: string, cron: string }>`select name, cron from pgboss.schedule order by name`.execute(db)
  t.same(schedules.rows, [{ name: RECONCILE_QUEUE, cron: 'FREQ=SECONDLY;INTERVAL=60' }, { name: RETENTION_QUEUE, cron: 'FREQ=SECONDLY;INTERVAL=60' }])
  const metrics = (await Promise.all(apps.map(async (a) => (await a.inject({ method: 'GET', url: '/metrics' })).body))).join('\n')
  t.equal(metrics.match(/tidings_reconcile_total\{provider="twilio",outcome="unchanged"\} 1/g)?.length, 1, 'counted on the instance that ran it')
})

t.test('an interval is a pg-boss recurrence rule anchored on the epoch', async (t) => {
  t.equal(everyRule(90_000), 'FREQ=SECONDLY;INTERVAL=90')
  t.equal(everyRule(300_000), 'FREQ=SECONDLY;INTERVAL=300')
})

t.test('npm run reconcile prints what it changed and exits 0', async (t) => {
  const changed = await stuckSms('delivered')
  const env = { ...process.env, ...fallbackEnv(fake.url, { DATABASE_URL: url, LOG_LEVEL: 'silent' }) }
  const { stdout } = await run(process.execPath, ['scripts/reconcile.ts'], { cwd: ROOT, env })
  t.match(stdout, `${changed} (twilio): sent → delivered`)
  t.match(stdout, /Checked \d+ message\(s\): 1 changed/)
  t.equal((await messageRow(db, changed))?.status, 'delivered')
  const events = await db.selectFrom('message_events').select(['message_status', 'source']).where('message_sid', '=', changed).execute()
  t.same(events, [{ message_status: 'delivered', source: 'reconcile' }])

  const bad = await run(process.execPath, ['scripts/reconcile.ts'], { cwd: ROOT, env: { ...env, RECONCILE_INTERVAL: 'often' } }).then(() => undefined, (err: { code: number, stderr: string }) => err)
  t.equal(bad?.code, 1, 'a configuration error exits 1')
  t.match(bad?.stderr, /RECONCILE_INTERVAL must be a duration/)
})

t.test('npm run retention deletes old events and says how many', async (t) => {
  const sid = await stuckSms('sent')
  await db.insertInto('message_events').values({
    message_sid: sid,
    message_status: 'sent',
    channel: 'sms',
    from_address: null,
    to_address: null,
    error_code: null,
    error_message: null,
    raw: '{}',
    received_at: sql`now() - interval '91 days'`,
    carrier_at: null,
    source: 'webhook'
  }).execute()
  const env = { ...process.env, ...fallbackEnv(fake.url, { DATABASE_URL: url, LOG_LEVEL: 'silent' }) }
  const { stdout } = await run(process.execPath, ['scripts/retention.ts'], { cwd: ROOT, env })
  t.match(stdout, 'Deleted rows older than 90 day(s): message_events 1, email_engagements 0.')
  t.ok(await messageRow(db, sid), 'the message row stays')
})
