import t from 'tap'
import { apiGet, buildTestApp, messageSid, postCallback, smsCallback } from './helpers/app.ts'
import { emailEvent, emailId, postResend, RESEND_SECOND_SECRET, RESEND_SECRET, svixHeaders, svixId } from './helpers/resend.ts'

const STATUS_TYPES = ['email.scheduled', 'email.sent', 'email.delivery_delayed', 'email.failed', 'email.suppressed', 'email.bounced', 'email.delivered', 'email.complained']

t.test('POST /webhooks/resend', async (t) => {
  const { app, db } = await buildTestApp(t, { RESEND_WEBHOOK_SECRET: RESEND_SECRET })

  const eventsOf = async (sid: string) => await db.selectFrom('message_events').selectAll().where('message_sid', '=', sid).orderBy('id').execute()
  const messageOf = async (sid: string) => await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirst()
  const metric = async (outcome: string): Promise<number> => {
    const text = await app.metrics.registry.metrics()
    const m = new RegExp(`tidings_webhooks_total\\{provider="resend",outcome="${outcome}"\\} (\\d+)`).exec(text)
    return m === null ? 0 : Number(m[1])
  }

  t.test('records a valid event of each status type with its svix-id, raw payload and event time', async (t) => {
    for (const type of STATUS_TYPES) {
      const sid = emailId()
      const id = svixId()
      const createdAt = '2026-11-24T07:59:30.123Z'
      const payload = emailEvent(type, sid, {}, createdAt)
      const res = await postResend(app, payload, { id })
      t.equal(res.statusCode, 200, type)
      t.same(res.json(), { outcome: 'recorded' }, type)
      const [event] = await eventsOf(sid)
      t.match(event, { message_status: type, channel: 'email', to_address: 'ada@example.com', from_address: 'Acme <onboarding@acme.example>', svix_id: id, source: 'webhook' }, type)
      t.same(event.raw, payload, `${type}: raw payload kept`)
      t.same(event.occurred_at, new Date(createdAt), `${type}: created_at is the event time`)
      const message = await messageOf(sid)
      t.match(message, { provider: 'resend', channel: 'email', status: type, subject: 'Your receipt', recipients: ['ada@example.com', 'grace@example.com'], tags: { category: 'receipt' } }, type)
    }
  })

  t.test('email.opened and email.clicked are engagement, not status events', async (t) => {
    const sid = emailId()
    const opened = await postResend(app, emailEvent('email.opened', sid, {}, '2026-11-24T08:10:00.000Z'))
    const clicked = await postResend(app, emailEvent('email.clicked', sid, {
      click: { ipAddress: '203.0.113.7', link: 'https://acme.example/receipt', timestamp: '2026-11-24T08:11:00.000Z', userAgent: 'Mozilla/5.0' }
    }, '2026-11-24T08:11:01.000Z'))
    t.same([opened.statusCode, opened.json()], [200, { outcome: 'recorded' }])
    t.same([clicked.statusCode, clicked.json()], [200, { outcome: 'recorded' }])
    t.equal((await eventsOf(sid)).length, 0, 'no status event')
    const message = await messageOf(sid)
    t.match(message, { status: null, open_count: 1, click_count: 1, first_opened_at: new Date('2026-11-24T08:10:00.000Z'), first_clicked_at: new Date('2026-11-24T08:11:00.000Z') })
    const rows = await db.selectFrom('email_engagements').selectAll().where('message_sid', '=', sid).orderBy('id').execute()
    t.match(rows, [{ kind: 'opened', link: null }, { kind: 'clicked', link: 'https://acme.example/receipt', ip_address: '203.0.113.7', user_agent: 'Mozilla/5.0' }])
  })

  t.test('two opens with different svix-ids count 2; a retried open never counts twice', async (t) => {
    const sid = emailId()
    const first = emailEvent('email.opened', sid, {}, '2026-11-24T09:00:00.000Z')
    const firstId = svixId()
    t.equal((await postResend(app, first, { id: firstId })).json().outcome, 'recorded')
    t.equal((await postResend(app, first, { id: firstId })).json().outcome, 'duplicate', 'the same delivery again')
    t.equal((await postResend(app, emailEvent('email.opened', sid, {}, '2026-11-24T08:30:00.000Z'))).json().outcome, 'recorded', 'a second real open')
    const message = await messageOf(sid)
    t.equal(message?.open_count, 2)
    t.same(message?.first_opened_at, new Date('2026-11-24T08:30:00.000Z'), 'first_opened_at is the earliest open, whatever the order')
  })

  t.test('the same delivery 20 times concurrently is one event (and one open)', async (t) => {
    const sid = emailId()
    const payload = JSON.stringify(emailEvent('email.delivered', sid))
    const headers = svixHeaders(payload)
    const results = await Promise.all(Array.from({ length: 20 }, async () => await postResend(app, payload, { headers })))
    t.same(results.map((r) => r.statusCode), Array(20).fill(200), 'every copy acknowledged')
    t.equal(results.filter((r) => r.json().outcome === 'recorded').length, 1, 'one recorded')
    t.equal((await eventsOf(sid)).length, 1, 'one event row')
    t.equal((await messageOf(sid))?.status, 'email.delivered')

    const open = JSON.stringify(emailEvent('email.opened', sid))
    const openHeaders = svixHeaders(open)
    const opens = await Promise.all(Array.from({ length: 20 }, async () => await postResend(app, open, { headers: openHeaders })))
    t.same(opens.map((r) => r.statusCode), Array(20).fill(200))
    t.equal((await messageOf(sid))?.open_count, 1, 'one open counted')
  })

  t.test('out of order: delivered before sent ends delivered, with both timestamps', async (t) => {
    const sid = emailId()
    t.equal((await postResend(app, emailEvent('email.delivered', sid, {}, '2026-11-24T08:00:05.000Z'))).statusCode, 200)
    t.equal((await postResend(app, emailEvent('email.sent', sid, {}, '2026-11-24T08:00:01.000Z'))).statusCode, 200)
    const message = await messageOf(sid)
    t.equal(message?.status, 'email.delivered')
    t.same(message?.sent_at, new Date('2026-11-24T08:00:01.000Z'))
    t.same(message?.delivered_at, new Date('2026-11-24T08:00:05.000Z'))
    t.same((await eventsOf(sid)).map((e) => e.message_status), ['email.delivered', 'email.sent'], 'timeline in the order received')
  })

  t.test('a bounce is recorded with its type, subType and message as the error', async (t) => {
    const sid = emailId()
    await postResend(app, emailEvent('email.sent', sid, {}, '2026-11-24T08:00:00.000Z'))
    const res = await postResend(app, emailEvent('email.bounced', sid, {
      bounce: { type: 'Permanent', subType: 'Suppressed', message: 'The recipient is on the suppression list.', diagnosticCode: ['smtp; 550 5.1.1 user unknown'] }
    }, '2026-11-24T08:00:03.000Z'))
    t.equal(res.statusCode, 200)
    t.match(await messageOf(sid), {
      status: 'email.bounced',
      error_code: 'Permanent/Suppressed',
      error_message: 'The recipient is on the suppression list.',
      bounced_at: new Date('2026-11-24T08:00:03.000Z'),
      failed_at: new Date('2026-11-24T08:00:03.000Z')
    })
    t.match((await eventsOf(sid))[1], { message_status: 'email.bounced', error_code: 'Permanent/Suppressed' })
  })

  t.test('failed and suppressed carry their reason', async (t) => {
    const failed = emailId()
    await postResend(app, emailEvent('email.failed', failed, { failed: { reason: 'reached_daily_quota' } }))
    t.match(await messageOf(failed), { status: 'email.failed', error_code: 'reached_daily_quota' })
    const suppressed = emailId()
    await postResend(app, emailEvent('email.suppressed', suppressed, { suppressed: { type: 'OnAccountSuppressionList', message: 'Suppressed by the account' } }))
    t.match(await messageOf(suppressed), { status: 'email.suppressed', error_code: 'OnAccountSuppressionList', error_message: 'Suppressed by the account' })
  })

  t.test('a redelivered status event is acknowledged and changes nothing', async (t) => {
    const sid = emailId()
    const payload = emailEvent('email.sent', sid)
    const id = svixId()
    t.equal((await postResend(app, payload, { id })).json().outcome, 'recorded')
    const before = await messageOf(sid)
    const again = await postResend(app, payload, { id })
    t.same([again.statusCode, again.json()], [200, { outcome: 'duplicate' }])
    t.same(await messageOf(sid), before)
    t.equal((await eventsOf(sid)).length, 1)
  })

  t.test('message fields missing from the first event are filled by a later one', async (t) => {
    const sid = emailId()
    await postResend(app, emailEvent('email.scheduled', sid, { to: [], subject: null, from: null, tags: null }))
    t.match(await messageOf(sid), { recipients: null, to_address: null, subject: null, from_address: null, tags: null })
    await postResend(app, emailEvent('email.sent', sid))
    t.match(await messageOf(sid), { recipients: ['ada@example.com', 'grace@example.com'], to_address: 'ada@example.com', subject: 'Your receipt', tags: { category: 'receipt' } })
  })

  t.test('an invalid created_at falls back to the time received', async (t) => {
    const sid = emailId()
    const before = Date.now()
    await postResend(app, emailEvent('email.sent', sid, {}, 'not a date'))
    const message = await messageOf(sid)
    t.ok(message?.sent_at !== null && message!.sent_at!.getTime() >= before - 1000)
    t.equal((await eventsOf(sid))[0].occurred_at, null)
  })

  t.test('authentic events of types Tidings does not track get 2xx, are counted, and are not stored', async (t) => {
    const before = await metric('ignored')
    const types = ['contact.created', 'domain.updated', 'suppression.added', 'email.received', 'email.some_future_type']
    for (const type of types) {
      const sid = emailId()
      const res = await postResend(app, emailEvent(type, sid))
      t.same([res.statusCode, res.json()], [200, { outcome: 'ignored' }], type)
      t.equal(await messageOf(sid), undefined, `${type}: no message`)
    }
    t.equal(await metric('ignored'), before + types.length)
    const res = await postResend(app, { type: 'contact.deleted', created_at: new Date().toISOString(), data: { id: 'c1', email: 'x@example.com' } })
    t.equal(res.statusCode, 200, 'a contact payload with no email_id is fine')
  })

  t.test('signature checks: 401 invalid_signature, counted, nothing stored', async (t) => {
    const reject = async (name: string, res: Awaited<ReturnType<typeof postResend>>, sid: string): Promise<void> => {
      t.equal(res.statusCode, 401, name)
      t.equal(res.json().code, 'invalid_signature', name)
      t.equal(await messageOf(sid), undefined, `${name}: nothing stored`)
    }
    const before = await metric('invalid_signature')

    let sid = emailId()
    const body = JSON.stringify(emailEvent('email.delivered', sid))
    const headers = svixHeaders(body)
    // 'Your receipt' becomes 'Your Receipt': still valid JSON, one byte different.
    const tampered = Buffer.from(body)
    tampered[body.indexOf('Your receipt') + 5] = 'R'.charCodeAt(0)
    t.equal(JSON.parse(tampered.toString()).data.subject, 'Your Receipt')
    await reject('one tampered byte', await postResend(app, tampered, { headers }), sid)

    sid = emailId()
    await reject('stale by 301 s', await postResend(app, emailEvent('email.delivered', sid), { at: new Date(Date.now() - 301_000) }), sid)
    sid = emailId()
    await reject('301 s in the future', await postResend(app, emailEvent('email.delivered', sid), { at: new Date(Date.now() + 301_000) }), sid)
    sid = emailId()
    await reject('signed by a removed secret', await postResend(app, emailEvent('email.delivered', sid), { secrets: [RESEND_SECOND_SECRET] }), sid)

    sid = emailId()
    const unsigned = JSON.stringify(emailEvent('email.delivered', sid))
    const { 'svix-signature': _sig, ...noSignature } = svixHeaders(unsigned)
    await reject('missing svix-signature', await postResend(app, unsigned, { headers: noSignature }), sid)
    await reject('no svix headers at all', await postResend(app, unsigned, { headers: {} }), sid)
    await reject('a signature of another svix-id', await postResend(app, unsigned, { headers: { ...svixHeaders(unsigned), 'svix-id': svixId() } }), sid)
    await reject('a non-numeric timestamp', await postResend(app, unsigned, { headers: { ...svixHeaders(unsigned), 'svix-timestamp': 'yesterday' } }), sid)
    t.equal(await metric('invalid_signature'), before + 8, 'every rejection counted')

    sid = emailId()
    const ok = await postResend(app, emailEvent('email.delivered', sid), { at: new Date(Date.now() - 290_000) })
    t.equal(ok.statusCode, 200, 'within the 300 s tolerance is fine')
  })

  t.test('malformed JSON with a valid signature is 400, never 500', async (t) => {
    for (const [name, body] of [['truncated JSON', '{"type":"email.sent","data":{'], ['empty body', ''], ['not an object', '[1,2]'], ['no type', '{"data":{}}']] as const) {
      const res = await postResend(app, body)
      t.equal(res.statusCode, 400, name)
      t.equal(res.json().code, 'invalid_payload', name)
    }
    const nul = await postResend(app, emailEvent('email.sent', emailId(), { subject: 'a\u0000b' }))
    t.equal(nul.statusCode, 400, 'a NUL character, which PostgreSQL cannot store')
    t.match(nul.json().message, /data\.subject contains a NUL/)
    const invalidUtf8 = Buffer.concat([Buffer.from('{"type":"email.sent","data":{"email_id":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')])
    t.equal((await postResend(app, invalidUtf8)).statusCode, 400, 'bytes that are not UTF-8')
    const noId = await postResend(app, { type: 'email.sent', created_at: new Date().toISOString(), data: { to: ['a@example.com'] } })
    t.same([noId.statusCode, noId.json().message], [400, 'data.email_id must be a Resend email id'])
    const badTo = await postResend(app, emailEvent('email.sent', emailId(), { to: [42] }))
    t.same([badTo.statusCode, badTo.json().message], [400, 'data.to must be a list of addresses'])
  })

  t.test('a body over 256 KiB is 413; another content type is 415', async (t) => {
    const big = JSON.stringify(emailEvent('email.sent', emailId(), { subject: 'x'.repeat(256 * 1024) }))
    const res = await postResend(app, big)
    t.equal(res.statusCode, 413)
    t.equal(res.json().code, 'payload_too_large')
    const justUnder = JSON.stringify(emailEvent('email.sent', emailId(), { subject: 'x'.repeat(200 * 1024) }))
    t.equal((await postResend(app, justUnder)).statusCode, 200, '200 KiB is accepted')
    const form = await postResend(app, 'type=email.sent', { contentType: 'application/x-www-form-urlencoded' })
    t.equal(form.statusCode, 415)
    const charset = await postResend(app, emailEvent('email.sent', emailId()), { contentType: 'application/json; charset=utf-8' })
    t.equal(charset.statusCode, 200, 'application/json with a charset parameter')
  })

  t.test('GET /v1/messages/:sid and /events show an email with its engagement', async (t) => {
    const sid = emailId()
    await postResend(app, emailEvent('email.sent', sid, {}, '2026-11-24T10:00:00.000Z'))
    await postResend(app, emailEvent('email.delivered', sid, {}, '2026-11-24T10:00:02.000Z'))
    await postResend(app, emailEvent('email.opened', sid, {}, '2026-11-24T10:05:00.000Z'))
    await postResend(app, emailEvent('email.clicked', sid, { click: { link: 'https://acme.example/a', ipAddress: '198.51.100.1', userAgent: 'UA', timestamp: '2026-11-24T10:06:00.000Z' } }))
    const res = await apiGet(app, `/v1/messages/${sid}`)
    t.equal(res.statusCode, 200)
    t.match(res.json(), {
      sid,
      provider: 'resend',
      channel: 'email',
      status: 'email.delivered',
      to: 'ada@example.com',
      recipients: ['ada@example.com', 'grace@example.com'],
      subject: 'Your receipt',
      tags: { category: 'receipt' },
      sent_at: '2026-11-24T10:00:00.000Z',
      delivered_at: '2026-11-24T10:00:02.000Z',
      engagement: { open_count: 1, first_opened_at: '2026-11-24T10:05:00.000Z', click_count: 1, first_clicked_at: '2026-11-24T10:06:00.000Z' }
    })
    const events = await apiGet(app, `/v1/messages/${sid}/events`)
    t.equal(events.statusCode, 200)
    const body = events.json()
    t.same(body.data.map((e: { status: string }) => e.status), ['email.sent', 'email.delivered'])
    t.match(body.data[0], { occurred_at: '2026-11-24T10:00:00.000Z', svix_id: /^msg_/ })
    t.match(body.engagement, [{ kind: 'opened', occurred_at: '2026-11-24T10:05:00.000Z' }, { kind: 'clicked', link: 'https://acme.example/a', ip_address: '198.51.100.1', user_agent: 'UA' }])
  })

  t.test('GET /v1/messages/:sid for an SMS has no email fields and no engagement', async (t) => {
    const sid = messageSid()
    t.equal((await postCallback(app, smsCallback(sid, 'delivered'))).statusCode, 200)
    t.match((await apiGet(app, `/v1/messages/${sid}`)).json(), { channel: 'sms', subject: null, recipients: null, tags: null, engagement: null })
    t.same((await apiGet(app, `/v1/messages/${sid}/events`)).json().engagement, [])
  })
})

