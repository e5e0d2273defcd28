import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import t from 'tap'
import { RECORDING_COLUMNS, type Database } from '../src/db/database.ts'
import { twilioCallbackToEvent } from '../src/domain/twilio-callback.ts'
import { AppError } from '../src/errors.ts'
import { recordBatch, recordEvents, type IncomingEvent, type RecordedEvent } from '../src/ingest/record-events.ts'
import { createRecorder, recordingFailure } from '../src/ingest/recorder.ts'
import { ACCOUNT_SID, SUB_ACCOUNT_SID, SUB_ACCOUNT_TOKEN, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { openDatabase } from '../src/db/connect.ts'
import { createTestDatabase } from './helpers/database.ts'

const event = (sid: string, status: string, extra: Record<string, string> = {}): IncomingEvent =>
  twilioCallbackToEvent(smsCallback(sid, status, extra), new Date())

t.test('recordEvents records a batch in a constant number of statements', async (t) => {
  const { url } = await createTestDatabase(t)
  let statements = 0
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log: () => { statements++ } })
  t.teardown(async () => { await db.destroy() })
  const count = async (events: IncomingEvent[]): Promise<number> => {
    statements = 0
    await recordEvents(db, events)
    return statements
  }
  const one = await count([event(messageSid(), 'sent')])
  const many = await count(Array.from({ length: 200 }, (_, i) => event(messageSid(), i % 2 === 0 ? 'sent' : 'delivered')))
  const sid = messageSid()
  const mixed = await count([event(sid, 'sent'), event(sid, 'delivered'), event(sid, 'sent'), event(messageSid(), 'queued')])
  t.equal(many, one, `200 events take as many statements as 1 (${one}: BEGIN, upsert-and-insert, update, COMMIT)`)
  t.equal(mixed, one, 'so do several events of one message and a duplicate inside the batch')
})

t.test('recording a batch reads messages by index, never by scanning the table', async (t) => {
  // The status update once joined jsonb_to_recordset (which the planner guesses at 100 rows) to
  // `messages` with a hash join over a sequential scan: on a table of a few thousand rows that was
  // most of the database's CPU per batch (docs/performance.md), and it grew with the table.
  const { db } = await createTestDatabase(t)
  await sql`insert into messages (sid, provider, channel, status, status_rank)
    select 'SM' || md5(g::text), 'twilio', 'sms', 'sent', 2 from generate_series(1, 2000) g`.execute(db)
  await sql`analyze messages`.execute(db)
  const known = (await db.selectFrom('messages').select('sid').orderBy('sid').limit(3).execute()).map((r) => r.sid)
  const scans = await db.transaction().execute(async (trx) => {
    const seqScans = async (): Promise<number> => Number((await sql<{ n: string }>`
      select coalesce(seq_scan, 0)::text as n from pg_stat_xact_user_tables where relname = 'messages'`.execute(trx)).rows[0]?.n ?? 0)
    const before = await seqScans()
    // Seven batches: past PostgreSQL's switch from custom to generic plans of prepared statements.
    for (const status of ['sent', 'delivered', 'read', 'failed', 'undelivered', 'canceled', 'accepted']) {
      await recordBatch(trx, [...known.map((sid) => event(sid, status)), event(messageSid(), 'sent'), event(known[0], 'read')])
    }
    return await seqScans() - before
  })
  t.equal(scans, 0, 'no sequential scan of messages while recording batches of existing and new messages')
})

t.test('recordEvents folds several events of one message in one batch, in order, and reports each', async (t) => {
  const { db } = await createTestDatabase(t)
  const sid = messageSid()
  const seen: RecordedEvent[][] = []
  const outcomes = await recordEvents(db, [
    event(sid, 'delivered'), event(sid, 'sent'), event(sid, 'delivered'), event(sid, 'undelivered', { ErrorCode: '30003' })
  ], { onRecorded: async (_trx, recorded) => { seen.push([...recorded]) } })
  t.same(outcomes.map((o) => o.outcome), ['recorded', 'recorded', 'duplicate', 'recorded'])
  t.ok(outcomes.every((o) => o.currentStatus === 'delivered'), 'every outcome reports the status after the batch')
  t.equal(seen.length, 1, 'the hook runs once per batch')
  t.same(seen[0].map((r) => [r.event.status, r.before.status, r.after.status]), [
    ['delivered', null, 'delivered'], ['sent', 'delivered', 'delivered'], ['undelivered', 'delivered', 'delivered']
  ], 'events fold one after the other in (sid, status) order')
  const ids = seen[0].map((r) => BigInt(r.eventId))
  t.same(ids, [...ids].sort((a, b) => (a < b ? -1 : 1)), 'event ids follow the fold order')
  const row = await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirstOrThrow()
  t.equal(row.status, 'delivered')
  t.ok(row.sent_at)
  t.ok(row.failed_at, 'the late failure still fills failed_at')
  t.equal(row.error_code, null, 'a failure below delivered does not set the error')
})

t.test('hooks get the columns recording returns: status state, addresses, opt-in, external_id, metadata', async (t) => {
  const { db } = await createTestDatabase(t)
  const sid = messageSid()
  await db.insertInto('messages').values({ sid, provider: 'twilio', channel: 'whatsapp', account_sid: ACCOUNT_SID, fallback: true, external_id: 'order-7', metadata: JSON.stringify({ shop: 'a' }) }).execute()
  let seen: RecordedEvent | undefined
  await recordEvents(db, [event(sid, 'sent', { To: 'whatsapp:+15551230000', From: 'whatsapp:+15550001111' })], { onRecorded: async (_trx, recorded) => { seen = recorded[0] } })
  t.same(Object.keys(seen?.message ?? {}).sort(), [...RECORDING_COLUMNS].sort(), 'exactly RECORDING_COLUMNS')
  t.match(seen?.message, { sid, channel: 'whatsapp', fallback: true, external_id: 'order-7', metadata: { shop: 'a' }, to_address: '+15551230000' })
})

