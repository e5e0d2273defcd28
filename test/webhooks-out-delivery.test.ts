import { sql } from 'kysely'
import pg from 'pg'
import t from 'tap'
import { API_KEY, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { twilioCallbackToEvent } from '../src/domain/twilio-callback.ts'
import { emailEvent, emailId, postResend } from './helpers/resend.ts'
import { eventually, subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { blockFor } from './helpers/pressure.ts'
import { startReceiver, type WebhookReceiver } from './fakes/webhook-receiver.ts'

const auth = { authorization: `Bearer ${API_KEY}` }

async function receiver (t: { teardown: (fn: () => unknown) => void }, respond?: Parameters<typeof startReceiver>[0]): Promise<WebhookReceiver> {
  const r = await startReceiver(respond)
  t.teardown(r.close)
  return r
}

t.test('every status change of a realistic stream is delivered at least once, signed, duplicates only under the same webhook-id', async (t) => {
  const { app, db } = await buildTestApp(t, webhooksEnv())
  const all = await receiver(t)
  const finals = await receiver(t)
  await subscribe(app, all, { event_types: ['message.status'] })
  await subscribe(app, finals, { event_types: ['message.final'] })

  // 30 messages: queued → sent → delivered or undelivered (30003), some out of order, some repeated.
  const sids = Array.from({ length: 30 }, () => messageSid())
  const plan: Array<[string, string, Record<string, string>]> = []
  sids.forEach((sid, i) => {
    const last = i % 5 === 0 ? ['undelivered', { ErrorCode: '30003' }] as const : ['delivered', {}] as const
    const steps: Array<[string, Record<string, string>]> = [['queued', {}], ['sent', {}], [last[0], last[1]]]
    if (i % 3 === 0) steps.reverse() // late callbacks
    if (i % 4 === 0) steps.push(steps[0]) // a Twilio retry
    for (const [status, extra] of steps) plan.push([sid, status, extra])
  })
  await Promise.all(plan.map(async ([sid, status, extra]) => {
    const res = await postCallback(app, smsCallback(sid, status, extra))
    t.equal(res.statusCode, 200)
  }))
  const { rows: events } = await sql<{ id: string, message_sid: string, message_status: string }>`
    select id::text as id, message_sid, message_status from message_events`.execute(db)
  t.equal(events.length, 90, 'three distinct statuses per message recorded')

  await all.waitUntil((r) => new Set(r.map((x) => x.payload.data.event_id)).size === events.length)
  await finals.waitUntil((r) => new Set(r.map((x) => x.payload.data.message_sid)).size === sids.length)
  t.same(all.unverified(), [], 'every request verifies with standardwebhooks')
  t.same(finals.unverified(), [])
  const byEvent = new Map<string, Set<string>>()
  for (const r of all.received) {
    const set = byEvent.get(String(r.payload.data.event_id)) ?? new Set()
    set.add(r.id)
    byEvent.set(String(r.payload.data.event_id), set)
  }
  t.ok([...byEvent.values()].every((ids) => ids.size === 1), 'an event is only ever sent under one webhook-id')
  for (const e of events) t.ok(byEvent.has(e.id), `event ${e.id} (${e.message_status}) delivered`)
  const sample = all.received.find((r) => r.payload.data.status === 'undelivered')
  t.match(sample?.payload, {
    type: 'message.status',
    data: { provider: 'twilio', channel: 'sms', status: 'undelivered', error_code: '30003', current_status: String, sequence: Number, message_sid: String, external_id: null }
  })
  // message.final: the first final status only, once per message.
  t.equal(new Set(finals.received.map((r) => r.id)).size, sids.length, 'one message.final per message')
  t.ok(finals.received.every((r) => r.payload.type === 'message.final' && ['delivered', 'undelivered'].includes(String(r.payload.data.status))))
})

t.test('filters: channels, statuses, external_id_prefix; email engagement and fallback changes', async (t) => {
  const { app, db } = await buildTestApp(t, webhooksEnv())
  const delivered = await receiver(t)
  const email = await receiver(t)
  const orders = await receiver(t)
  const fallbacks = await receiver(t)
  await subscribe(app, delivered, { event_types: ['message.status'], channels: ['sms'], statuses: ['delivered'] })
  await subscribe(app, email, { event_types: ['message.status', 'email.engagement'], channels: ['email'] })
  await subscribe(app, orders, { event_types: ['message.status'], external_id_prefix: 'order-' })
  await subscribe(app, fallbacks, { event_types: ['message.fallback'] })

  const order = messageSid()
  const other = messageSid()
  await sql`insert into messages (sid, provider, channel, external_id) values (${order}, 'twilio', 'sms', 'order-42'), (${other}, 'twilio', 'sms', 'invoice-7')`.execute(db)
  for (const sid of [order, other]) {
    for (const status of ['sent', 'delivered']) t.equal((await postCallback(app, smsCallback(sid, status))).statusCode, 200)
  }
  const id = emailId()
  t.equal((await postResend(app, emailEvent('email.sent', id))).statusCode, 200)
  t.equal((await postResend(app, emailEvent('email.opened', id, { open: { ipAddress: '192.0.2.1', timestamp: new Date().toISOString(), userAgent: 'x' } }))).statusCode, 200)
  // A fallback's state changes, as the fallback worker writes them (the trigger logs each).
  const { rows: [fb] } = await sql<{ id: string }>`insert into fallbacks (original_sid, state, trigger_error_code) values (${other}, 'pending', '63016') returning id::text as id`.execute(db)
  await sql`update fallbacks set state = 'sent', fallback_sid = ${messageSid()} where id = ${fb.id}`.execute(db)

  await delivered.waitUntil((r) => r.length >= 2)
  await email.waitUntil((r) => r.some((x) => x.payload.type === 'email.engagement') && r.some((x) => x.payload.type === 'message.status'))
  await orders.waitUntil((r) => r.length >= 2)
  await fallbacks.waitUntil((r) => r.length >= 2)
  await new Promise((resolve) => setTimeout(resolve, 300)) // anything extra would have arrived by now
  t.same(delivered.received.map((r) => [r.payload.data.status, r.payload.data.channel]).sort(), [['delivered', 'sms'], ['delivered', 'sms']])
  t.same(orders.received.map((r) => r.payload.data.external_id), ['order-42', 'order-42'])
  t.ok(email.received.every((r) => r.payload.data.channel === 'email'))
  t.match(email.received.find((r) => r.payload.type === 'email.engagement')?.payload.data, { message_sid: id, engagement: { kind: 'opened' } })
  t.same(fallbacks.received.map((r) => (r.payload.data.fallback as { state: string }).state).sort(), ['pending', 'sent'])
  for (const r of [delivered, email, orders, fallbacks]) t.same(r.unverified(), [])
})

t.test('retries: 500 then 200, 429 with Retry-After, 410 disables, timeouts end failed and kept', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv({ WEBHOOK_TIMEOUT: '400ms', WEBHOOK_RETRY_SCHEDULE: '0,50ms,50ms' }))
  const flaky = await receiver(t, (_r, n) => ({ status: n === 1 ? 500 : 200 }))
  const busy = await receiver(t, (_r, n) => n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 204 })
  const gone = await receiver(t, () => ({ status: 410 }))
  const slow = await receiver(t, () => 'hang')
  const subs = {
    flaky: await subscribe(app, flaky),
    busy: await subscribe(app, busy),
    gone: await subscribe(app, gone),
    slow: await subscribe(app, slow)
  }
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)

  await flaky.waitUntil((r) => r.length === 2)
  t.equal(flaky.received[0].id, flaky.received[1].id, 'the retry carries the same webhook-id')
  await busy.waitUntil((r) => r.length === 2)
  t.ok(busy.received[1].at - busy.received[0].at >= 950, `Retry-After: 1 was waited for, not the 50 ms schedule (${busy.received[1].at - busy.received[0].at} ms)`)
  await gone.waitUntil((r) => r.length === 1)
  await slow.waitUntil((r) => r.length === 3)
  const deliveries = async (id: string): Promise<Array<Record<string, unknown>>> => (await app.inject({ url: `/v1/subscriptions/${id}/deliveries`, headers: auth })).json().data
  await eventually(async () => (await deliveries(subs.slow.id))[0]?.state === 'failed', 20_000, 'timed-out delivery failed')
  await eventually(async () => (await deliveries(subs.flaky.id))[0]?.state === 'delivered' && (await deliveries(subs.busy.id))[0]?.state === 'delivered')
  t.match((await deliveries(subs.flaky.id))[0], { state: 'delivered', attempts: 2, last_status_code: 200, next_attempt_at: null })
  t.match((await deliveries(subs.slow.id))[0], { state: 'failed', attempts: 3, last_status_code: null, last_error: /timed out/ })
  await eventually(async () => (await deliveries(subs.gone.id))[0]?.state === 'failed')
  t.match((await deliveries(subs.gone.id))[0], { state: 'failed', attempts: 1, last_status_code: 410 })
  const goneSub = (await app.inject({ url: `/v1/subscriptions/${subs.gone.id}`, headers: auth })).json()
  t.match(goneSub, { enabled: false, disabled_reason: 'gone', disabled_at: String })
  t.equal(gone.received.length, 1, 'a 410 is not retried')

  const metrics = (await app.inject({ url: '/metrics' })).body
  t.match(metrics, /tidings_webhook_deliveries_total\{outcome="delivered"\} [1-9]/)
  t.match(metrics, /tidings_webhook_attempts_total\{result="timeout"\} 3/)
  t.match(metrics, /tidings_webhook_subscriptions\{state="disabled",reason="gone"\} 1/)
  t.match(metrics, /tidings_webhook_oldest_pending_delivery_age_seconds \d/)
})

