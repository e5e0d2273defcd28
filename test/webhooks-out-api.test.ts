import net from 'node:net'
import { sql } from 'kysely'
import t from 'tap'
import { API_KEY, OTHER_API_KEY, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { eventually, subscribe, webhooksEnv } from './helpers/webhooks-out.ts'
import { createWebhookHttpClient } from '../src/delivery/http-client.ts'
import { loadConfig } from '../src/config/config.ts'
import { testEnv } from './helpers/app.ts'

const auth = (key = API_KEY): Record<string, string> => ({ authorization: `Bearer ${key}` })

t.test('/v1/subscriptions: create, read, change, delete; the secret is shown once and stored encrypted', async (t) => {
  const { app, db } = await buildTestApp(t, webhooksEnv({ WEBHOOK_ALLOWED_TARGETS: undefined }))
  const created = await app.inject({
    method: 'POST',
    url: '/v1/subscriptions',
    headers: auth(),
    payload: { url: 'https://hooks.example.com/tidings', description: 'orders', event_types: ['message.status', 'message.final'], channels: ['sms'], statuses: ['delivered', 'failed'], external_id_prefix: 'order-' }
  })
  t.equal(created.statusCode, 201)
  const sub = created.json()
  t.match(sub, { id: String, url: 'https://hooks.example.com/tidings', enabled: true, disabled_reason: null, event_types: ['message.status', 'message.final'], channels: ['sms'], secret: /^whsec_[A-Za-z0-9+/]{43}=$/ })
  const { rows: [stored] } = await sql<{ secret_ciphertext: string }>`select secret_ciphertext from webhook_subscriptions`.execute(db)
  t.notMatch(stored.secret_ciphertext, sub.secret.slice(6, 20), 'the secret is not stored in clear')
  t.match(stored.secret_ciphertext, /^v1\.[0-9a-f]{8}\./)

  const got = await app.inject({ url: `/v1/subscriptions/${sub.id}`, headers: auth() })
  t.equal(got.statusCode, 200)
  t.notOk('secret' in got.json(), 'never returned after creation')
  t.same((await app.inject({ url: '/v1/subscriptions', headers: auth() })).json().data.map((s: { id: string }) => s.id), [sub.id])

  const patched = await app.inject({ method: 'PATCH', url: `/v1/subscriptions/${sub.id}`, headers: auth(), payload: { channels: null, enabled: false } })
  t.match(patched.json(), { channels: null, enabled: false, disabled_reason: 'manual', statuses: ['delivered', 'failed'] })
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/subscriptions/${sub.id}`, headers: auth(), payload: {} })).statusCode, 400, 'an empty patch')
  t.equal((await app.inject({ method: 'POST', url: '/v1/subscriptions', headers: auth(), payload: { url: 'https://x.example', event_types: ['message.nope'] } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/v1/subscriptions', headers: auth(), payload: { url: 'https://x.example', event_types: [] } })).statusCode, 400)

  t.equal((await app.inject({ method: 'DELETE', url: `/v1/subscriptions/${sub.id}`, headers: auth() })).statusCode, 204)
  t.equal((await app.inject({ url: `/v1/subscriptions/${sub.id}`, headers: auth() })).statusCode, 404)
  t.equal((await app.inject({ url: '/v1/subscriptions/not-a-uuid', headers: auth() })).json().code, 'subscription_not_found')
})

t.test('one API key can neither see nor change another key\'s subscriptions', async (t) => {
  const { app } = await buildTestApp(t, webhooksEnv())
  const { id } = await subscribe(app, { url: 'https://hooks.example.com/a' })
  for (const [method, url, payload] of [
    ['GET', `/v1/subscriptions/${id}`, undefined],
    ['PATCH', `/v1/subscriptions/${id}`, { enabled: false }],
    ['DELETE', `/v1/subscriptions/${id}`, undefined],
    ['POST', `/v1/subscriptions/${id}/rotate-secret`, {}],
    ['GET', `/v1/subscriptions/${id}/deliveries`, undefined],
    ['POST', `/v1/subscriptions/${id}/replay`, { since: new Date().toISOString() }]
  ] as const) {
    const res = await app.inject({ method, url, headers: auth(OTHER_API_KEY), payload })
    t.equal(res.statusCode, 404, `${method} ${url}`)
    t.equal(res.json().code, 'subscription_not_found')
  }
  t.same((await app.inject({ url: '/v1/subscriptions', headers: auth(OTHER_API_KEY) })).json().data, [])
  t.match((await app.inject({ url: `/v1/subscriptions/${id}`, headers: auth() })).json(), { enabled: true }, 'untouched')
  t.equal((await app.inject({ url: '/v1/subscriptions' })).statusCode, 401)
})

t.test('SSRF: internal targets are refused without WEBHOOK_ALLOWED_TARGETS', async (t) => {
  const { app, db } = await buildTestApp(t, webhooksEnv({ WEBHOOK_ALLOWED_TARGETS: undefined, WEBHOOK_RETRY_SCHEDULE: '0' }))
  for (const url of ['https://127.0.0.1/hooks', 'https://10.0.0.1/hooks', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/x', 'https://100.64.0.1/x', 'http://hooks.example.com/plain']) {
    const res = await app.inject({ method: 'POST', url: '/v1/subscriptions', headers: auth(), payload: { url, event_types: ['message.status'] } })
    t.equal(res.statusCode, 400, url)
    t.equal(res.json().code, 'invalid_webhook_url')
  }
  // A host name is checked where it matters, at delivery, on the address it resolves to: a
  // listener on loopback must never see a connection.
  let connections = 0
  const trap = net.createServer((s) => { connections++; s.destroy() })
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { trap.close() })
  const port = (trap.address() as net.AddressInfo).port
  const { id } = await subscribe(app, { url: `https://localhost:${port}/hooks` })
  t.equal((await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode, 200)
  await eventually(async () => (await sql<{ n: number }>`select count(*)::int as n from webhook_deliveries where state = 'failed'`.execute(db)).rows[0].n === 1)
  const [delivery] = (await app.inject({ url: `/v1/subscriptions/${id}/deliveries`, headers: auth() })).json().data
  t.match(delivery, { state: 'failed', last_status_code: null, last_error: /target refused: localhost resolves to .*loopback/ })
  t.equal(connections, 0, 'no connection reached the loopback listener')

  // The delivery-time check covers IP literals too (a URL stored before an allow-list change).
  const client = createWebhookHttpClient(loadConfig(testEnv(webhooksEnv({ WEBHOOK_ALLOWED_TARGETS: undefined }))).webhooksOut, { connectionsPerOrigin: 1 })
  t.teardown(client.close)
  for (const target of [`http://127.0.0.1:${port}/`, 'http://10.0.0.1/', 'http://169.254.169.254/latest/meta-data']) {
    t.match(await client.post(target, {}, '{}'), { kind: 'refused', statusCode: null }, target)
  }
  t.equal(connections, 0)
  const allowed = createWebhookHttpClient(loadConfig(testEnv(webhooksEnv())).webhooksOut, { connectionsPerOrigin: 1 })
  t.teardown(allowed.close)
  t.not((await allowed.post(`http://127.0.0.1:${port}/`, {}, '{}')).kind, 'refused', 'WEBHOOK_ALLOWED_TARGETS=127.0.0.1/32 lets loopback through')
  t.equal(connections, 1)
})

t.test('without WEBHOOK_SECRETS_KEY nothing can be subscribed', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ method: 'POST', url: '/v1/subscriptions', headers: auth(), payload: { url: 'https://hooks.example.com/a', event_types: ['message.status'] } })
  t.equal(res.statusCode, 501)
  t.equal(res.json().code, 'webhooks_not_configured')
  t.same((await app.inject({ url: '/v1/subscriptions', headers: auth() })).json(), { data: [] })
})
