import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

t.test('npm run demo: starts on the embedded PostgreSQL with the FAKE Twilio API, every history ends right, tidy output', async (t) => {
  const script = fileURLToPath(new URL('../scripts/demo.ts', import.meta.url))
  // Right after start-up, as a newcomer would run it: no waiting for readiness in between.
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [script], { env: { PATH: process.env.PATH }, timeout: 180_000 })
  t.match(stdout, /FAKE Twilio REST API/)
  t.notMatch(stdout, /→ 503|✘/, 'no callback refused, no history wrong')
  t.match(stdout, /fallback state: sent; the FAKE Twilio API received 1 SMS/)
  t.match(stdout, /✔ SMS fallback of the 63049 WhatsApp message/)
  t.match(stdout, /Every message ended in the right status\./)
  t.notMatch(stdout + stderr, /^\s*\{"level"/m, 'no raw JSON log line')
  t.same(stdout.match(/^== .+$/gm)?.map((h) => h.slice(3).split(/[ ,]/)[0]), ['Tidings', 'Twilio', 'SMS', 'What', 'Resend', 'Outbound'], 'one heading per part')
  t.match(stdout, /✔ every delivery verified with standardwebhooks/)
  t.notMatch(stdout, /->/, 'one kind of arrow')
})
