/**
 * The fallback worker when an earlier attempt may still reach Twilio (docs/fallback.md, rule 5),
 * driven attempt by attempt through the real worker code, the real twilio-node client against the
 * fake Twilio API, and a proxy in front of PostgreSQL that can hold a commit's answer:
 * - a second uncertain create (after the first was settled) is waited for like the first;
 * - a worker that stalls between recording "attempt started" and its create does not send once
 *   its lease may have run out (another worker may have sent meanwhile).
 * Invariant: exactly one SMS at Twilio, the one recorded.
 */
import t from 'tap'
import pino from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import { loadConfig } from '../src/config/config.ts'
import type { Database, FallbackRow } from '../src/db/database.ts'
import { twilioMessageToEvent } from '../src/domain/twilio-message.ts'
import { fallbackRecordHook } from '../src/fallback/on-recorded.ts'
import { runFallbackAttempt, type FallbackWorkerDeps } from '../src/fallback/worker.ts'
import { createRecorder } from '../src/ingest/recorder.ts'
import { recordEvents } from '../src/ingest/record-events.ts'
import { twilioClientsOf } from '../src/providers/twilio-rest.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'
import { ACCOUNT_SID } from './helpers/app.ts'
import { proxiedTestDatabase } from './helpers/cut-proxy.ts'
import { fallbackEnv, randomNumber, sleep, storeWhatsAppMessage, WA_FROM } from './helpers/fallback.ts'

t.setTimeout(3 * 60_000)

const TEXT = 'Your table is ready'
const LEASE_MS = 2000

const fake = await startFakeTwilio()
t.teardown(async () => { await fake.close() })
const { db, proxy, proxied } = await proxiedTestDatabase(t)
const config = loadConfig(fallbackEnv(fake.url, { TWILIO_REQUEST_TIMEOUT_MS: '500' }))
const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger

function workerOver (executor: Kysely<Database>, leaseMs = LEASE_MS): FallbackWorkerDeps {
  return {
    db: executor,
    recorder: createRecorder({ db: executor, maxBatch: 1, concurrency: 1 }),
    twilio: twilioClientsOf(config),
    statusCallbackUrl: `${config.publicBaseUrl}/webhooks/twilio/status`,
    leaseMs,
    log
  }
}
const direct = workerOver(db)

/** A WhatsApp message that failed with 63016, recorded with the fallback hook: its fallback is due. */
async function failedWhatsApp (to: string): Promise<{ sid: string, fallbackId: string }> {
  const sid = await storeWhatsAppMessage(db, { to, body: TEXT })
  const event = twilioMessageToEvent({ sid, status: 'failed', accountSid: ACCOUNT_SID, messagingServiceSid: null, from: `whatsapp:${WA_FROM}`, to: `whatsapp:${to}`, errorCode: 63016, errorMessage: 'Failed to send' }, 'reconcile')
  await recordEvents(db, [event], { onRecorded: fallbackRecordHook({ config: config.fallback, enqueue: async () => null }) })
  const row = await fallbackOf(sid)
  if (row === undefined) throw new Error('no fallback was decided')
  return { sid, fallbackId: row.id }
}

async function fallbackOf (sid: string): Promise<FallbackRow | undefined> {
  return await db.selectFrom('fallbacks').selectAll().where('original_sid', '=', sid).executeTakeFirst()
}

/** Create requests (POST) the fake Twilio received for `to`. */
function creates (to: string): number {
  return fake.requests.filter((r) => r.method === 'POST' && r.form?.To === to).length
}

/** One attempt; `ok`, or the error's message when it threw (the queue would retry). */
async function attempt (deps: FallbackWorkerDeps, fallbackId: string): Promise<string> {
  try { await runFallbackAttempt(deps, fallbackId); return 'ok' } catch (err) { return err instanceof Error ? err.message : String(err) }
}

/** Attempts as pg-boss would retry them, until the fallback is final or `ms` passed. */
async function driveToEnd (deps: FallbackWorkerDeps, sid: string, ms: number): Promise<FallbackRow | undefined> {
  const deadline = Date.now() + ms
  for (;;) {
    const row = await fallbackOf(sid)
    if (row === undefined || ['sent', 'failed', 'skipped'].includes(row.state) || Date.now() > deadline) return row
    await attempt(deps, row.id)
    await sleep(100)
  }
}

t.test('a second create whose outcome is unknown is waited for like the first: no second SMS when Twilio accepts it late', async (t) => {
  const to = randomNumber()
  const { sid, fallbackId } = await failedWhatsApp(to)
  // Create 1: 503 (maybe accepted, but nothing was). Create 2: Twilio creates it 3 s after the
  // request, long after the client's 500 ms timeout but within the 4 s lease. Create 3: at once.
  const leaseMs = 4000
  const worker = workerOver(db, leaseMs)
  fake.answerNextSendsTo(to, { kind: 'http', status: 503 }, { kind: 'accept_late', delayMs: 3000 }, { kind: 'ok' })

  t.match(await attempt(worker, fallbackId), /20500/, 'attempt 1: 503')
  await sleep(leaseMs + 200)
  // Attempt 2: the first create is a lease old and nothing came of it, so this one sends; it times out.
  t.match(await attempt(worker, fallbackId), /ECONNABORTED|timeout/i, 'attempt 2: the create timed out')
  const started = Date.now()
  // Attempt 3, at once: the lookup finds nothing yet, and the create that may still land is 2's.
  const third = await attempt(worker, fallbackId)
  t.ok(Date.now() - started < 2500, 'attempt 3 ran before Twilio accepted create 2')
  t.not(third, 'ok', 'attempt 3 did not finish the fallback')
  t.equal(creates(to), 2, `attempt 3 sent no create: it waits for create 2 (it said: ${third})`)
  t.match(await fallbackOf(sid), { state: 'pending', error_code: 'ECONNABORTED' }, 'released, keeping create 2\'s error as the last one')

  const row = await driveToEnd(worker, sid, 30_000)
  await sleep(3000)
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, `exactly one SMS reached Twilio (saw ${sms.length})`)
  t.equal(row?.state, 'sent')
  t.equal(row?.fallback_sid, sms[0]?.sid, 'and it is the one recorded')
})

t.test('a worker stalled after recording "attempt started" for longer than its lease sends nothing; the worker that took over sends the one SMS', async (t) => {
  const to = randomNumber()
  const { sid, fallbackId } = await failedWhatsApp(to)
  // Worker A's "attempt started" commits, but A hears of it only 2 leases later (a paused
  // process). Meanwhile its lease runs out and worker B, whose lookup finds nothing, sends.
  proxy.holdCommitAnswerAfter('"attempt_started_at" = ', 2 * LEASE_MS)
  const a = attempt(workerOver(proxied.db), fallbackId)
  await sleep(LEASE_MS + 300)
  const b = await driveToEnd(direct, sid, 30_000)
  t.equal(b?.state, 'sent', 'worker B sent it')
  const aSaid = await a
  await sleep(1500)
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, `exactly one SMS reached Twilio (saw ${sms.length}; worker A said: ${aSaid})`)
  const row = await fallbackOf(sid)
  t.equal(row?.state, 'sent')
  t.equal(row?.fallback_sid, sms[0]?.sid, 'and it is the one recorded')
})
