import t from 'tap'
import { freePort } from './helpers/process.ts'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { apiGet, messageSid, postCallback, smsCallback, testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'

t.test('with the database unreachable', async (t) => {
  const port = await freePort()
  const handle = await openDatabase({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/none` })
  const app = await buildApp(loadConfig(testEnv()), { db: handle.db })
  t.teardown(async () => { await app.close(); await handle.close() })

  t.test('POST /webhooks/twilio/status answers 503 with Retry-After, never 2xx or 500', async (t) => {
    const res = await postCallback(app, smsCallback(messageSid(), 'delivered'))
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'database_unavailable')
    t.equal(res.headers['retry-after'], '5')
    t.notMatch(res.body, /ECONNREFUSED|127\.0\.0\.1/, 'no internals leak')
  })

  t.test('GET /health answers 503 with database unavailable', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/health' })
    t.equal(res.statusCode, 503)
    t.match(res.json(), { status: 'unavailable', database: 'unavailable' })
  })

  t.test('GET /v1/messages/:sid answers 503, not 500', async (t) => {
    const res = await apiGet(app, `/v1/messages/${messageSid()}`)
    t.equal(res.statusCode, 503)
    t.equal(res.json().code, 'database_unavailable')
  })
})

t.test('when the database goes away after start, nothing is acknowledged; when it is back, the retry is recorded', async (t) => {
  const { url, db } = await createTestDatabase(t)
  const app = await buildApp(loadConfig(testEnv()), { db })
  t.teardown(async () => { await app.close() })
  const sid = messageSid()
  // Lock the messages table from another session so the webhook's transaction cannot finish in time.
  const pg = (await import('pg')).default
  const blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  await blocker.query('BEGIN')
  await blocker.query('LOCK TABLE messages IN ACCESS EXCLUSIVE MODE')
  await blocker.query("SET LOCAL statement_timeout = '60s'")
  const slowApp = await (async () => {
    const handle = await openDatabase({ databaseUrl: url, statementTimeoutMs: 300 })
    const a = await buildApp(loadConfig(testEnv()), { db: handle.db })
    t.teardown(async () => { await a.close(); await handle.close() })
    return a
  })()
  const res = await postCallback(slowApp, smsCallback(sid, 'delivered'))
  t.equal(res.statusCode, 503, 'a statement timeout is a 503')
  await blocker.query('ROLLBACK')
  await blocker.end()
  t.equal((await db.selectFrom('message_events').selectAll().where('message_sid', '=', sid).execute()).length, 0, 'nothing half-recorded')
  const retry = await postCallback(app, smsCallback(sid, 'delivered'))
  t.equal(retry.statusCode, 200)
  t.equal(retry.json().outcome, 'recorded', "Twilio's retry is recorded as new")
})
