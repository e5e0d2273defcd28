/**
 * Start-up with the database down (docs/reliability.md): Tidings waits and says so in its log
 * instead of exiting, and starts as soon as PostgreSQL answers; past `DATABASE_STARTUP_TIMEOUT` it
 * exits 1 with a line naming the variable.
 */
import t from 'tap'
import { createTestDatabase } from './helpers/database.ts'
import { faultEnv, spawnServer } from './helpers/faults.ts'
import { lostAcknowledged, startLoad } from './helpers/load.ts'
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts'

interface TapLike { teardown: (fn: () => unknown) => void }

async function downDatabase (t: TapLike): Promise<{ proxy: TcpProxy, url: string, db: Awaited<ReturnType<typeof createTestDatabase>>['db'] }> {
  const { db, url } = await createTestDatabase(t)
  const target = new URL(url)
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  t.teardown(async () => { await proxy.close() })
  proxy.down()
  return { proxy, url, db }
}

t.test('database down at start-up: the process waits, logs why, and starts once PostgreSQL answers', async (t) => {
  const { proxy, url, db } = await downDatabase(t)
  const server = spawnServer(faultEnv(proxy.urlThrough(url), { DATABASE_STARTUP_TIMEOUT: '2m' }))
  t.teardown(async () => { if (server.child.exitCode === null) server.child.kill('SIGTERM'); await server.exited })
  const waiting = await server.logged(/^database not answering/)
  t.match(waiting, { level: 40, reason: 'connection reset', timeout: '2m' }, 'it says it is waiting, and why')
  proxy.restore()
  const restoredAt = Date.now()
  const listening = await server.logged(/^Server listening at/)
  const address = /(http:\/\/\S+)/.exec(String(listening.msg))?.[1] as string
  t.ok(server.logs.some((l) => l.msg === 'database answers; starting'), 'and when the database answered')
  const load = startLoad(address, { concurrency: 2 })
  t.teardown(load.stop)
  const recovered = await load.ackedAfter(restoredAt, 60_000)
  await load.stop()
  t.equal(server.child.exitCode, null, 'it is running')
  t.same(await lostAcknowledged(db, load.attempts), [], 'every acknowledged callback is stored')
  t.comment(`listening ${Number(listening.time) - restoredAt} ms after the database came back, first callback acknowledged after ${recovered - restoredAt} ms`)
})

t.test('database still down after DATABASE_STARTUP_TIMEOUT: exits 1 naming the variable', async (t) => {
  const { proxy, url } = await downDatabase(t)
  const server = spawnServer(faultEnv(proxy.urlThrough(url), { DATABASE_STARTUP_TIMEOUT: '2s' }))
  t.equal(await server.exited, 1)
  t.ok(server.logs.some((l) => /^database not answering; waiting/.test(String(l.msg))), 'it waited')
  t.match(server.logs.at(-1), { level: 60, err: { message: /did not answer within 2s \(DATABASE_STARTUP_TIMEOUT\): connection reset/ } }, 'then gave up, naming the variable')
  t.notOk(server.logs.some((l) => /^Server listening/.test(String(l.msg))))
})