t.test('a batch is one transaction: a failing hook leaves nothing behind', async (t) => {
  const { db } = await createTestDatabase(t)
  const sids = [messageSid(), messageSid()]
  await t.rejects(recordEvents(db, sids.map((sid) => event(sid, 'sent')), { onRecorded: async () => { throw new Error('hook failed') } }))
  t.equal((await db.selectFrom('messages').select('sid').where('sid', 'in', sids).execute()).length, 0)
  t.equal((await db.selectFrom('message_events').select('id').where('message_sid', 'in', sids).execute()).length, 0)
})

t.test('recordingFailure: one rule for every route', async (t) => {
  const { db } = await createTestDatabase(t)
  const recorder = createRecorder({ db, maxBatch: 50, concurrency: 1 })
  const good = messageSid()
  const poison = { ...event(messageSid(), 'sent'), raw: { Body: 'lone \ud800 surrogate' } }
  // Occupy the slot so both queue into one batch.
  const blocker = recorder.recordGrouped(event(messageSid(), 'sent'))
  const [ok, bad] = await Promise.allSettled([recorder.recordGrouped(event(good, 'sent')), recorder.recordGrouped(poison)])
  await blocker
  t.equal(ok.status, 'fulfilled', 'the good event of the batch is recorded on its own')
  t.equal(bad.status, 'rejected')
  const answer = recordingFailure((bad as PromiseRejectedResult).reason)
  t.ok(answer instanceof AppError && answer.statusCode === 400 && answer.code === 'invalid_payload', 'a value PostgreSQL refuses is a 400, not a 503 the provider retries forever')
  const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' })
  t.match(recordingFailure(deadlock), { code: 'database_unavailable', retryAfterS: 5 }, 'a lost race is a 503 with Retry-After')
  const bug = new TypeError('x is undefined')
  t.equal(recordingFailure(bug), bug, 'anything else is left to the error handler (500, logged)')
})

t.test('POST /webhooks/twilio/status: a callback signed for another account than the message\'s', async (t) => {
  const { app, db } = await buildTestApp(t)
  const sid = messageSid()
  t.equal((await postCallback(app, smsCallback(sid, 'sent', { To: 'whatsapp:+15558675310', From: 'whatsapp:+14155238886' }))).statusCode, 200)
  const forged = smsCallback(sid, 'failed', { AccountSid: SUB_ACCOUNT_SID, ErrorCode: '63016', To: 'whatsapp:+15558675310', From: 'whatsapp:+14155238886', MessagingServiceSid: 'MG' + '1'.repeat(32) })
  const res = await postCallback(app, forged, { token: SUB_ACCOUNT_TOKEN })
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'account_mismatch')
  const row = await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirstOrThrow()
  t.equal(row.status, 'sent', 'the message is unchanged')
  t.equal(row.account_sid, ACCOUNT_SID)
  t.equal(row.messaging_service_sid, null, 'not even a missing field is filled from the other account')
  t.same((await db.selectFrom('message_events').select('message_status').where('message_sid', '=', sid).execute()).map((e) => e.message_status), ['sent'])
  t.equal((await db.selectFrom('fallbacks').select('id').where('original_sid', '=', sid).execute()).length, 0, 'no fallback is decided')
  t.equal((await postCallback(app, smsCallback(sid, 'delivered'))).statusCode, 200, 'the message\'s own account still records')
  const fresh = messageSid()
  t.equal((await postCallback(app, smsCallback(fresh, 'sent', { AccountSid: SUB_ACCOUNT_SID }), { token: SUB_ACCOUNT_TOKEN })).statusCode, 200)
  const created = await db.selectFrom('messages').select('account_sid').where('sid', '=', fresh).executeTakeFirstOrThrow()
  t.equal(created.account_sid, SUB_ACCOUNT_SID, 'a message created by a callback takes that callback\'s account')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tidings_webhooks_total\{provider="twilio",outcome="account_mismatch"\} 1/)
  await sql`select 1`.execute(db)
})

t.test('the recording statements are prepared once per connection, and survive a migration adding a column', async (t) => {
  const { db, url } = await createTestDatabase(t)
  // One connection, so what it has prepared is what pg_prepared_statements shows.
  const one = await openDatabase({ databaseUrl: url, poolMax: 1 })
  t.teardown(async () => { await one.close() })
  const record = async (): Promise<void> => { await recordEvents(one.db, [event(messageSid(), 'sent'), event(messageSid(), 'queued')]) }
  await record()
  const prepared = (await sql<{ name: string }>`select name from pg_prepared_statements order by name`.execute(one.db)).rows.map((r) => r.name)
  t.same(prepared, ['tidings_record_batch'], 'the upsert-and-insert (the update needs a custom plan: see applyStatusChanges)')
  for (let i = 0; i < 7; i++) await record() // past PostgreSQL's switch to a generic plan (after 5 runs)
  // Another replica's migration adds a column while this connection holds the prepared statements:
  // the upsert returns listed columns, not `*`, so its result type does not change.
  await sql`alter table messages add column added_by_a_later_migration text`.execute(db)
  await record()
  t.equal(Number((await sql<{ n: string }>`select count(*)::text as n from messages`.execute(db)).rows[0].n), 18)
})
