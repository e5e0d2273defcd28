/**
 * Simulation: 1,000 registered messages, 10 % of their status callbacks dropped at random, one
 * reconciliation pass against the FAKE Twilio API, which knows every message's true final status.
 */
import t from 'tap'
import { ACCOUNT_SID, API_KEY, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { randomNumber, whatsappCallback, WA_FROM } from './helpers/fallback.ts'
import { buildReconcileApp } from './helpers/reconcile.ts'

// The file's time budget (tap's default is 120 s): 1,000 messages and their callbacks.
t.setTimeout(8 * 60_000)

const { app, db, fake, reconcile } = await buildReconcileApp(t)

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with SIMULATION_SEED. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** Retries a request the app answered 503 (database or machine busy), as a client honouring Retry-After would. */
async function retrying (send: () => Promise<{ statusCode: number }>): Promise<number> {
  for (let i = 0; ; i++) {
    const res = await send()
    if (res.statusCode !== 503 || i >= 20) return res.statusCode
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

interface Simulated { sid: string, to: string, whatsapp: boolean, final: string, callbacks: Array<{ status: string, errorCode?: string }> }

t.test('reconcile: 1,000 registered messages, 10 % of callbacks dropped, one pass: at least 99.9 % reach their exact final status, read included', async (t) => {
  const seed = Number(process.env.SIMULATION_SEED ?? 1202)
  const random = prng(seed)
  const pick = <T>(choices: Array<[T, number]>): T => {
    let r = random()
    for (const [value, weight] of choices) { if ((r -= weight) < 0) return value }
    return choices[choices.length - 1][0]
  }
  const messages: Simulated[] = Array.from({ length: 1000 }, () => {
    const whatsapp = random() < 0.5
    const final = whatsapp
      ? pick([['read', 0.6], ['delivered', 0.25], ['undelivered', 0.1], ['failed', 0.05]])
      : pick([['delivered', 0.85], ['undelivered', 0.1], ['failed', 0.05]])
    const path: Record<string, Array<{ status: string, errorCode?: string }>> = {
      read: [{ status: 'sent' }, { status: 'delivered' }, { status: 'read' }],
      delivered: [{ status: 'sent' }, { status: 'delivered' }],
      undelivered: [{ status: 'sent' }, { status: 'undelivered', errorCode: '30003' }],
      failed: [{ status: 'failed', errorCode: '30008' }]
    }
    return { sid: messageSid(), to: randomNumber(), whatsapp, final, callbacks: path[final] }
  })

  // Registered (PUT), and known to Twilio with their true final status.
  for (let i = 0; i < messages.length; i += 20) {
    await Promise.all(messages.slice(i, i + 20).map(async (m) => {
      const to = m.whatsapp ? `whatsapp:${m.to}` : m.to
      const from = m.whatsapp ? `whatsapp:${WA_FROM}` : '+14155550100'
      const status = await retrying(async () => await app.inject({ method: 'PUT', url: `/v1/messages/${m.sid}`, headers: { authorization: `Bearer ${API_KEY}` }, payload: { to, from, body: 'hello', fallback: false } }))
      // 200: a retry after a 503 whose first attempt had committed.
      if (status !== 201 && status !== 200) throw new Error(`PUT answered ${status}`)
      fake.seed({ sid: m.sid, account_sid: ACCOUNT_SID, to, from, status: m.final, body: 'hello', error_code: m.callbacks.at(-1)?.errorCode === undefined ? null : Number(m.callbacks.at(-1)?.errorCode) })
    }))
  }

  // Each callback reaches Tidings with probability 0.9, in order.
  let dropped = 0
  let total = 0
  const plans = messages.map((m) => ({ m, kept: m.callbacks.filter(() => { total++; const keep = random() >= 0.1; if (!keep) dropped++; return keep }) }))
  for (let i = 0; i < plans.length; i += 20) {
    await Promise.all(plans.slice(i, i + 20).map(async ({ m, kept }) => {
      for (const cb of kept) {
        const params = m.whatsapp
          ? whatsappCallback(m.sid, cb.status, { to: m.to, ...(cb.errorCode === undefined ? {} : { errorCode: cb.errorCode }) })
          : smsCallback(m.sid, cb.status, { To: m.to, ...(cb.errorCode === undefined ? {} : { ErrorCode: cb.errorCode }) })
        const status = await retrying(async () => await postCallback(app, params))
        if (status !== 200) throw new Error(`callback answered ${status}`)
      }
    }))
  }
  t.ok(dropped / total > 0.07 && dropped / total < 0.13, `about 10 % of ${total} callbacks dropped (${dropped})`)

  const exact = async (): Promise<number> => {
    const rows = await db.selectFrom('messages').select(['sid', 'status']).where('sid', 'in', messages.map((m) => m.sid)).execute()
    const status = new Map(rows.map((r) => [r.sid, r.status]))
    return messages.filter((m) => status.get(m.sid) === m.final).length
  }
  const before = await exact()
  t.ok(before < 1000, `before the pass, ${before / 10} % exact`)

  const summary = await reconcile({ afterMs: 0, batch: 2000 })
  const after = await exact()
  t.comment(`seed ${seed}: ${dropped}/${total} callbacks dropped; exact final status ${before / 10} % before, ${after / 10} % after one pass (${summary.checked} looked up, ${summary.changed.length} corrected)`)
  t.ok(after >= 999, `at least 99.9 % exact after one pass (${after / 10} %)`)
  const reads = messages.filter((m) => m.final === 'read')
  const readRows = await db.selectFrom('messages').select(['sid', 'status']).where('sid', 'in', reads.map((m) => m.sid)).execute()
  t.equal(readRows.filter((r) => r.status === 'read').length, reads.length, 'every read recovered')
})
