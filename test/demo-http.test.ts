/**
 * The demos' client on a busy machine: it waits out 503/429 as Retry-After says and reports any
 * answer, JSON or not, instead of crashing on it (the demo once died on `undefined.map` after a 503).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { printLogLine, request } from '../scripts/demo-http.ts'

async function serve (t: Test, answers: Array<{ status: number, headers?: Record<string, string>, body: string }>): Promise<{ url: string, hits: () => number }> {
  let hits = 0
  const server = http.createServer((_req, res) => {
    const a = answers[Math.min(hits++, answers.length - 1)]
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers }).end(a.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits }
}

t.test('request waits out 503 and 429 with Retry-After, then returns the answer', async (t) => {
  const overloaded = { status: 503, headers: { 'retry-after': '1' }, body: '{"code":"overloaded","message":"Tidings is overloaded"}' }
  const limited = { status: 429, headers: { 'retry-after': '1' }, body: '{"code":"rate_limited","message":"slow down"}' }
  const { url, hits } = await serve(t, [overloaded, limited, { status: 200, body: '{"outcome":"recorded"}' }])
  const started = Date.now()
  const answer = await request(url)
  t.equal(answer.status, 200)
  t.equal(answer.summary, '200 recorded')
  t.equal(hits(), 3, 'asked again after each refusal')
  t.ok(Date.now() - started >= 1900, 'waited the Retry-After seconds each time (a lower bound: never flaky)')
})

t.test('request reports an error answer, JSON or not, without throwing', async (t) => {
  const { url } = await serve(t, [{ status: 500, body: '<html>oops</html>' }])
  const answer = await request(url)
  t.equal(answer.status, 500)
  t.equal(answer.body, undefined)
  t.equal(answer.summary, '500')
  const json = await serve(t, [{ status: 404, body: '{"code":"message_not_found","message":"No message SMx"}' }])
  t.match(await request(json.url), { status: 404, summary: '404 message_not_found', body: { message: 'No message SMx' } })
})

t.test('printLogLine turns a JSON log line into one sentence', async (t) => {
  const printed: string[] = []
  const log = console.log
  console.log = (line: string) => { printed.push(line) }
  try {
    printLogLine('{"level":50,"msg":"could not record Twilio callback","err":{"message":"Connection terminated\\n  at x"}}\n')
  } finally {
    console.log = log
  }
  t.same(printed, ['  ! Tidings logged: could not record Twilio callback (Connection terminated)'])
})
