import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/config.ts'
import { API_KEY, OTHER_API_KEY, buildTestApp, contractChecker, testEnv } from './helpers/app.ts'

const ORIGIN = 'http://localhost:80'

async function login (app: FastifyInstance, key: string, origin: string | null = ORIGIN): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST',
    url: '/console/session',
    headers: { host: 'localhost:80', ...(origin === null ? {} : { origin }) },
    payload: { api_key: key }
  })
}

function sessionCookie (res: LightMyRequestResponse): string {
  const c = res.cookies.find((x) => x.name === 'tidings_session')
  if (c === undefined) throw new Error(`no session cookie in ${JSON.stringify(res.headers['set-cookie'])}`)
  return c.value
}

const withCookie = (token: string) => ({ cookies: { tidings_session: token } })

t.test('POST /console/session trades a valid API key for an HttpOnly, SameSite=Strict, Secure, expiring cookie that can read /v1', async (t) => {
  const { app, db } = await buildTestApp(t, { CONSOLE_SESSION_TTL: '2h' })
  const res = await login(app, API_KEY)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().api_key_name, 'billing')
  const setCookie = String(res.headers['set-cookie'])
  t.match(setCookie, /tidings_session=[A-Za-z0-9_-]{43};/)
  t.match(setCookie, /HttpOnly/)
  t.match(setCookie, /SameSite=Strict/)
  t.match(setCookie, /Secure/, 'PUBLIC_BASE_URL is https in the tests')
  t.match(setCookie, /Path=\//)
  const expires = Date.parse(/Expires=([^;]+)/.exec(setCookie)?.[1] ?? '')
  t.ok(Math.abs(expires - (Date.now() + 2 * 3600_000)) < 60_000, 'expires after CONSOLE_SESSION_TTL')
  const token = sessionCookie(res)

  const rows = await db.selectFrom('console_sessions').selectAll().execute()
  t.equal(rows.length, 1)
  t.not(rows[0].token_hash.toString('base64url'), token, 'only a hash of the token is stored')

  const list = await app.inject({ method: 'GET', url: '/v1/messages', ...withCookie(token) })
  t.equal(list.statusCode, 200, list.body)
  const me = await app.inject({ method: 'GET', url: '/console/session', ...withCookie(token) })
  t.same(me.json(), res.json())

  t.test('a cookie alone cannot change anything: POST and PUT on /v1 answer 403 read_only_session', async (t) => {
    const send = await app.inject({ method: 'POST', url: '/v1/messages', ...withCookie(token), payload: { to: '+15558675310', body: 'hi', from: '+14155550100' } })
    t.equal(send.statusCode, 403, send.body)
    t.equal(send.json().code, 'read_only_session')
    const put = await app.inject({ method: 'PUT', url: '/v1/messages/SM' + 'a'.repeat(32), ...withCookie(token), payload: { channel: 'sms' } })
    t.equal(put.statusCode, 403)
    t.equal(put.json().code, 'read_only_session')
  })

  t.test('an API key header still wins over a cookie', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/v1/messages', headers: { authorization: 'Bearer wrong_key_0123456789' }, ...withCookie(token) })
    t.equal(res.statusCode, 401)
  })

  t.test('a session ends when it expires', async (t) => {
    await db.updateTable('console_sessions').set({ expires_at: new Date(Date.now() - 1000) }).execute()
    const res = await app.inject({ method: 'GET', url: '/v1/messages', ...withCookie(token) })
    t.equal(res.statusCode, 401)
    t.match(res.json().message, /expired or ended/)
    t.equal((await app.inject({ method: 'GET', url: '/console/session', ...withCookie(token) })).statusCode, 401)
  })
})