t.test('POST /webhooks/resend with two secrets configured (rotation)', async (t) => {
  const { app, db } = await buildTestApp(t, { RESEND_WEBHOOK_SECRET: `${RESEND_SECRET}, ${RESEND_SECOND_SECRET}` })
  for (const [name, secrets] of [['old secret', [RESEND_SECRET]], ['new secret', [RESEND_SECOND_SECRET]]] as const) {
    const res = await postResend(app, emailEvent('email.sent', emailId()), { secrets: [...secrets] })
    t.equal(res.statusCode, 200, name)
  }
  t.ok(db)
})

t.test('POST /webhooks/resend accepts a signature header with two entries when only the second secret is configured', async (t) => {
  const { app, db } = await buildTestApp(t, { RESEND_WEBHOOK_SECRET: RESEND_SECOND_SECRET })
  const sid = emailId()
  const body = JSON.stringify(emailEvent('email.delivered', sid))
  const headers = svixHeaders(body, { secrets: [RESEND_SECRET, RESEND_SECOND_SECRET] })
  t.equal(headers['svix-signature'].split(' ').length, 2)
  const res = await postResend(app, body, { headers })
  t.equal(res.statusCode, 200)
  t.equal((await db.selectFrom('messages').select('status').where('sid', '=', sid).executeTakeFirst())?.status, 'email.delivered')
  const firstOnly = await postResend(app, body, { headers: svixHeaders(body, { secrets: [RESEND_SECRET] }) })
  t.equal(firstOnly.statusCode, 401, 'the first entry alone does not verify')
})

t.test('POST /webhooks/resend is not served when no Resend secret is configured', async (t) => {
  const { app } = await buildTestApp(t, { RESEND_WEBHOOK_SECRET: undefined })
  const res = await postResend(app, emailEvent('email.sent', emailId()))
  t.equal(res.statusCode, 404)
})