t.test('a receiver that never answers delays neither other subscriptions nor ingest', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv({ WEBHOOK_TIMEOUT: '60s', WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: '2' }))
  const dead = await receiver(t, () => 'hang')
  const fast = await receiver(t)
  await subscribe(app, dead)
  await subscribe(app, fast)
  const sids = Array.from({ length: 20 }, () => messageSid())
  for (const sid of sids) t.equal((await postCallback(app, smsCallback(sid, 'sent'))).statusCode, 200, 'ingest answers')
  await fast.waitUntil((r) => r.length === sids.length)
  t.equal(dead.received.length, 2, 'the dead consumer holds only its own two slots')
})

// A backlog alone is what group commit looks like at any load: only with a busy event loop is the
// process saturated, and only then does the sender yield. When the event loop calms down it ramps
// back up over about 2 s rather than sending everything it owes at once, which would bring the
// saturation straight back (and, in a saturated stretch with short dips, let a burst out in each).
const yieldCases = {
  busy: 'while callbacks pile up on a busy process the sender yields (a few requests in flight); once they clear, everything owed goes out at full speed',
  ramp: 'when the event loop calms down the sender ramps back up instead of sending everything it owes at once',
  idle: 'callbacks waiting on a lock while the event loop is idle: the sender does not yield'
}
for (const [mode, name] of Object.entries(yieldCases)) {
  const busy = mode !== 'idle'
  t.test(name, async (t) => {
  // WEBHOOK_MAX_IN_FLIGHT 128: yielding keeps at most 128/64 = 2 requests in flight.
    const { app, url } = await buildTestApp(t, webhooksEnv({ WEBHOOK_MAX_IN_FLIGHT: '128', WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: '32' }))
    let open = 0
    let most = 0
    const slow = await receiver(t, () => {
      most = Math.max(most, ++open)
      setTimeout(() => { open-- }, 150)
      return { status: 204, delayMs: 150 }
    })
    await subscribe(app, slow)
    await app.ready()

    // Saturation: a transaction elsewhere holds a message row, so the recording batches of its 20
    // callbacks wait on the lock, both slots are taken and the rest queue; and the event loop is
    // kept busy (9 ms of every 10). The first two callbacks go one at a time, so each takes a slot
    // (the second opens once the first has waited SPARE_SLOT_AFTER_MS: src/ingest/batcher.ts).
    const held = messageSid()
    t.equal((await postCallback(app, smsCallback(held, 'queued'))).statusCode, 200)
    await slow.waitUntil((r) => r.length === 1)
    const locker = new pg.Client({ connectionString: url })
    await locker.connect()
    t.teardown(async () => { await locker.end().catch(() => {}) })
    await locker.query('begin')
    await locker.query('select 1 from messages where sid = $1 for update', [held])
    const statuses = Array.from({ length: 20 }, (_, i) => ['sending', 'sent', 'delivered', 'read'][i % 4])
    const waiting: Array<ReturnType<typeof postCallback>> = []
    for (const status of statuses.slice(0, 2)) {
      waiting.push(postCallback(app, smsCallback(held, status)))
      await eventually(() => app.recorder.batcher.inFlight === waiting.length, 5000, 'a recording slot taken')
    }
    waiting.push(...statuses.slice(2).map(async (status) => await postCallback(app, smsCallback(held, status))))
    await eventually(() => app.recorder.batcher.queued > 8, 5000, 'a recording backlog')
    const burner = setInterval(() => { if (busy) blockFor(9) }, 10)
    t.teardown(() => { clearInterval(burner) })
    await new Promise((resolve) => setTimeout(resolve, 700))

    // Meanwhile status changes recorded past the queue owe 30 deliveries (60 for the ramp: more
    // than the subscription's 32 slots, so full speed shows as 32 in flight).
    const owed = mode === 'ramp' ? 60 : 30
    most = 0
    await app.recorder.record(Array.from({ length: owed }, () => twilioCallbackToEvent(smsCallback(messageSid(), 'sent'), new Date())))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    if (busy) {
      t.ok(most <= 2, `at most 2 requests in flight while yielding (saw ${most})`)
      t.ok(slow.received.length < owed + 1, `deliveries wait (${slow.received.length - 1} of ${owed} sent)`)
    }
    if (mode === 'ramp') {
      // The callbacks still wait on the lock, but the event loop is idle: no longer saturated.
      clearInterval(burner)
      most = 0
      await new Promise((resolve) => setTimeout(resolve, 250))
      t.ok(most <= 24, `at most 24 requests in flight in the first 250 ms (saw ${most}; full speed is 32)`)
    } else if (!busy) {
      t.ok(most > 2, `no yielding: ${most} requests in flight`)
      t.equal(slow.received.length, 31, 'all 30 delivered while the callbacks still wait')
    }

    clearInterval(burner)
    await locker.query('commit')
    for (const res of await Promise.all(waiting)) t.equal(res.statusCode, 200)
    await slow.waitUntil((r) => r.length === owed + 5, 20_000)
    t.ok(most > 2, `full speed once the backlog cleared (${most} in flight)`)
    t.same(slow.unverified(), [])
  })
}

