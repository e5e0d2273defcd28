/**
 * The money path under races and faults. Fallback attempts run through the real worker code
 * (`runFallbackAttempt`, driven by loops that retry like pg-boss would, several at once), the real
 * twilio-node client against the FAKE Twilio API (which delays, drops and errors as each random
 * schedule says), and a database connection a proxy cuts at random moments, then at every
 * statement of the send path in turn. Invariant: every WhatsApp failure that warrants a fallback
 * ends with exactly one SMS at Twilio, the one recorded; none when the caller opted out before it
 * left.
 *
 * The three tests run from their own files (`test/fallback-chaos-*.test.ts`), so tap runs them in
 * parallel: each is minutes of waiting on leases and timeouts, not of CPU. Importing this module
 * sets up the fake Twilio, a fresh database and the cutting proxy for that file's process.
 */
import { createRecorder } from '../../src/ingest/recorder.ts'
import t from 'tap'
import fc from 'fast-check'
import pino from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import { buildApp } from '../../src/app.ts'
import { loadConfig } from '../../src/config/config.ts'
import type { Database, FallbackRow } from '../../src/db/database.ts'
import { twilioMessageToEvent } from '../../src/domain/twilio-message.ts'
import { fallbackRecordHook } from '../../src/fallback/on-recorded.ts'
import { runFallbackAttempt, type FallbackWorkerDeps } from '../../src/fallback/worker.ts'
import { recordEvents } from '../../src/ingest/record-events.ts'
import { registerMessage } from '../../src/outbound/register-message.ts'
import { twilioClientsOf } from '../../src/providers/twilio-rest.ts'
import { startFakeTwilio, type CreateBehaviour } from '../fakes/fake-twilio.ts'
import { ACCOUNT_SID, API_KEY, contractChecker } from './app.ts'
import { proxiedTestDatabase } from './cut-proxy.ts'
import { fallbackEnv, randomNumber, sleep, storeWhatsAppMessage, SMS_FROM, WA_FROM } from './fallback.ts'

// The file's time budget (tap's default is 120 s): 200 random schedules and two sweeps of every statement: minutes on a busy machine, bounded.
t.setTimeout(15 * 60_000)

const TEXT = 'Your parcel is waiting'
const SEED = Number(process.env.CHAOS_SEED ?? 20261202)
const FINAL = ['sent', 'failed', 'skipped']

const fake = await startFakeTwilio()
t.teardown(async () => { await fake.close() })
const { db, proxy, proxied } = await proxiedTestDatabase(t)
// Short enough to keep 200 schedules quick, long enough that a loaded machine still gets answers.
const config = loadConfig(fallbackEnv(fake.url, { TWILIO_REQUEST_TIMEOUT_MS: '600' }))
const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger
const deps: FallbackWorkerDeps = {
  db: proxied.db,
  recorder: createRecorder({ db: proxied.db, maxBatch: 1, concurrency: 1 }),
  twilio: twilioClientsOf(config),
  statusCallbackUrl: `${config.publicBaseUrl}/webhooks/twilio/status`,
  leaseMs: 2000,
  log
}
// The recording hook as the app builds it; the "queue" is the driving loops below.
const hook = fallbackRecordHook({ config: config.fallback, enqueue: async () => null })

/** Records the WhatsApp failure (63016) through `recordEvents` with the fallback hook, retrying while the database is cut. */
async function recordFailure (sid: string, to: string): Promise<void> {
  const event = twilioMessageToEvent({ sid, status: 'failed', accountSid: ACCOUNT_SID, messagingServiceSid: null, from: `whatsapp:${WA_FROM}`, to: `whatsapp:${to}`, errorCode: 63016, errorMessage: 'Failed to send' }, 'reconcile')
  for (let i = 0; ; i++) {
    try { await recordEvents(proxied.db, [event], { onRecorded: hook }); return } catch (err) {
      if (i > 100) throw err
      await sleep(50)
    }
  }
}

