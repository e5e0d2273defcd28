import pg from 'pg'
import t from 'tap'
import { ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, messageSid, postSigned, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { startServer } from './helpers/process.ts'

t.test('SIGTERM: a callback in flight finishes and is acknowledged, then the process exits 0', async (t) => {
  const { db, url } = await createTestDatabase(t)
  const server = await startServer({ DATABASE_URL: url, MIGRATE_ON_START: 'false', PUBLIC_BASE_URL, TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: AUTH_TOKEN })
  t.teardown(async () => { await server.stop() })
  // Hold the callback inside its transaction: another session locks the messages table.
  const blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  await blocker.query('BEGIN')
  await blocker.query('LOCK TABLE messages IN EXCLUSIVE MODE')
  const sid = messageSid()
  const inFlight = postSigned(server.address, smsCallback(sid, 'delivered'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const exited = server.stop()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(server.child.exitCode, null, 'still running while a request is in flight')
  await blocker.query('ROLLBACK')
  await blocker.end()
  t.equal(await inFlight, 200, 'the in-flight callback was acknowledged')
  t.equal(await exited, 0, 'then the process exited cleanly')
  const stored = await db.selectFrom('message_events').select('id').where('message_sid', '=', sid).execute()
  t.equal(stored.length, 1, 'and it is stored')
})
