import t from 'tap'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL, messageSid, postSigned, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { startServer, type ServerProcess } from './helpers/process.ts'
import { checkDeliveredAsRecorded, deliveredAllRecorded, subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { startReceiver } from './fakes/webhook-receiver.ts'

t.test('SIGKILL of Tidings mid-delivery: after a restart every recorded change is delivered', async (t) => {
  const { url, db } = await createTestDatabase(t)
  // A slow consumer, so requests are in flight when the process dies.
  const receiver = await startReceiver(() => ({ status: 200, delayMs: 150 }))
  t.teardown(receiver.close)
  const env = {
    DATABASE_URL: url,
    MIGRATE_ON_START: 'false',
    PUBLIC_BASE_URL,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    API_KEYS: `billing:${API_KEY}`,
    LOG_LEVEL: 'warn',
    ...webhooksEnv({ WEBHOOK_TIMEOUT: '1s', WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: '4' })
  }
  let server: ServerProcess = await startServer(env)
  t.teardown(async () => { await server.stop() })
  await subscribe(server.address, receiver)

  const sids = Array.from({ length: 40 }, () => messageSid())
  let killed = false
  const posting = (async () => {
    for (const status of ['sent', 'delivered']) {
      for (const sid of sids) {
        await postSigned(server.address, smsCallback(sid, status))
        if (!killed && receiver.received.length >= 6) {
          killed = true
          server.child.kill('SIGKILL')
        }
      }
    }
  })()
  await posting
  t.ok(killed, 'the process was killed while deliveries were in flight')
  await new Promise((resolve) => server.child.exitCode !== null || server.child.signalCode !== null ? resolve(null) : server.child.once('exit', resolve))
  server = await startServer(env)

  // Whatever was recorded before the kill (callbacks answered 200, and possibly some whose answer was lost).
  const recorded = await deliveredAllRecorded(db, receiver, 60_000)
  t.ok(recorded.length > 0)
  checkDeliveredAsRecorded(t, receiver, recorded)
  // With a subscription stored, the restarted server loads its HTTP client at start.
  t.notOk(server.logs.some((l) => String(l.msg).includes('could not look for subscriptions')), 'the restarted server looked for subscriptions at start')
})
