/**
 * Exactly one SMS across processes: three `node src/server.ts` replicas on one PostgreSQL database
 * receive the same failure callback, and a replica killed while Twilio holds its send is replaced
 * by another that adopts the SMS instead of sending it again. The Tidings processes talk to the
 * FAKE Twilio API on loopback.
 */
import t from 'tap'
import { startFakeTwilio, type FakeTwilio } from './fakes/fake-twilio.ts'
import { postSigned } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { fallbackEnv, randomNumber, SMS_FROM, storeWhatsAppMessage, waitFor, waitForFallback, whatsappCallback, sleep } from './helpers/fallback.ts'
import { startServer, type ServerProcess } from './helpers/process.ts'

const fake: FakeTwilio = await startFakeTwilio()
t.teardown(async () => { await fake.close() })
const { db, url } = await createTestDatabase(t)

function serverEnv (): Record<string, string | undefined> {
  return {
    ...fallbackEnv(fake.url, { FALLBACK_RECOVERY_INTERVAL_SECONDS: '1' }),
    LOG_LEVEL: 'info',
    DATABASE_URL: url,
    MIGRATE_ON_START: 'false'
  }
}

async function start (): Promise<ServerProcess> {
  const server = await startServer(serverEnv())
  t.teardown(async () => { if (server.child.exitCode === null && server.child.signalCode === null) await server.stop() })
  return server
}

const post = async (server: ServerProcess, params: Record<string, string>): Promise<number> => await postSigned(server.address, params)

t.test('three Tidings processes on one database: the same failure callback 21 times concurrently sends exactly one SMS', async (t) => {
  const servers = await Promise.all([start(), start(), start()])
  t.ok(servers[0].logs.some((l) => l.level === 40 && typeof l.msg === 'string' && l.msg.startsWith('TWILIO_API_BASE_URL is set')), 'start-up warns that TWILIO_API_BASE_URL is set')
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: 'Replicated hello' })
  const params = whatsappCallback(sid, 'failed', { to, errorCode: '63049' })
  const statuses = await Promise.all(Array.from({ length: 21 }, async (_, i) => await post(servers[i % 3], params)))
  t.same([...new Set(statuses)], [200], 'every copy acknowledged')
  const fallback = await waitForFallback(db, sid, ['sent', 'failed', 'skipped'])
  t.equal(fallback.state, 'sent')
  await sleep(2000)
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, 'exactly one SMS reached Twilio')
  t.equal(fake.requests.filter((r) => r.method === 'POST' && r.form.To === to).length, 1, 'one send request')
  t.equal(fallback.fallback_sid, sms[0].sid)
  const codes = await Promise.all(servers.map(async (s) => await s.stop()))
  t.same(codes, [0, 0, 0], 'each process shut down cleanly (SIGTERM)')
})

t.test('a Tidings process killed after Twilio accepted its send: another process adopts that SMS; still exactly one, SID recorded', async (t) => {
  const first = await start()
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(db, { to, body: 'Survives a crash' })
  // Twilio accepts the message but the answer never reaches the worker before it dies.
  fake.answerNextSends({ kind: 'slow', delayMs: 60_000 })
  t.equal(await post(first, whatsappCallback(sid, 'failed', { to, errorCode: '63049' })), 200)
  await waitFor(async () => fake.sent().some((m) => m.to === to) ? true : undefined, 'the accepted send')
  first.child.kill('SIGKILL')
  await new Promise((resolve) => first.child.once('exit', resolve))
  t.equal((await db.selectFrom('fallbacks').select('state').where('original_sid', '=', sid).executeTakeFirstOrThrow()).state, 'sending', 'left mid-send by the crash')

  await start()
  const fallback = await waitForFallback(db, sid, ['sent', 'failed'], 60_000)
  t.equal(fallback.state, 'sent')
  const sms = fake.sent().filter((m) => m.to === to)
  t.equal(sms.length, 1, 'exactly one SMS')
  t.equal(fake.requests.filter((r) => r.method === 'POST' && r.form.To === to).length, 1, 'not sent again')
  t.equal(fallback.fallback_sid, sms[0].sid, 'its SID is recorded')
  t.equal(sms[0].from, SMS_FROM)
  t.ok(fake.requests.some((r) => r.method === 'GET' && r.query.To === to), 'looked it up before re-sending')
})
