/**
 * Database faults under continuous signed Twilio load, through a TCP proxy between a real Tidings
 * process and PostgreSQL (docs/reliability.md). Each: the process never exits, every callback
 * acknowledged with 200 is in the database, and callbacks are acknowledged again after the fault
 * (the time it took is reported as a comment, not asserted: this machine is shared).
 */
import t from 'tap'
import { startLoad, lostAcknowledged } from './helpers/load.ts'
import { startFaultRig } from './helpers/faults.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** `promise`, or an error after `ms` (a fault that never triggers must not hang the test). */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms) })])
  } finally { clearTimeout(timer) }
}

t.test('connections cut mid-transaction under load: the process stays up and loses nothing acknowledged', async (t) => {
  const rig = await startFaultRig(t)
  const load = startLoad(rig.server.address, { concurrency: 6 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  for (let i = 0; i < 3; i++) {
    // The recording transaction's first write: begun, not committed.
    await within(rig.proxy.cutWhen(/insert into "message_events"/i), 10_000, 'a recording transaction')
    await sleep(1000)
    if (rig.exits.length > 0) t.fail(`the process exited after cut ${i + 1}`, { logs: rig.server.logs.slice(-3) })
    if (rig.exits.length > 0) return
  }
  const restored = Date.now()
  const recovered = await load.ackedAfter(restored)
  await sleep(500)
  await load.stop()
  t.same(rig.exits, [], 'the process did not exit')
  t.equal(rig.server.child.exitCode, null)
  t.same(await lostAcknowledged(rig.db, load.attempts), [], 'every acknowledged callback is stored')
  t.comment(`recovery ${recovered - restored} ms; answers ${JSON.stringify(load.counts())}`)
})
