/**
 * Database faults under continuous signed Twilio load, through a TCP proxy between one real
 * Tidings process and PostgreSQL (docs/reliability.md), one after the other: connections cut
 * mid-transaction, cut during COMMIT, the database away for 3 s, connections stalled for 3 s.
 * After each: the process never exited, every callback acknowledged with 200 is in the database,
 * and callbacks are acknowledged again (the time it took is reported as a comment, not asserted:
 * this machine is shared).
 */
import t from 'tap'
import { formBody, sign, STATUS_PATH } from './helpers/app.ts'
import { sleep, startFaultRig, survived, until, within } from './helpers/faults.ts'
import { startLoad } from './helpers/load.ts'

// One process for every fault: start-up is the slow part on a busy machine.
const rig = await startFaultRig(t)

t.test('connections cut mid-transaction under load: the process stays up and loses nothing acknowledged', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 6 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  for (let i = 0; i < 3; i++) {
    // The recording transaction's status update, which travels with COMMIT (src/db/round-trips.ts):
    // the events are inserted, nothing is committed, and the connection goes.
    await within(rig.proxy.cutWhen(/update messages m set status/i), 10_000, 'a recording transaction')
    await sleep(1000)
    if (rig.exits.length > 0) t.fail(`the process exited after cut ${i + 1}`, { logs: rig.server.logs.slice(-3) })
    if (rig.exits.length > 0) return
  }
  await survived(t, rig, load, Date.now(), 'cut mid-transaction')
})

t.test('connections cut right after COMMIT was sent: nothing acknowledged is lost, the unknown outcome answers 503', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 6 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  for (let i = 0; i < 3; i++) {
    // COMMIT reaches the server (it may well commit), the answer never reaches Tidings. It is a
    // simple query, or the Parse of an unnamed statement behind the update it travels with.
    await within(rig.proxy.cutWhen(/(Q[\s\S]{4}|P[\s\S]{4}\0)commit\0/i, { forward: true }), 10_000, 'a commit')
    await sleep(1000)
  }
  await survived(t, rig, load, Date.now(), 'cut during commit')
})

t.test('database down for 3 s: callbacks answer 503 with Retry-After, /health says why, then recording resumes', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 4 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  rig.proxy.down()
  const downAt = Date.now()
  // A callback sent during the outage.
  const params = { MessageSid: 'SM' + 'f'.repeat(32), MessageStatus: 'sent', AccountSid: 'AC' + 'a'.repeat(32), From: '+14155550100', To: '+15558675310', ApiVersion: '2010-04-01' }
  const res = await fetch(`${rig.server.address}${STATUS_PATH}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign(params) }, body: formBody(params) })
  t.equal(res.status, 503, 'a callback during the outage answers 503')
  t.equal(res.headers.get('retry-after'), '5')
  t.equal((await res.json() as { code: string }).code, 'database_unavailable')
  const health = await fetch(`${rig.server.address}/health`)
  t.equal(health.status, 503)
  const body = await health.json() as Record<string, unknown>
  t.match(body, { status: 'unavailable', database: 'unavailable', reason: /^connection (reset|lost|refused)|no answer/ }, '/health says why')
  t.ok(typeof body.database_unavailable_since === 'string' && Date.parse(body.database_unavailable_since) >= downAt - 1000, 'and since when')
  await sleep(Math.max(0, 3000 - (Date.now() - downAt)))
  rig.proxy.restore()
  const restoredAt = Date.now()
  await until(async () => (await fetch(`${rig.server.address}/health`)).status === 200, '/health to answer 200 again', 20_000)
  t.comment(`/health ok again after ${Date.now() - restoredAt} ms`)
  await survived(t, rig, load, restoredAt, 'down 3 s')
})

t.test('connections stalled for 3 s (no error, no answer) then restored: nothing acknowledged is lost', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 4 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  rig.proxy.stall()
  await sleep(3000)
  rig.proxy.restore()
  await survived(t, rig, load, Date.now(), 'stalled 3 s')
})
