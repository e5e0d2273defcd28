/**
 * PostgreSQL restarted mid-delivery: after recovery nothing owed is missing (issue 13). A real
 * Tidings process on a PostgreSQL server of the test's own (never the shared one), one
 * `message.status` subscription to a slow receiver on loopback that verifies every request with
 * `standardwebhooks`, continuous signed Twilio callbacks; the server is restarted (fast shutdown),
 * then crashed (kill -9 of the postmaster), each while deliveries are in flight. Once the backlog
 * drains: the process never exited, every acknowledged change was delivered with a valid
 * signature, repeats kept their `webhook-id`, nothing was sent that was not recorded. Recovery
 * times are reported, not asserted.
 */
import { sql } from 'kysely'
import t, { type Test } from 'tap'
import { startFaultRig, survived, until } from './helpers/faults.ts'
import { startLoad } from './helpers/load.ts'
import { startOwnPostgres } from './helpers/own-postgres.ts'
import { checkDeliveredAsRecorded, deliveredAllRecorded, subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { startReceiver } from './fakes/webhook-receiver.ts'

/** The receiver answers after this long, so requests are in flight when the server goes down. */
const ANSWER_AFTER_MS = 100

const server = await startOwnPostgres(t)
const rig = await startFaultRig(t, webhooksEnv({ WEBHOOK_TIMEOUT: '2s', WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: '16' }), { serverUrl: server.url })
const receiver = await startReceiver(() => ({ status: 200, delayMs: ANSWER_AFTER_MS }))
t.teardown(receiver.close)
await subscribe(rig.server.address, receiver)

/** Requests the receiver has not answered yet. */
const unanswered = (): number => receiver.received.filter((r) => Date.now() - r.at < ANSWER_AFTER_MS).length

async function deliveriesSurvive (t: Test, what: string, fault: () => Promise<void>): Promise<void> {
  const load = startLoad(rig.server.address, { concurrency: 4, pauseMs: 10 })
  t.teardown(load.stop)
  const before = receiver.received.length
  await until(() => receiver.received.length - before >= 40 && unanswered() > 0, '40 deliveries, and one in flight', 60_000)
  const { rows: [{ pending }] } = await sql<{ pending: number }>`select count(*)::int as pending from webhook_deliveries where state = 'pending'`.execute(rig.db)
  const inFlight = unanswered()
  const logsBefore = rig.server.logs.length
  const faulting = Date.now()
  await fault()
  const restoredAt = Date.now()
  t.ok(inFlight > 0, `deliveries in flight when the ${what} began: ${inFlight} (${pending} pending in all)`)
  t.comment(`${what}: PostgreSQL down and accepting again in ${restoredAt - faulting} ms`)
  // Stops the load; the process never exited and every acknowledged callback is stored.
  await survived(t, rig, load, restoredAt, what)

  const stopped = Date.now()
  const recorded = await deliveredAllRecorded(rig.db, receiver, 120_000)
  await until(async () => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from webhook_deliveries where state <> 'delivered'`.execute(rig.db)
    return rows[0].n === 0
  }, 'every delivery recorded as delivered', 120_000)
  const drainedIn = Date.now() - stopped
  t.same(rig.exits, [], 'the process never exited')

  const key = (sid: unknown, status: unknown): string => `${String(sid)} ${String(status)}`
  const verified = new Set(receiver.received.filter((r) => r.verifiedBy.length > 0).map((r) => key(r.payload.data.message_sid, r.payload.data.status)))
  const acked = load.attempts.filter((a) => a.code === 200)
  t.same(acked.filter((a) => !verified.has(key(a.sid, a.status))).map((a) => key(a.sid, a.status)), [], `every acknowledged change (${acked.length}) was delivered with a valid signature`)
  checkDeliveredAsRecorded(t, receiver, recorded)

  const afterRecovery = new Set(acked.filter((a) => a.startedAt >= restoredAt).map((a) => key(a.sid, a.status)))
  const firstAfter = receiver.received.find((r) => afterRecovery.has(key(r.payload.data.message_sid, r.payload.data.status)))
  const repeats = receiver.received.length - new Set(receiver.received.map((r) => r.id)).size
  const failedWrites = rig.server.logs.slice(logsBefore).filter((l) => l.msg === 'recording webhook outcomes failed; will retry').length
  t.comment(`${what}: first delivery of a callback sent after recovery ${firstAfter === undefined ? 'none' : `${firstAfter.at - restoredAt} ms`} after PostgreSQL was back; ` +
    `backlog drained ${drainedIn} ms after the load stopped; ${recorded.length} changes recorded so far, ${receiver.received.length} requests, ${repeats} repeats; ` +
    `${failedWrites} failed outcome writes retried`)
}

t.test('PostgreSQL restarted (fast shutdown) mid-delivery: after recovery nothing owed is missing', async (t) => {
  await deliveriesSurvive(t, 'restart', server.restart)
})

t.test('PostgreSQL crashed (kill -9 of the postmaster) mid-delivery: after recovery nothing owed is missing', async (t) => {
  await deliveriesSurvive(t, 'crash', server.crash)
})
