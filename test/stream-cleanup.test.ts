/**
 * Streams clean up on every path (issue 10): a subscriber is registered only while it can be
 * cancelled, and unregistered on any error or disconnect; streams per API key are limited.
 */
import { sql } from 'kysely'
import pino from 'pino'
import t from 'tap'
import { EventHub, type StreamEvent } from '../src/stream/event-hub.ts'
import { API_KEY, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { openStream } from './helpers/sse.ts'

async function until (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('EventHub.subscribe: a failing catch-up read leaves no subscriber behind', async (t) => {
  const { app, db } = await buildTestApp(t)
  for (let i = 0; i < 3; i++) t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
  const hub = new EventHub({ db, log: pino({ level: 'silent' }), pollIntervalMs: 50 })
  await hub.start()
  t.teardown(async () => { await hub.stop() })
  // The catch-up read joins messages; the horizon only reads the sequence, so only catch-up fails.
  await sql`alter table messages rename to messages_away`.execute(db)
  const delivered: StreamEvent[] = []
  await t.rejects(hub.subscribe({ filter: {}, deliver: (e) => delivered.push(...e), close: () => {} }, 0n))
  await sql`alter table messages_away rename to messages`.execute(db)
  t.equal(hub.subscriberCount, 0, 'the failed subscriber is not registered')
  for (let i = 0; i < 3; i++) await postCallback(app, smsCallback(messageSid(), 'delivered'))
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(delivered.length, 0, 'and holds no later event')
})

t.test('EventHub.subscribe: a subscriber cancelled during catch-up stops reading and is gone', async (t) => {
  const { app, db } = await buildTestApp(t)
  for (let i = 0; i < 3; i++) await postCallback(app, smsCallback(messageSid(), 'sent'))
  const hub = new EventHub({ db, log: pino({ level: 'silent' }), pollIntervalMs: 50 })
  await hub.start()
  t.teardown(async () => { await hub.stop() })
  const controller = new AbortController()
  const delivered: StreamEvent[] = []
  const subscribing = hub.subscribe({ filter: {}, deliver: (e) => delivered.push(...e), close: () => {} }, 0n, controller.signal)
  controller.abort()
  await subscribing.catch(() => {})
  t.equal(hub.subscriberCount, 0)
  t.equal(delivered.length, 0, 'nothing delivered after the client left')
})

t.test('GET /v1/stream: at most STREAMS_PER_KEY streams per API key (429 above); a closed stream frees its place', async (t) => {
  const { app } = await buildTestApp(t, { STREAMS_PER_KEY: '2' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const headers = { authorization: `Bearer ${API_KEY}` }
  const a = await openStream(`${base}/v1/stream`, headers)
  const b = await openStream(`${base}/v1/stream`, headers)
  const third = await app.inject({ method: 'GET', url: '/v1/stream', headers })
  t.equal(third.statusCode, 429)
  t.equal(third.json().code, 'rate_limited')
  t.match(third.json().message, /STREAMS_PER_KEY/)
  a.close()
  await until(async () => {
    const m = (await app.inject({ method: 'GET', url: '/metrics' })).body
    return /tidings_stream_clients 1\b/.test(m)
  }, 'the closed stream to be unregistered')
  const c = await openStream(`${base}/v1/stream`, headers)
  b.close()
  c.close()
  await until(async () => /tidings_stream_clients 0\b/.test((await app.inject({ method: 'GET', url: '/metrics' })).body), 'every stream to be unregistered')
})

t.test('GET /v1/stream: a catch-up that fails ends the stream and unregisters it', async (t) => {
  const { app, db } = await buildTestApp(t)
  for (let i = 0; i < 2; i++) await postCallback(app, smsCallback(messageSid(), 'sent'))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  await sql`alter table messages rename to messages_away`.execute(db)
  const res = await fetch(`${base}/v1/stream`, { headers: { authorization: `Bearer ${API_KEY}`, 'last-event-id': '0' } })
  await res.text() // the server ends the response
  await sql`alter table messages_away rename to messages`.execute(db)
  await until(async () => /tidings_stream_clients 0\b/.test((await app.inject({ method: 'GET', url: '/metrics' })).body), 'the stream to be unregistered')
  t.pass('the stream ended and left nothing registered')
})
