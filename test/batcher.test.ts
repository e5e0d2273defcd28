import { sql, type Kysely } from 'kysely'
import type { Database } from '../src/db/database.ts'
import t from 'tap'
import { twilioCallbackToEvent } from '../src/domain/twilio-callback.ts'
import { createRecorder } from '../src/ingest/recorder.ts'
import { messageSid, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'

const event = (sid: string, status: string) => twilioCallbackToEvent(smsCallback(sid, status), new Date())
/** The app's recorder with group commit: at most 50 events a transaction, `concurrency` transactions. */
const batcherOf = (db: Kysely<Database>, concurrency: number) => createRecorder({ db, maxBatch: 50, concurrency })

t.test('Recorder.recordGrouped (EventBatcher)', async (t) => {
  const { db } = await createTestDatabase(t)
  /** Rows written by one transaction share its xmin: the number of commits that wrote these events. */
  const commitsFor = async (sids: string[]): Promise<number> => Number((await sql<{ n: string }>`
    select count(distinct xmin::text)::text as n from message_events where message_sid = any(${sids})`.execute(db)).rows[0].n)

  t.test('records concurrent events in shared transactions, every one once', async (t) => {
    const batcher = batcherOf(db, 1)
    const sids = Array.from({ length: 200 }, () => messageSid())
    const outcomes = await Promise.all(sids.map(async (sid) => await batcher.recordGrouped(event(sid, 'sent'))))
    t.ok(outcomes.every((o, i) => o.outcome === 'recorded' && o.sid === sids[i]), 'each caller gets its own outcome')
    const commits = await commitsFor(sids)
    t.ok(commits <= 6, `200 events in ${commits} commits`)
    t.equal((await db.selectFrom('message_events').select('id').where('message_sid', 'in', sids).execute()).length, 200)
  })

  t.test('with a batch in flight, the events that arrive meanwhile share the next transaction', async (t) => {
    const batcher = batcherOf(db, 2)
    const blocker = batcher.recordGrouped(event(messageSid(), 'sent')) // in flight
    const sids = Array.from({ length: 20 }, () => messageSid())
    const outcomes = await Promise.all(sids.map(async (sid) => await batcher.recordGrouped(event(sid, 'sent'))))
    await blocker
    t.ok(outcomes.every((o) => o.outcome === 'recorded'))
    t.equal(await commitsFor(sids), 1, 'one transaction, not a batch of one beside the first and then the other nineteen')
  })

  t.test('a batch waiting on a row lock: the events queued behind it get a transaction of their own', async (t) => {
    const batcher = batcherOf(db, 2)
    const held = messageSid()
    await batcher.recordGrouped(event(held, 'sent'))
    const locker = await db.connection().execute(async (conn) => {
      await sql`begin`.execute(conn)
      await sql`select 1 from messages where sid = ${held} for update`.execute(conn)
      const waiting = batcher.recordGrouped(event(held, 'delivered')) // blocks on the lock
      const sids = Array.from({ length: 5 }, () => messageSid())
      const others = await Promise.all(sids.map(async (sid) => await batcher.recordGrouped(event(sid, 'sent'))))
      t.ok(others.every((o) => o.outcome === 'recorded'), 'recorded while the lock is still held')
      t.equal(batcher.batcher.inFlight, 1, 'the locked batch is still in flight')
      await sql`commit`.execute(conn)
      return waiting
    })
    t.equal((await locker).outcome, 'recorded', 'and the locked one once the lock is gone')
  })

  t.test('a lone event is recorded at once, in its own transaction', async (t) => {
    const batcher = batcherOf(db, 4)
    const sid = messageSid()
    const outcome = await batcher.recordGrouped(event(sid, 'delivered'))
    t.equal(outcome.outcome, 'recorded')
    t.equal(outcome.currentStatus, 'delivered')
  })

  t.test('duplicates within one batch: one recorded, the rest duplicates', async (t) => {
    const batcher = batcherOf(db, 1)
    const sid = messageSid()
    await batcher.recordGrouped(event(messageSid(), 'sent')) // occupy the slot so the next ones batch
    const outcomes = await Promise.all(Array.from({ length: 10 }, async () => await batcher.recordGrouped(event(sid, 'delivered'))))
    t.equal(outcomes.filter((o) => o.outcome === 'recorded').length, 1)
    t.equal(outcomes.filter((o) => o.outcome === 'duplicate').length, 9)
  })

  t.test('one event that always fails costs only itself: the others are recorded one by one', async (t) => {
    const poison = messageSid()
    const batcher = batcherOf(db, 1)
    batcher.use({ onRecorded: async (_trx, recorded) => { if (recorded.some((r) => r.event.sid === poison)) throw new Error('hook failed') } })
    const blocker = batcher.recordGrouped(event(messageSid(), 'sent'))
    const sids = [messageSid(), poison, messageSid()]
    const results = await Promise.allSettled(sids.map(async (sid) => await batcher.recordGrouped(event(sid, 'sent'))))
    await blocker
    t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
    const stored = (await db.selectFrom('message_events').select('message_sid').where('message_sid', 'in', sids).execute()).map((r) => r.message_sid)
    t.same(stored.sort(), [sids[0], sids[2]].sort(), 'the good events are stored, the bad one is not')
  })
})

t.test('Recorder.recordGrouped with the database unavailable rejects the whole batch at once', async (t) => {
  const { openDatabase } = await import('../src/db/connect.ts')
  const handle = await openDatabase({ databaseUrl: 'postgres://postgres@127.0.0.1:1/none' })
  t.teardown(async () => { await handle.close() })
  const batcher = batcherOf(handle.db, 1)
  const results = await Promise.allSettled(Array.from({ length: 5 }, async () => await batcher.recordGrouped(event(messageSid(), 'sent'))))
  t.ok(results.every((r) => r.status === 'rejected'))
})