async function fallbackOf (executor: Kysely<Database>, sid: string): Promise<FallbackRow | undefined> {
  return await executor.selectFrom('fallbacks').selectAll().where('original_sid', '=', sid).executeTakeFirst()
}

/** One worker: attempts until the fallback is final, as pg-boss would retry (bounded). */
async function drive (sid: string, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    const row = await fallbackOf(db, sid)
    if (row === undefined || FINAL.includes(row.state)) return
    try { await runFallbackAttempt(deps, row.id) } catch { await sleep(30 + Math.random() * 120) }
  }
}

function smsTo (to: string): string[] {
  return fake.sent().filter((m) => m.to === to).map((m) => m.sid)
}

interface Schedule {
  creates: CreateBehaviour[]
  workers: number
  /** `before`: the flag is off when the failure arrives; `during`: turned off at a random moment after. */
  optOut: 'none' | 'before' | 'during'
  optOutAfterMs: number
  /** Cut every database connection (refused for 100 ms) this long after the failure, or never. */
  cutAfterMs: number | null
}

const behaviour = fc.oneof(
  fc.constant<CreateBehaviour>({ kind: 'ok' }),
  fc.integer({ min: 0, max: 200 }).map((delayMs): CreateBehaviour => ({ kind: 'slow', delayMs })),
  fc.constant<CreateBehaviour>({ kind: 'slow', delayMs: 900 }),
  fc.constant<CreateBehaviour>({ kind: 'accept_then_drop' }),
  fc.constantFrom<CreateBehaviour>({ kind: 'http', status: 500 }, { kind: 'http', status: 503 }, { kind: 'http', status: 429 })
)
const schedule: fc.Arbitrary<Schedule> = fc.record({
  creates: fc.array(behaviour, { maxLength: 4 }),
  workers: fc.integer({ min: 1, max: 3 }),
  optOut: fc.constantFrom<Schedule['optOut']>('none', 'none', 'none', 'before', 'during'),
  optOutAfterMs: fc.integer({ min: 0, max: 800 }),
  cutAfterMs: fc.option(fc.integer({ min: 0, max: 800 }), { freq: 2 })
})

async function run (s: Schedule): Promise<{ to: string, sid: string, row: FallbackRow | undefined, sms: string[] }> {
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT, fallback: s.optOut !== 'before' })
  fake.answerNextSendsTo(to, ...s.creates)
  const deadline = Date.now() + 120_000
  await recordFailure(sid, to)
  const side: Array<Promise<unknown>> = []
  if (s.cutAfterMs !== null) side.push(sleep(s.cutAfterMs).then(async () => { await proxy.refuse(100) }))
  if (s.optOut === 'during') side.push(sleep(s.optOutAfterMs).then(async () => await registerMessage(db, sid, { to: `whatsapp:${to}`, fallback: false })))
  await Promise.all([...Array.from({ length: s.workers }, async () => { await drive(sid, deadline) }), ...side])
  return { to, sid, row: await fallbackOf(db, sid), sms: smsTo(to) }
}

function check (t: { equal: (a: unknown, b: unknown, m: string) => unknown, same: (a: unknown, b: unknown, m: string) => unknown, match: (a: unknown, b: unknown, m: string) => unknown }, s: Schedule, r: Awaited<ReturnType<typeof run>>): void {
  const what = `schedule ${JSON.stringify(s)}`
  if (s.optOut === 'before') {
    t.match(r.row, { state: 'skipped', reason: 'opted_out' }, what)
    t.equal(r.sms.length, 0, `no SMS: ${what}`)
  } else if (r.row?.state === 'skipped' && s.optOut === 'during') {
    t.equal(r.row.reason, 'opted_out_by_caller', what)
    t.equal(r.sms.length, 0, `opted out before it left, no SMS: ${what}`)
  } else {
    t.equal(r.row?.state, 'sent', what)
    t.equal(r.sms.length, 1, `exactly one SMS: ${what}`)
    t.equal(r.row?.fallback_sid, r.sms[0], `the one recorded: ${what}`)
  }
}