t.test('POST /console/session refuses a wrong key (401) and a missing or foreign Origin (403 origin_mismatch)', async (t) => {
  const { app, db } = await buildTestApp(t)
  const wrong = await login(app, 'k_not_a_key_0123456789')
  t.equal(wrong.statusCode, 401)
  t.equal(wrong.json().code, 'unauthorized')
  t.equal(wrong.headers['set-cookie'], undefined)
  for (const origin of [null, 'https://evil.example', 'null']) {
    const res = await login(app, API_KEY, origin)
    t.equal(res.statusCode, 403, String(origin))
    t.equal(res.json().code, 'origin_mismatch')
  }
  t.equal((await login(app, API_KEY, 'https://hooks.example.com')).statusCode, 200, "PUBLIC_BASE_URL's origin is accepted (behind a proxy)")
  t.equal((await db.selectFrom('console_sessions').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n, '1')
})

t.test('DELETE /console/session logs out: the row is deleted, the cookie cleared, and the token refused', async (t) => {
  const { app, db } = await buildTestApp(t)
  const token = sessionCookie(await login(app, OTHER_API_KEY))
  const foreign = await app.inject({ method: 'DELETE', url: '/console/session', headers: { host: 'localhost:80', origin: 'https://evil.example' }, ...withCookie(token) })
  t.equal(foreign.statusCode, 403, 'another site cannot log the user out')
  const res = await app.inject({ method: 'DELETE', url: '/console/session', headers: { host: 'localhost:80', origin: ORIGIN }, ...withCookie(token) })
  t.equal(res.statusCode, 204)
  t.match(String(res.headers['set-cookie']), /tidings_session=;.*Expires=Thu, 01 Jan 1970/)
  t.equal((await db.selectFrom('console_sessions').selectAll().execute()).length, 0)
  t.equal((await app.inject({ method: 'GET', url: '/v1/messages', ...withCookie(token) })).statusCode, 401)
})

t.test('sessions live in PostgreSQL: they survive a restart and work on another replica, and end when their key is rotated out', async (t) => {
  const checkContract = contractChecker(t)
  const { app, db } = await buildTestApp(t)
  const token = sessionCookie(await login(app, API_KEY))
  await app.close()
  const replica = await buildApp(loadConfig(testEnv()), { db })
  checkContract(replica)
  t.teardown(async () => { await replica.close() })
  t.equal((await replica.inject({ method: 'GET', url: '/v1/messages', ...withCookie(token) })).statusCode, 200)

  const rotated = await buildApp(loadConfig(testEnv({ API_KEYS: 'billing:k_rotated_billing_key_000001' })), { db })
  checkContract(rotated)
  t.teardown(async () => { await rotated.close() })
  t.equal((await rotated.inject({ method: 'GET', url: '/v1/messages', ...withCookie(token) })).statusCode, 401, 'same key name, new key: the old session is over')
})

t.test('/console serves the browser files with strict security headers; /docs keeps working without them', async (t) => {
  const { app } = await buildTestApp(t)
  const page = await app.inject({ method: 'GET', url: '/console/' })
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /text\/html/)
  t.match(page.body, /<script type="module" src="app.js">/)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.match(csp, /script-src 'self'(;|$)/)
  t.match(csp, /style-src 'self'(;|$)/)
  t.match(csp, /frame-ancestors 'none'/)
  t.notMatch(csp, /unsafe-inline/)
  t.equal(page.headers['x-frame-options'], 'DENY')
  t.equal(page.headers['referrer-policy'], 'no-referrer')
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.notMatch(page.body, /<script>|<style>|\sstyle=|\son[a-z]+=/, 'no inline script or style in the page')

  t.equal((await app.inject({ method: 'GET', url: '/console' })).headers.location, '/console/')
  const uplot = await app.inject({ method: 'GET', url: '/console/vendor/uplot/uPlot.esm.js' })
  t.equal(uplot.statusCode, 200)
  t.match(uplot.headers['content-type'], /javascript/)
  t.equal((await app.inject({ method: 'GET', url: '/console/vendor/uplot/uPlot.cjs.js' })).statusCode, 404, 'only the two files the console uses')
  t.equal((await app.inject({ method: 'GET', url: '/console/../package.json' })).statusCode, 404)

  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(docs.statusCode, 200)
  t.notMatch(String(docs.headers['content-security-policy'] ?? ''), /script-src 'self'(;|$)/, "the console's CSP is not applied to Swagger UI")
})

t.test('CONSOLE_* variables are validated at start-up', async (t) => {
  t.throws(() => loadConfig(testEnv({ CONSOLE_SESSION_TTL: '10s' })), /CONSOLE_SESSION_TTL must be between 1m and 30d/)
  t.throws(() => loadConfig(testEnv({ CONSOLE_STATS_REFRESH_INTERVAL: 'often' })), /CONSOLE_STATS_REFRESH_INTERVAL must be a duration/)
  t.equal(loadConfig(testEnv({ CONSOLE_STATS_REFRESH_INTERVAL: '0' })).console.statsRefreshIntervalMs, 0)
  t.equal(loadConfig(testEnv()).console.sessionTtlMs, 8 * 3600_000)
})
