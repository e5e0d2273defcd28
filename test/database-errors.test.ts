import pg from 'pg'
import t from 'tap'
import { isDatabaseUnavailableError } from '../src/db/errors.ts'
import { startTcpProxy } from './helpers/tcp-proxy.ts'

t.test('a query on a client whose connection was reset is "unavailable" (503), also when retried on the dead client', async (t) => {
  const url = new URL(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres')
  const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
  t.teardown(async () => { await proxy.close() })
  const client = new pg.Client({ connectionString: proxy.urlThrough(url.toString()) })
  const clientErrors: Error[] = []
  client.on('error', (err) => clientErrors.push(err))
  await client.connect()
  const cut = proxy.cutWhen(/pg_sleep/)
  const first = await client.query('select pg_sleep(5)').then(() => undefined, (err: unknown) => err)
  await cut
  t.ok(isDatabaseUnavailableError(first), `the query in flight: ${String(first)}`)
  const second = await client.query('rollback').then(() => undefined, (err: unknown) => err)
  t.ok(isDatabaseUnavailableError(second), `the next statement on the dead client: ${String(second)}`)
  t.ok(clientErrors.length > 0, 'the client emitted error (the listener kept it from being uncaught)')
  await client.end().catch(() => {})
})