t.test('a subscription failing for WEBHOOK_DISABLE_AFTER in a row is disabled and says so', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv({ WEBHOOK_DISABLE_AFTER: '1s', WEBHOOK_RETRY_SCHEDULE: '0,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms' }))
  const broken = await receiver(t, () => ({ status: 500 }))
  const sub = await subscribe(app, broken)
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
  await eventually(async () => (await app.inject({ url: `/v1/subscriptions/${sub.id}`, headers: auth })).json().enabled === false, 20_000, 'disabled')
  const body = (await app.inject({ url: `/v1/subscriptions/${sub.id}`, headers: auth })).json()
  t.match(body, { enabled: false, disabled_reason: 'failing', failing_since: String })
  const again = await app.inject({ method: 'PATCH', url: `/v1/subscriptions/${sub.id}`, headers: auth, payload: { enabled: true } })
  t.match(again.json(), { enabled: true, disabled_reason: null, failing_since: null })
})

t.test('secret rotation: both signatures during the overlap, only the new one after', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv())
  const r = await receiver(t)
  const sub = await subscribe(app, r)
  const rotate = async (overlap: number): Promise<string> => {
    const res = await app.inject({ method: 'POST', url: `/v1/subscriptions/${sub.id}/rotate-secret`, headers: auth, payload: { overlap_seconds: overlap } })
    t.equal(res.statusCode, 200)
    return res.json().secret
  }
  r.secrets.push(await rotate(3600))
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
  await r.waitUntil((x) => x.length === 1)
  t.same(r.received[0].verifiedBy, [0, 1], 'old and new secrets both verify during the overlap')
  t.equal(r.received[0].signature.split(' ').length, 2, 'two signatures, space-separated')
  r.secrets.push(await rotate(0))
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
  await r.waitUntil((x) => x.length === 2)
  t.same(r.received[1].verifiedBy, [2], 'after a rotation without overlap only the newest verifies')
})

