import t from 'tap'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'

t.test('GET /v1/messages', async (t) => {
  const { app, db } = await buildTestApp(t)
  // 25 SMS to one number, 5 WhatsApp to another, 3 failed.
  const sms: string[] = []
  for (let i = 0; i < 25; i++) {
    const sid = messageSid()
    sms.push(sid)
    await postCallback(app, smsCallback(sid, i < 3 ? 'failed' : 'delivered', i < 3 ? { ErrorCode: '30003' } : {}))
  }
  for (let i = 0; i < 5; i++) {
    await postCallback(app, smsCallback(messageSid(), 'read', { From: 'whatsapp:+14155238886', To: 'whatsapp:+15551234567' }))
  }

  t.test('pages through everything once, newest first, while rows are being inserted', async (t) => {
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const url: string = `/v1/messages?limit=7${cursor === null ? '' : `&cursor=${cursor}`}`
      const res = await apiGet(app, url)
      t.equal(res.statusCode, 200)
      const body = res.json() as { data: Array<{ sid: string, created_at: string }>, next_cursor: string | null }
      seen.push(...body.data.map((m) => m.sid))
      cursor = body.next_cursor
      pages++
      // Insert while paging: new rows are newer than the cursor and must not disturb it.
      await postCallback(app, smsCallback(messageSid(), 'sent', { To: '+15550000000' }))
    } while (cursor !== null && pages < 20)
    const original = new Set([...sms])
    const seenOriginal = seen.filter((s) => original.has(s))
    t.equal(seenOriginal.length, 25, 'every SMS that existed when paging began, once')
    t.equal(new Set(seen).size, seen.length, 'no duplicates')
    const createdAt = await db.selectFrom('messages').select(['sid', 'created_at']).execute()
    const at = new Map(createdAt.map((r) => [r.sid, r.created_at.getTime()]))
    const times = seen.map((s) => at.get(s) ?? 0)
    t.same(times, [...times].sort((a, b) => b - a), 'newest first')
  })

  t.test('filters by status, channel, to, since/until', async (t) => {
    const failed = (await apiGet(app, '/v1/messages?status=failed')).json()
    t.equal(failed.data.length, 3)
    t.ok(failed.data.every((m: { error_code: string }) => m.error_code === '30003'))
    const wa = (await apiGet(app, '/v1/messages?channel=whatsapp')).json()
    t.equal(wa.data.length, 5)
    const to = (await apiGet(app, '/v1/messages?to=whatsapp:%2B15551234567&limit=200')).json()
    t.equal(to.data.length, 5, 'the whatsapp: prefix is ignored when filtering by recipient')
    const future = (await apiGet(app, `/v1/messages?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).json()
    t.equal(future.data.length, 0)
    const past = (await apiGet(app, `/v1/messages?until=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`)).json()
    t.equal(past.data.length, 0)
  })

  t.test('filters by external_id', async (t) => {
    const sid = sms[5]
    await db.updateTable('messages').set({ external_id: 'order-1234' }).where('sid', '=', sid).execute()
    const res = (await apiGet(app, '/v1/messages?external_id=order-1234')).json()
    t.same(res.data.map((m: { sid: string }) => m.sid), [sid])
    t.equal(res.data[0].external_id, 'order-1234')
  })

  t.test('bad parameters: 400 invalid_payload naming the parameter', async (t) => {
    for (const [query, name] of [['limit=500', 'limit'], ['limit=0', 'limit'], ['channel=fax', 'channel'], ['since=yesterday', 'since'], ['cursor=garbage', 'cursor'], ['colour=red', 'querystring']]) {
      const res = await apiGet(app, `/v1/messages?${query}`)
      t.equal(res.statusCode, 400, query)
      t.equal(res.json().code, 'invalid_payload')
      t.match(res.json().message, name, `${query} names ${name}`)
    }
  })
})
