/**
 * src/db/round-trips.ts against real PostgreSQL, through a proxy that counts the round trips each
 * client makes (`Q` and Sync messages): BEGIN and statements marked `sentWithNext` travel with the
 * next statement, and what that changes for errors.
 */
import { sql, type Kysely } from 'kysely'
import t, { type Test } from 'tap'
import { openDatabase, preparedStatement, sentWithNext } from '../src/db/connect.ts'
import type { Database } from '../src/db/database.ts'
import { twilioCallbackToEvent } from '../src/domain/twilio-callback.ts'
import { recordEvents, type IncomingEvent } from '../src/ingest/record-events.ts'
import { messageSid, smsCallback } from './helpers/app.ts'
import { startCutProxy } from './helpers/cut-proxy.ts'
import { createTestDatabase } from './helpers/database.ts'

async function setup (t: Test): Promise<{ direct: Kysely<Database>, db: Kysely<Database>, trips: (fn: () => Promise<unknown>) => Promise<number> }> {
  const { db: direct, url } = await createTestDatabase(t)
  await sql`create table notes (id int primary key, body text not null)`.execute(direct)
  const proxy = await startCutProxy(url)
  // One connection: what it has prepared and held is what the next statement finds.
  const handle = await openDatabase({ databaseUrl: proxy.url, poolMax: 1 })
  t.teardown(async () => { await handle.close(); await proxy.close() })
  await sql`select 1`.execute(handle.db) // connected
  const trips = async (fn: () => Promise<unknown>): Promise<number> => {
    const before = proxy.roundTrips()
    await fn()
    return proxy.roundTrips() - before
  }
  return { direct, db: handle.db, trips }
}

t.test('a recorded batch takes two round trips, whatever its size', async (t) => {
  const { db, trips } = await setup(t)
  const batch = (n: number): IncomingEvent[] => Array.from({ length: n }, (_, i) => twilioCallbackToEvent(smsCallback(messageSid(), i % 2 === 0 ? 'sent' : 'delivered'), new Date()))
  await recordEvents(db, batch(2)) // the first batch also prepares the statement
  t.equal(await trips(async () => await recordEvents(db, batch(1))), 2, 'BEGIN with the upsert-and-insert, the update with COMMIT')
  t.equal(await trips(async () => await recordEvents(db, batch(200))), 2, '200 events: still two')
})

t.test('BEGIN travels with the first statement; a transaction that sends nothing costs nothing', async (t) => {
  const { db, direct, trips } = await setup(t)
  t.equal(await trips(async () => await db.transaction().execute(async (trx) => {
    await sql`insert into notes values (1, 'one')`.execute(trx)
  })), 2, 'BEGIN + insert, then COMMIT')
  t.equal(await trips(async () => await db.transaction().execute(async () => {})), 0, 'an empty transaction is never sent')
  // Several statements in one text need the simple protocol: BEGIN goes first, on its own.
  await db.transaction().execute(async (trx) => {
    await sql`insert into notes values (5, 'five'); delete from notes where id = 5`.execute(trx)
  })
  await t.rejects(db.transaction().execute(async () => { throw new Error('before any statement') }), /before any statement/)
  t.equal((await sql<{ n: number }>`select count(*)::int as n from notes`.execute(direct)).rows[0].n, 1)
  // The connection is still usable, and outside a transaction nothing is held.
  t.equal(await trips(async () => await sql`${sentWithNext()} insert into notes values (2, 'two')`.execute(db)), 1, 'a marked statement outside a transaction runs at once')
  t.equal((await sql<{ n: number }>`select count(*)::int as n from notes`.execute(direct)).rows[0].n, 2)
})

t.test('a held statement that fails rejects the next one, and nothing of the transaction commits', async (t) => {
  const { db, direct, trips } = await setup(t)
  const attempt = db.transaction().execute(async (trx) => {
    await sql`insert into notes values (10, 'kept only with the rest')`.execute(trx)
    // Resolves at once: it has not been sent yet.
    await sql`${sentWithNext()} insert into notes values (11, null)`.execute(trx)
  })
  await t.rejects(attempt, { code: '23502' }, 'COMMIT rejects with the held statement\'s error (not-null violation)')
  t.equal((await sql<{ n: number }>`select count(*)::int as n from notes`.execute(direct)).rows[0].n, 0, 'nothing committed')

  // Held before a prepared statement's first use: its Parse was skipped with the rest, so the next
  // use must parse it again instead of binding a statement the server never prepared.
  const prepared = async (id: number, on: Kysely<Database> = db): Promise<void> => {
    await sql`${preparedStatement('round_trips_note')} insert into notes values (${id}, 'prepared')`.execute(on)
  }
  await t.rejects(db.transaction().execute(async (trx) => {
    await sql`insert into notes values (21, 'first')`.execute(trx)
    await sql`${sentWithNext()} insert into notes values (22, null)`.execute(trx)
    await prepared(23, trx)
  }), { code: '23502' }, 'the prepared statement behind the failed one rejects with its error')
  await prepared(24)
  t.equal(await trips(async () => await prepared(25)), 1, 'and then runs as a prepared statement')
  t.same((await sql<{ id: number }>`select id from notes order by id`.execute(direct)).rows.map((r) => r.id), [24, 25])
})

t.test('a rollback drops what is held; a held statement runs before the next one, in order', async (t) => {
  const { db, direct, trips } = await setup(t)
  const rolledBack = trips(async () => await db.transaction().execute(async (trx) => {
    await sql`${sentWithNext()} insert into notes values (30, 'never sent')`.execute(trx)
    throw new Error('changed my mind')
  }).catch(() => {}))
  t.equal(await rolledBack, 0, 'BEGIN and the held insert never reach the server')
  await db.transaction().execute(async (trx) => {
    await sql`insert into notes values (31, 'a')`.execute(trx)
    await sql`${sentWithNext()} insert into notes values (32, 'b')`.execute(trx)
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from notes`.execute(trx)
    t.equal(rows[0].n, 2, 'the held insert runs before the next statement, in order')
  })
  t.same((await sql<{ id: number }>`select id from notes order by id`.execute(direct)).rows.map((r) => r.id), [31, 32])
})
