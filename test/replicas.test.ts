/**
 * Several replicas behind a load balancer over one PostgreSQL: three `node src/server.ts`
 * processes. Duplicates spread across replicas are recorded once, the stream on one replica shows
 * what the others received, and killing a replica mid-load loses no acknowledged event.
 * (One fallback per failed message across replicas: test/fallback-replicas.test.ts.)
 */
import t from 'tap'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, PUBLIC_BASE_URL, messageSid, postSigned, smsCallback } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { startServer, type ServerProcess } from './helpers/process.ts'
import { openStream } from './helpers/sse.ts'

const { db, url } = await createTestDatabase(t)

async function start (): Promise<ServerProcess> {
  const server = await startServer({
    DATABASE_URL: url,
    MIGRATE_ON_START: 'false',
    PUBLIC_BASE_URL,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    API_KEYS: `billing:${API_KEY}`,
    LOG_LEVEL: 'warn'
  })
  t.teardown(async () => { if (server.child.exitCode === null && server.child.signalCode === null) await server.stop() })
  return server
}

const post = async (server: ServerProcess, params: Record<string, string>): Promise<number> => await postSigned(server.address, params)

const servers = await Promise.all([start(), start(), start()])

t.test('duplicates spread across three replicas are recorded once', async (t) => {
  const sid = messageSid()
  const params = smsCallback(sid, 'delivered')
  const statuses = await Promise.all(Array.from({ length: 30 }, async (_, i) => await post(servers[i % 3], params)))
  t.same([...new Set(statuses)], [200])
  const events = await db.selectFrom('message_events').select('id').where('message_sid', '=', sid).execute()
  t.equal(events.length, 1)
})

t.test('the stream on replica A shows the changes that replicas B and C received', async (t) => {
  const stream = await openStream(`${servers[0].address}/v1/stream?channel=mms`, { authorization: `Bearer ${API_KEY}` })
  t.teardown(stream.close)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const b = messageSid('MM')
  const c = messageSid('MM')
  t.equal(await post(servers[1], smsCallback(b, 'sent')), 200)
  t.equal(await post(servers[2], smsCallback(c, 'delivered')), 200)
  const events = await stream.waitFor(2)
  t.same(new Set(events.map((e) => `${String(e.data.sid)} ${String(e.data.status)}`)), new Set([`${b} sent`, `${c} delivered`]))
})

t.test('killing one replica mid-load loses no acknowledged event', async (t) => {
  const total = 240
  const work = Array.from({ length: total }, () => smsCallback(messageSid(), 'sent', { To: '+15550001111' }))
  const acknowledged: string[] = []
  const refused: Array<Record<string, string>> = []
  let next = 0
  let killed = false
  const victim = servers[2]
  // 12 concurrent senders, round-robin over the replicas, like a load balancer.
  await Promise.all(Array.from({ length: 12 }, async () => {
    while (next < total) {
      const i = next++
      if (i === 80 && !killed) { killed = true; victim.child.kill('SIGKILL') }
      const status = await post(servers[i % 3], work[i])
      if (status === 200) acknowledged.push(work[i].MessageSid)
      else refused.push(work[i])
    }
  }))
  t.ok(killed && refused.length > 0, `the killed replica refused ${refused.length} requests`)
  const stored = new Set((await db.selectFrom('message_events').select('message_sid')
    .where('message_sid', 'in', work.map((w) => w.MessageSid)).execute()).map((r) => r.message_sid))
  t.equal(acknowledged.filter((sid) => !stored.has(sid)).length, 0, `every one of the ${acknowledged.length} acknowledged callbacks is stored`)
  // The provider (or the load balancer) retries what was not acknowledged, on a live replica.
  const retried = []
  for (const params of refused) retried.push(await post(servers[0], params))
  t.same([...new Set(retried)], refused.length === 0 ? [] : [200], 'retries are acknowledged by a live replica')
  const after = await db.selectFrom('message_events').select('message_sid')
    .where('message_sid', 'in', work.map((w) => w.MessageSid)).execute()
  t.equal(after.length, total, 'after retries, every callback is stored exactly once')
})