t.test('replay re-sends finished deliveries under the same webhook-id', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv())
  const r = await receiver(t)
  const sub = await subscribe(app, r)
  const since = new Date(Date.now() - 1000).toISOString()
  for (const status of ['sent', 'delivered']) t.equal((await postCallback(app, smsCallback(messageSid(), status))).statusCode, 200)
  await r.waitUntil((x) => x.length === 2)
  const list = async (q = ''): Promise<{ data: Array<{ id: string, webhook_id: string, state: string }>, next_cursor: string | null }> =>
    (await app.inject({ url: `/v1/subscriptions/${sub.id}/deliveries${q}`, headers: auth })).json()
  await eventually(async () => (await list('?state=delivered')).data.length === 2)
  const page1 = await list('?limit=1')
  t.equal(page1.data.length, 1)
  t.not(page1.next_cursor, null)
  const page2 = await list(`?limit=1&cursor=${page1.next_cursor}`)
  t.not(page2.data[0].id, page1.data[0].id, 'keyset pagination')
  t.same((await list('?state=pending')).data, [])

  const byIds = await app.inject({ method: 'POST', url: `/v1/subscriptions/${sub.id}/replay`, headers: auth, payload: { delivery_ids: [page1.data[0].id] } })
  t.equal(byIds.statusCode, 202)
  t.same(byIds.json(), { requeued: 1 })
  await r.waitUntil((x) => x.length === 3)
  t.equal(r.received[2].id, page1.data[0].webhook_id, 'same webhook-id')
  await eventually(async () => (await list('?state=delivered')).data.length === 2)
  const bySince = await app.inject({ method: 'POST', url: `/v1/subscriptions/${sub.id}/replay`, headers: auth, payload: { since } })
  t.same(bySince.json(), { requeued: 2 })
  await r.waitUntil((x) => x.length === 5)
  t.same(r.unverified(), [])
  const neither = await app.inject({ method: 'POST', url: `/v1/subscriptions/${sub.id}/replay`, headers: auth, payload: {} })
  t.equal(neither.statusCode, 400)
})
