import t from 'tap'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { PRESSURE_ENV, pressUntilShed, untilNotShed } from './helpers/pressure.ts'

const METRICS_TOKEN = 'metrics_token_0123456789'

t.test('GET /metrics', async (t) => {
  const { app } = await buildTestApp(t, { METRICS_TOKEN })
  await postCallback(app, smsCallback(messageSid(), 'delivered'))

  t.test('requires METRICS_TOKEN when it is set', async (t) => {
    t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401)
    t.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong_token_000000000' } })).statusCode, 401)
    const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], /text\/plain/)
  })

  t.test('exposes webhook outcomes, events, latency by route, pool use and event-loop delay', async (t) => {
    const body = (await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).body
    t.match(body, /tidings_webhooks_total\{provider="twilio",outcome="accepted"\} 1/)
    t.match(body, /tidings_events_recorded_total\{channel="sms",status="delivered"\} 1/)
    t.match(body, /tidings_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/webhooks\/twilio\/status",status_code="200"\}/)
    t.match(body, /tidings_db_pool_connections\{state="total"\} \d+/)
    t.match(body, /tidings_nodejs_eventloop_lag_seconds/)
  })
})

t.test('under pressure: a read gets 503 overloaded with Retry-After, not a timeout, and recovers', async (t) => {
  const { app } = await buildTestApp(t, PRESSURE_ENV)
  await app.ready()
  const res = await pressUntilShed(async () => await apiGet(app, '/v1/messages'))
  t.equal(res.json().code, 'overloaded')
  t.equal(res.headers['retry-after'], '5')
  t.equal((await untilNotShed(async () => await apiGet(app, '/v1/messages'))).statusCode, 200, 'recovers once the loop is free')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tidings_load_shed_total\{reason="[^"]+",class="read"\} [1-9]/, 'shed requests are counted')
})

t.test('under pressure: GET /health answers 503 overloaded too, never a 500', async (t) => {
  const { app } = await buildTestApp(t, PRESSURE_ENV)
  await app.ready()
  const res = await pressUntilShed(async () => await app.inject({ method: 'GET', url: '/health' }))
  t.equal(res.json().code, 'overloaded')
})
