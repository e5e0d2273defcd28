import t from 'tap'
import { buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'

const METRICS_TOKEN = 'metrics_token_0123456789'

/** Lets load sampling start, blocks the event loop for 600 ms, then lets the sample land. */
async function blockEventLoop (app: { ready: () => PromiseLike<unknown> }): Promise<void> {
  await app.ready()
  await new Promise((resolve) => setTimeout(resolve, 250))
  const until = Date.now() + 600
  while (Date.now() < until) { /* block the event loop */ }
  await new Promise((resolve) => setTimeout(resolve, 5))
}

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

t.test('under pressure: a blocked event loop gets 503 overloaded with Retry-After, not a timeout', async (t) => {
  const { app } = await buildTestApp(t, { MAX_EVENT_LOOP_DELAY_MS: '50', PRESSURE_SAMPLE_INTERVAL_MS: '100' })
  await blockEventLoop(app)
  const res = await postCallback(app, smsCallback(messageSid(), 'sent'))
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'overloaded')
  t.equal(res.headers['retry-after'], '5')
  let status = 503
  for (let i = 0; i < 50 && status === 503; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    status = (await postCallback(app, smsCallback(messageSid(), 'sent'))).statusCode
  }
  t.equal(status, 200, 'recovers once the loop is free')
  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  t.match(metrics.body, /tidings_load_shed_total\{reason="[^"]+"\} [1-9]/, 'shed requests are counted')
})

t.test('under pressure: GET /health answers 503 overloaded too, never a 500', async (t) => {
  const { app } = await buildTestApp(t, { MAX_EVENT_LOOP_DELAY_MS: '50', PRESSURE_SAMPLE_INTERVAL_MS: '100' })
  await blockEventLoop(app)
  const res = await app.inject({ method: 'GET', url: '/health' })
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'overloaded')
})
