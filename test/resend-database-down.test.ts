import t from 'tap'
import { freePort } from './helpers/process.ts'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { openDatabase } from '../src/db/connect.ts'
import { testEnv } from './helpers/app.ts'
import { emailEvent, emailId, postResend, RESEND_SECRET } from './helpers/resend.ts'

t.test('POST /webhooks/resend with the database unreachable', async (t) => {
  const port = await freePort()
  const handle = await openDatabase({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/none` })
  const app = await buildApp(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: RESEND_SECRET })), { db: handle.db })
  t.teardown(async () => { await app.close(); await handle.close() })

  for (const type of ['email.delivered', 'email.opened']) {
    const res = await postResend(app, emailEvent(type, emailId()))
    t.equal(res.statusCode, 503, `${type}: 503 so Resend retries`)
    t.equal(res.json().code, 'database_unavailable')
    t.equal(res.headers['retry-after'], '5')
    t.notMatch(res.body, /ECONNREFUSED|127\.0\.0\.1/, 'no internals leak')
  }
  const ignored = await postResend(app, emailEvent('contact.created', emailId()))
  t.equal(ignored.statusCode, 200, 'an untracked type needs no database')
  const unsigned = await postResend(app, emailEvent('email.delivered', emailId()), { headers: {} })
  t.equal(unsigned.statusCode, 401, 'the signature is still checked first')
})
