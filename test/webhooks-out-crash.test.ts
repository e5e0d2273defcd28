import { sql } from 'kysely'
import t from 'tap'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL, messageSid, postSigned, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { startServer, type ServerProcess } from './helpers/process.ts'
import { webhooksEnv } from './helpers/webhooks-out.ts'
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
  const created = await fetch(`${server.address}/v1/subscriptions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: receiver.url, event_types: ['message.status'] })
  })
  t.equal(created.status, 201)
  receiver.secrets.push((await created.json() as { secret: string }).secret)

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
  const { rows: events } = await sql<{ id: string }>`select id::text as id from message_events`.execute(db)
  t.ok(events.length > 0)
  await receiver.waitUntil((r) => {
    const seen = new Set(r.map((x) => String(x.payload.data.event_id)))
    return events.every((e) => seen.has(e.id))
  }, 60_000)
  t.same(receiver.unverified(), [], 'every request verifies')
  const ids = new Map<string, Set<string>>()
  for (const r of receiver.received) ids.set(String(r.payload.data.event_id), (ids.get(String(r.payload.data.event_id)) ?? new Set()).add(r.id))
  t.ok([...ids.values()].every((s) => s.size === 1), 'a change re-sent after the crash keeps its webhook-id')
  t.equal(ids.size, events.length, 'nothing was sent that was not recorded')
})
