/**
 * Load shedding sheds the right things (issue 10): reads, stats, streams and the console first;
 * provider callbacks only when accepting them would risk the process (memory, or a recorder
 * backlog far beyond what it can drain), because a refused Twilio callback is usually lost.
 * Pressure is produced deterministically (the test blocks its own event loop until the app says
 * so), never assumed from a fixed sleep.
 */
import { spawn } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { Writable } from 'node:stream'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback, testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'
import { blockFor, PRESSURE_ENV as PRESSURE, pressUntilShed, untilNotShed } from './helpers/pressure.ts'

t.test('a shed GET does not run its handler: no "Reply was already sent", metrics record the 503', async (t) => {
  const lines: string[] = []
  const { db } = await createTestDatabase(t)
  const app = await buildApp(loadConfig(testEnv({ ...PRESSURE, LOG_LEVEL: 'info' })), {
    db, logStream: new Writable({ write (chunk, _enc, cb) { lines.push(chunk.toString()); cb() } })
  })
  t.teardown(async () => { await app.close() })
  await app.ready()
  let ok = 0
  const res = await pressUntilShed(async () => {
    const r = await app.inject({ method: 'GET', url: '/health' })
    if (r.statusCode === 200) ok++
    return r
  })
  t.equal(res.json().code, 'overloaded')
  t.equal(res.headers['retry-after'], '5')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.notOk(lines.some((l) => l.includes('Reply was already sent')), 'the handler did not run after the 503')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /tidings_http_request_duration_seconds_count\{method="GET",route="\/health",status_code="503"\} [1-9]/)
  const recorded200 = Number(/tidings_http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\} (\d+)/.exec(metrics)?.[1] ?? 0)
  t.equal(recorded200, ok, 'a 200 is recorded only for the requests that got one')
})

t.test('under a sustained event-loop delay: reads get 503 overloaded, callbacks are still recorded (200)', async (t) => {
  const { app } = await buildTestApp(t, PRESSURE)
  await app.ready()
  const shed = await pressUntilShed(async () => await apiGet(app, '/v1/messages'))
  t.equal(shed.json().code, 'overloaded')
  t.equal(shed.headers['retry-after'], '5')
  // Still under pressure: keep the loop blocked between callbacks.
  for (let i = 0; i < 5; i++) {
    blockFor(200)
    t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200, 'callback accepted under event-loop pressure')
  }
  t.equal((await untilNotShed(async () => await apiGet(app, '/v1/messages'))).statusCode, 200, 'reads recover once the loop is free')
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /tidings_load_shed_total\{reason="eventLoopDelay",class="read"\} [1-9]/)
})

t.test('callbacks are refused (503) only when the recorder backlog is far beyond what it drains', async (t) => {
  const { app } = await buildTestApp(t, { SHED_CALLBACK_BACKLOG: '1', WEBHOOK_BATCH_CONCURRENCY: '1', WEBHOOK_BATCH_MAX: '1' })
  await app.ready()
  // A burst fills the recorder's queue (one transaction at a time); a callback arriving meanwhile
  // finds the backlog over SHED_CALLBACK_BACKLOG.
  const state = { done: false }
  const burst = Promise.all(Array.from({ length: 200 }, async () => await postCallback(app, smsCallback(messageSid(), 'sent'))))
    .finally(() => { state.done = true })
  let refused: LightMyRequestResponse | undefined
  while (!state.done && refused === undefined) {
    await new Promise((resolve) => setTimeout(resolve, 2))
    const res = await postCallback(app, smsCallback(messageSid(), 'sent'))
    if (res.statusCode === 503) refused = res
    else t.equal(res.statusCode, 200)
  }
  const statuses = (await burst).map((r) => r.statusCode)
  t.ok(statuses.every((s) => s === 200), 'the burst itself was accepted')
  t.equal(refused?.json().code, 'overloaded', 'a callback arriving over the backlog limit is refused')
  t.match(refused?.json().message, /recorder/)
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200, 'accepted again once drained')
})

t.test('with every core pinned by busy loops, signed callbacks are still answered 200', async (t) => {
  const { app } = await buildTestApp(t, { MAX_EVENT_LOOP_DELAY_MS: '200', PRESSURE_SAMPLE_INTERVAL_MS: '1000' })
  await app.ready()
  const children = Array.from({ length: Math.max(2, availableParallelism()) }, () =>
    spawn(process.execPath, ['-e', 'const end = Date.now() + 8000; while (Date.now() < end) {}'], { stdio: 'ignore' }))
  t.teardown(() => { for (const c of children) c.kill() })
  const statuses: number[] = []
  const end = Date.now() + 6000
  while (Date.now() < end) {
    statuses.push((await postCallback(app, smsCallback(messageSid(), 'delivered'))).statusCode)
  }
  t.ok(statuses.length > 0)
  t.same([...new Set(statuses)], [200], `${statuses.length} callbacks, all 200`)
})
