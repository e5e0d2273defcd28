/**
 * Database faults under continuous signed Twilio load, through a TCP proxy between a real Tidings
 * process and PostgreSQL (docs/reliability.md): connections cut while the job queue polls. Each: the process never exits, every callback
 * acknowledged with 200 is in the database, and callbacks are acknowledged again after the fault
 * (the time it took is reported as a comment, not asserted: this machine is shared).
 */
import t from 'tap'
import { formBody, sign, STATUS_PATH } from './helpers/app.ts'
import { sleep, startFaultRig, survived, until, within } from './helpers/faults.ts'
import { randomNumber, SMS_FROM, storeWhatsAppMessage, WA_FROM, whatsappCallback } from './helpers/fallback.ts'
import { startLoad } from './helpers/load.ts'
import { startFakeTwilio } from './fakes/fake-twilio.ts'

t.test('connections cut while the job queue polls: the queue picks up again and the fallback SMS is sent', async (t) => {
  const fake = await startFakeTwilio()
  t.teardown(async () => { await fake.close() })
  const rig = await startFaultRig(t, {
    TWILIO_API_BASE_URL: fake.url,
    FALLBACK_SMS_FROM_MAP: `whatsapp:${WA_FROM}=${SMS_FROM}`,
    FALLBACK_POLL_INTERVAL_SECONDS: '0.5',
    FALLBACK_RETRY_DELAY_SECONDS: '1'
  })
  const load = startLoad(rig.server.address, { concurrency: 2, pauseMs: 20 })
  t.teardown(load.stop)
  await load.ackedAfter(Date.now())
  // pg-boss's fetch of the next job, then 2 s with the database away.
  await within(rig.proxy.cutWhen(/skip locked/i), 15_000, 'a job-queue poll')
  rig.proxy.down()
  await sleep(2000)
  rig.proxy.restore()
  const restoredAt = Date.now()
  const to = randomNumber()
  const sid = await storeWhatsAppMessage(rig.db, { to, body: 'Your code is 123456' })
  const params = whatsappCallback(sid, 'undelivered', { to, errorCode: '63049' })
  await until(async () => {
    const res = await fetch(`${rig.server.address}${STATUS_PATH}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign(params) }, body: formBody(params) })
    return res.status === 200
  }, 'the failed WhatsApp callback to be recorded', 20_000)
  await until(() => fake.sent().some((m) => m.to === to), 'the fallback SMS', 30_000)
  t.comment(`job queue: fallback SMS sent ${Date.now() - restoredAt} ms after the database came back`)
  await survived(t, rig, load, restoredAt, 'job-queue poll cut')
})
