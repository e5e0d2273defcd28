import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { ACCOUNT_SID, API_KEY, AUTH_TOKEN, STATUS_PATH, formBody, messageSid, smsCallback } from './helpers/app.ts'
import { startServer } from './helpers/process.ts'
import twilio from 'twilio'

t.test('npm start with no DATABASE_URL runs on embedded PGlite, end to end', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tidings-pglite-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const env = {
    DATA_DIR: dataDir,
    PUBLIC_BASE_URL: 'https://hooks.example.com',
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    API_KEYS: `billing:${API_KEY}`
  }
  const server = await startServer(env)
  t.teardown(async () => { await server.stop() })
  t.ok(server.logs.some((l) => typeof l.msg === 'string' && /embedded PGlite/.test(l.msg)), 'says it runs on PGlite')

  const sid = messageSid()
  const post = async (status: string): Promise<Response> => {
    const params = smsCallback(sid, status)
    return await fetch(`${server.address}${STATUS_PATH}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': twilio.getExpectedTwilioSignature(AUTH_TOKEN, `https://hooks.example.com${STATUS_PATH}`, params)
      },
      body: formBody(params)
    })
  }
  t.equal((await post('delivered')).status, 200)
  t.equal((await post('sent')).status, 200)
  const dup = await post('sent')
  t.same(await dup.json(), { outcome: 'duplicate' })

  const auth = { authorization: `Bearer ${API_KEY}` }
  const message = await (await fetch(`${server.address}/v1/messages/${sid}`, { headers: auth })).json() as { status: string }
  t.equal(message.status, 'delivered')
  const events = await (await fetch(`${server.address}/v1/messages/${sid}/events`, { headers: auth })).json() as { data: Array<{ status: string }> }
  t.same(events.data.map((e) => e.status), ['delivered', 'sent'])
  const health = await (await fetch(`${server.address}/health`)).json()
  t.match(health, { status: 'ok', database: 'ok' })

  t.equal(await server.stop(), 0, 'SIGTERM shuts down gracefully with exit code 0')

  // The data survives a restart: it is stored in DATA_DIR.
  const again = await startServer(env)
  t.teardown(async () => { await again.stop() })
  const reread = await (await fetch(`${again.address}/v1/messages/${sid}`, { headers: auth })).json() as { status: string }
  t.equal(reread.status, 'delivered', 'kept across restarts')
})

t.test('start-up fails with one clear error listing every bad variable', async (t) => {
  await t.rejects(startServer({ PORT: 'x', TWILIO_ACCOUNT_SID: 'nope' }, 10_000), /Invalid configuration:[\s\S]*PORT[\s\S]*TWILIO_ACCOUNT_SID/)
})
