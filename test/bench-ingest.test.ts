/**
 * A tiny run of `npm run bench` (bench/ingest-lib.ts), so the benchmark cannot rot: the real server
 * process, the realistic signed stream, every callback sent once, then the database check. It
 * asserts correctness only; speed is measured by the benchmark itself (docs/performance.md).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { buildStream, checkDatabase, REALISTIC, replay, startBenchServer } from '../bench/ingest-lib.ts'
import { createTestDatabaseUrl } from './helpers/database.ts'

t.test('npm run bench, tiny: every acknowledged callback stored once, every message in its true final status', async (t) => {
  const url = await createTestDatabaseUrl(t)
  const token = 'bench_token_' + randomBytes(8).toString('hex')
  const stream = buildStream({ ...REALISTIC, messages: 150 }, token)
  // Load shedding off: this test is about correctness, not about how busy the machine is.
  const server = await startBenchServer(url, token, { MAX_EVENT_LOOP_DELAY_MS: '0' })
  t.teardown(async () => { await server.stop() })
  const result = await replay(server, stream, 8, 'tiny')
  t.equal(result.non2xx + result.errors, 0, `every callback acknowledged: ${JSON.stringify(result.statusCodes)}`)
  t.equal(result.acknowledged.size, stream.length, 'each callback was sent exactly once')
  t.ok(new Set(stream.map((c) => `${c.sid} ${c.status}`)).size < stream.length, 'the stream has exact duplicates')
  t.same(await checkDatabase(url, stream, result.acknowledged), { lost: 0, doubled: 0, wrongStatus: 0, messages: 150 })
})
