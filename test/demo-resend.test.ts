import t from 'tap'
import { replayResendStream } from '../scripts/demo-resend.ts'
import { API_KEY, buildTestApp } from './helpers/app.ts'
import { RESEND_SECRET } from './helpers/resend.ts'

// Over real HTTP because the demo is a client of a listening Tidings.
t.test('scripts/demo-resend.ts replays its stream and reads back the right histories', async (t) => {
  const { app } = await buildTestApp(t, { RESEND_WEBHOOK_SECRET: RESEND_SECRET })
  const baseUrl = await app.listen({ port: 0, host: '127.0.0.1' })
  const lines: string[] = []
  const result = await replayResendStream({ baseUrl, secret: RESEND_SECRET, apiKey: API_KEY, print: (l) => lines.push(l) })
  t.same(result.answers, ['200 recorded', '200 recorded', '200 recorded', '200 duplicate', '200 recorded', '200 recorded', '200 recorded', '200 recorded'])
  t.match(result.emails, [
    { status: 'email.delivered', error_code: null, open_count: 2, click_count: 1, events: ['email.sent', 'email.delivered'] },
    { status: 'email.bounced', error_code: 'Permanent/General', open_count: 0, click_count: 0, events: ['email.bounced', 'email.sent'] }
  ])
  t.ok(lines.some((l) => l.includes('opens 2')))
})