/** 200 random schedules of delays, drops, errors, racing workers, opt-outs and cuts. */
export function randomSchedulesTest (): void {
  t.test('fallback: 200 random schedules of Twilio delays, drops and errors, racing workers, opt-outs and database cuts: exactly one SMS each (none when opted out before it left)', async (t) => {
    const schedules = fc.sample(schedule, { numRuns: 200, seed: SEED })
    const concurrency = 20
    let opted = 0
    for (let i = 0; i < schedules.length; i += concurrency) {
      const batch = schedules.slice(i, i + concurrency)
      const results = await Promise.all(batch.map(run))
      batch.forEach((s, j) => { check(t, s, results[j]); if (s.optOut !== 'none') opted++ })
    }
    t.ok(opted > 20, `opt-outs were exercised (${opted})`)
    t.comment(`seed ${SEED} (CHAOS_SEED to replay)`)
  })
}

/** The database cut at every statement of a fallback attempt in turn. */
export function cutEveryWorkerStatementTest (): void {
  t.test('fallback: the database connection cut at every statement of an attempt in turn: still exactly one SMS', async (t) => {
    // A clean attempt, to count its statements.
    const to0 = randomNumber()
    const sid0 = await storeWhatsAppMessage(db, { to: to0, body: TEXT })
    await recordFailure(sid0, to0)
    const before = proxy.statements()
    await drive(sid0, Date.now() + 20_000)
    const statements = proxy.statements() - before
    t.ok(statements >= 8, `an attempt is ${statements} statements`)
    for (let k = 1; k <= statements; k++) {
      const to = randomNumber()
      const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
      await recordFailure(sid, to)
      proxy.failAtStatement(k, 150)
      await drive(sid, Date.now() + 30_000)
      t.ok(proxy.fired(), `the cut at statement ${k} happened`)
      proxy.disarm()
      const row = await fallbackOf(db, sid)
      t.equal(row?.state, 'sent', `cut at statement ${k}`)
      t.same(smsTo(to), [row?.fallback_sid], `cut at statement ${k}: exactly one SMS, the one recorded`)
    }
  })
}

/** `POST /v1/messages` with an Idempotency-Key, the database cut at every statement in turn. */
export function cutEverySendStatementTest (): void {
  t.test('POST /v1/messages with an Idempotency-Key: the database connection cut at every statement in turn: one message at Twilio per key, the one answered', async (t) => {
    const checkContract = contractChecker(t)
    // No statistics rollup refresh (the console's, at ready and every minute): its statements would
    // go through the proxy too and be counted as the send's.
    const app = await buildApp(loadConfig(fallbackEnv(fake.url, { TWILIO_REQUEST_TIMEOUT_MS: '600', CONSOLE_STATS_REFRESH_INTERVAL: '0' })), { db: proxied.db })
    checkContract(app)
    t.teardown(async () => { await app.close() })
    const post = async (to: string, key: string) => await app.inject({ method: 'POST', url: '/v1/messages', headers: { authorization: `Bearer ${API_KEY}`, 'idempotency-key': key }, payload: { to, from: SMS_FROM, body: TEXT } })
    const before = proxy.statements()
    t.equal((await post(randomNumber(), 'k-clean')).statusCode, 201)
    const statements = proxy.statements() - before
    t.ok(statements >= 4, `a send is ${statements} statements`)
    for (let k = 1; k <= statements; k++) {
      const to = randomNumber()
      proxy.failAtStatement(k, 150)
      let res = await post(to, `k-cut-${k}`)
      const deadline = Date.now() + 30_000
      while (res.statusCode !== 201 && Date.now() < deadline) {
        t.ok([409, 502, 503].includes(res.statusCode), `cut at ${k}: answered ${res.statusCode} ${res.json().code}`)
        await sleep(300)
        res = await post(to, `k-cut-${k}`)
      }
      t.equal(res.statusCode, 201, `cut at statement ${k}: sent in the end`)
      t.ok(proxy.fired(), `the cut at statement ${k} happened`)
      proxy.disarm()
      t.same(smsTo(to), [res.json().sid], `cut at statement ${k}: one message at Twilio, the one answered`)
    }
  })
}
