/**
 * FAKE Twilio REST API, for tests and the demo only: Twilio is unreachable from these machines.
 *
 * A small Fastify server on 127.0.0.1 that answers the three Message resource calls Tidings makes
 * (https://www.twilio.com/docs/messaging/api/message-resource) in Twilio's shapes, so the real
 * twilio-node client can talk to it through `TWILIO_API_BASE_URL`:
 * - `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form body) → 201 with a new `SM…` SID, `queued`;
 * - `GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json` → the message, or 404 (20404);
 * - `GET  /2010-04-01/Accounts/{AccountSid}/Messages.json` filtered by `To`, `From`, `DateSent>`.
 * It records every request, and can be told how to answer the next sends: 429, 500, a Twilio
 * error such as 21610, slowly, or by accepting the message and then destroying the connection;
 * and the next fetches: 429 or 500.
 *
 * Like real Twilio, a message created through the API stays `queued` with no `date_sent` until it
 * leaves (`setStatus` moves it on and fills `date_sent`), so a `DateSent>` filter does not find it.
 * Statuses never move on by themselves. `onAccepted` runs a test's fault (e.g. cutting the
 * database) at the moment Twilio has accepted a message and before it answers.
 */
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import formbody from '@fastify/formbody'
import Fastify from 'fastify'

/** How the fake answers one `POST …/Messages.json`. */
export type CreateBehaviour =
  | { kind: 'ok' }
  /** An HTTP error with Twilio's error body (429 Too Many Requests, 500, 503). */
  | { kind: 'http', status: number }
  /** A Twilio API error, e.g. `{ code: 21610 }` (unsubscribed) or 21211 (invalid number); HTTP 400 unless given. */
  | { kind: 'twilio_error', code: number, message?: string, status?: number }
  /** Accepts the message, then answers after `delayMs` (a client with a shorter timeout gives up). */
  | { kind: 'slow', delayMs: number }
  /** Accepts the message, then destroys the socket without answering. */
  | { kind: 'accept_then_drop' }
  /** Creates the message only after `delayMs`, then answers (a client with a shorter timeout gives up first). */
  | { kind: 'accept_late', delayMs: number }

/** A message as the fake stores it, in Twilio's JSON field names. */
export interface FakeMessage {
  sid: string
  account_sid: string
  to: string
  from: string | null
  messaging_service_sid: string | null
  body: string
  status: string
  status_callback: string | null
  error_code: number | null
  error_message: string | null
  date_created: Date
  date_sent: Date | null
  /** True when created through the API (not seeded by a test). */
  created_via_api: boolean
}

export interface FakeRequest {
  method: string
  path: string
  query: Record<string, string>
  form: Record<string, string>
  /** Basic-auth user (the AccountSid the client authenticated as). */
  authUser: string | null
  at: Date
}

export interface FakeTwilio {
  /** e.g. `http://127.0.0.1:41234`: the value for `TWILIO_API_BASE_URL`. */
  url: string
  /** Every request received, in order. */
  requests: FakeRequest[]
  /** Messages accepted through `POST …/Messages.json`, in order (what "reached Twilio"). */
  sent: () => FakeMessage[]
  /** Every message the fake knows, by SID. */
  messages: Map<string, FakeMessage>
  /** Adds a message the fake knows without it being sent through the API (e.g. the original WhatsApp). */
  seed: (message: Partial<FakeMessage> & { sid: string, account_sid: string, to: string }) => FakeMessage
  /** Queues how the next sends are answered, one behaviour per send; afterwards sends succeed. */
  answerNextSends: (...behaviours: CreateBehaviour[]) => void
  /** Like `answerNextSends`, for sends to `to` only (taken before the global queue): concurrent tests do not share answers. */
  answerNextSendsTo: (to: string, ...behaviours: CreateBehaviour[]) => void
  /** Queues HTTP errors (429, 500) for the next `GET …/Messages/{Sid}.json`, one per fetch; afterwards fetches succeed. */
  answerNextFetches: (...statuses: number[]) => void
  /** Moves a message on (e.g. `sent`, `delivered`, `read`, `failed`), filling `date_sent` when it leaves `queued`/`accepted`. */
  setStatus: (sid: string, status: string, errorCode?: number) => void
  /** Runs `fn` once a message is accepted, before the fake answers; `null` removes it. */
  onAccepted: (fn: ((m: FakeMessage) => unknown) | null) => void
  /** Resolves once `count` messages were accepted through the API (rejects after `timeoutMs`). */
  waitForSent: (count: number, timeoutMs?: number) => Promise<FakeMessage[]>
  close: () => Promise<void>
}

const PATH = /^\/2010-04-01\/Accounts\/(AC[0-9a-fA-F]{32})\/Messages(?:\/((?:SM|MM)[0-9a-fA-F]{32}))?\.json$/

/** Twilio's RFC 2822 date format, e.g. `Tue, 24 Nov 2026 08:00:00 +0000`. */
function rfc2822 (d: Date | null): string | null {
  return d === null ? null : d.toUTCString().replace('GMT', '+0000')
}

function toJson (m: FakeMessage): Record<string, unknown> {
  const uri = `/2010-04-01/Accounts/${m.account_sid}/Messages/${m.sid}.json`
  return {
    account_sid: m.account_sid,
    api_version: '2010-04-01',
    body: m.body,
    date_created: rfc2822(m.date_created),
    date_sent: rfc2822(m.date_sent),
    date_updated: rfc2822(m.date_created),
    direction: 'outbound-api',
    error_code: m.error_code,
    error_message: m.error_message,
    from: m.from,
    messaging_service_sid: m.messaging_service_sid,
    num_media: '0',
    num_segments: '1',
    price: null,
    price_unit: 'USD',
    sid: m.sid,
    status: m.status,
    subresource_uris: { media: uri.replace('.json', '/Media.json'), feedback: uri.replace('.json', '/Feedback.json') },
    to: m.to,
    uri
  }
}

/** Twilio's error body: `{ code, message, more_info, status }`. */
function twilioError (status: number, code: number, message: string): Record<string, unknown> {
  return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status }
}

function authUserOf (header: string | undefined): string | null {
  const m = header === undefined ? null : /^Basic\s+(\S+)$/i.exec(header)
  if (m === null) return null
  const decoded = Buffer.from(m[1], 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon <= 0 || colon === decoded.length - 1 ? null : decoded.slice(0, colon)
}

/** Starts the FAKE Twilio API on 127.0.0.1 (a free port unless `port` is given). */
export async function startFakeTwilio (opts: { port?: number } = {}): Promise<FakeTwilio> {
  const app = Fastify({ logger: false, forceCloseConnections: true })
  await app.register(formbody)
  const requests: FakeRequest[] = []
  const messages = new Map<string, FakeMessage>()
  const behaviours: CreateBehaviour[] = []
  const behavioursByTo = new Map<string, CreateBehaviour[]>()
  const fetchStatuses: number[] = []
  // Pending slow answers: cleared (and released) on close so the server can stop.
  const timers = new Map<NodeJS.Timeout, () => void>()
  const sentWaiters = new Set<() => void>()
  let acceptedHook: ((m: FakeMessage) => unknown) | null = null
  const sent = (): FakeMessage[] => [...messages.values()].filter((m) => m.created_via_api)

  const delay = async (ms: number): Promise<void> => await new Promise((resolve) => {
    const timer = setTimeout(() => { timers.delete(timer); resolve() }, ms)
    timers.set(timer, resolve)
  })

  app.route({
    method: ['GET', 'POST'],
    url: '/*',
    handler: async (request, reply) => {
      const path = request.url.split('?')[0]
      const query = Object.fromEntries(new URL(request.url, 'http://fake').searchParams)
      const form = (request.method === 'POST' ? request.body ?? {} : {}) as Record<string, string>
      const authUser = authUserOf(request.headers.authorization)
      requests.push({ method: request.method, path, query, form, authUser, at: new Date() })

      const m = PATH.exec(path)
      if (m === null) return await reply.code(404).send(twilioError(404, 20404, 'The requested resource was not found'))
      const [, accountSid, sid] = m
      if (authUser !== accountSid) return await reply.code(401).send(twilioError(401, 20003, 'Authenticate'))

      if (request.method === 'GET' && sid !== undefined) {
        const status = fetchStatuses.shift()
        if (status !== undefined) {
          return await reply.code(status).send(twilioError(status, status === 429 ? 20429 : 20500, status === 429 ? 'Too Many Requests' : 'Internal Server Error'))
        }
        const message = messages.get(sid)
        if (message === undefined || message.account_sid !== accountSid) {
          return await reply.code(404).send(twilioError(404, 20404, `The requested resource ${path} was not found`))
        }
        return toJson(message)
      }

      if (request.method === 'GET') {
        const after = query['DateSent>'] !== undefined ? new Date(query['DateSent>']) : undefined
        const pageSize = Math.min(1000, Number(query.PageSize ?? 50) || 50)
        const found = [...messages.values()]
          .filter((x) => x.account_sid === accountSid)
          .filter((x) => query.To === undefined || x.to === query.To)
          .filter((x) => query.From === undefined || x.from === query.From)
          .filter((x) => after === undefined || (x.date_sent !== null && x.date_sent.getTime() >= after.getTime()))
          .sort((a, b) => b.date_created.getTime() - a.date_created.getTime())
          .slice(0, pageSize)
        const uri = `/2010-04-01/Accounts/${accountSid}/Messages.json?PageSize=${pageSize}&Page=0`
        return {
          messages: found.map(toJson),
          end: Math.max(0, found.length - 1),
          first_page_uri: uri,
          next_page_uri: null,
          page: 0,
          page_size: pageSize,
          previous_page_uri: null,
          start: 0,
          uri
        }
      }

      if (sid !== undefined) return await reply.code(405).send(twilioError(405, 20004, 'Method not allowed'))
      const behaviour = behavioursByTo.get(form.To ?? '')?.shift() ?? behaviours.shift() ?? { kind: 'ok' }
      if (behaviour.kind === 'http') {
        return await reply.code(behaviour.status).send(twilioError(behaviour.status, behaviour.status === 429 ? 20429 : 20500, behaviour.status === 429 ? 'Too Many Requests' : 'Internal Server Error'))
      }
      if (behaviour.kind === 'twilio_error') {
        const status = behaviour.status ?? 400
        return await reply.code(status).send(twilioError(status, behaviour.code, behaviour.message ?? `Twilio error ${behaviour.code}`))
      }
      if (form.To === undefined || form.To === '') return await reply.code(400).send(twilioError(400, 21604, "A 'To' phone number is required."))
      if ((form.From ?? '') === '' && (form.MessagingServiceSid ?? '') === '') {
        return await reply.code(400).send(twilioError(400, 21603, "A 'From' phone number is required."))
      }
      // A Content Template (ContentSid) replaces the body.
      if ((form.Body ?? '') === '' && (form.ContentSid ?? '') === '') return await reply.code(400).send(twilioError(400, 21602, 'Message body is required.'))
      if (behaviour.kind === 'accept_late') await delay(behaviour.delayMs)
      const now = new Date()
      const message: FakeMessage = {
        sid: 'SM' + randomBytes(16).toString('hex'),
        account_sid: accountSid,
        to: form.To,
        // With a Messaging Service, Twilio picks the sender later; the create response has none.
        from: (form.From ?? '') === '' ? null : form.From,
        messaging_service_sid: (form.MessagingServiceSid ?? '') === '' ? null : form.MessagingServiceSid,
        body: form.Body ?? '',
        status: 'queued',
        status_callback: form.StatusCallback ?? null,
        error_code: null,
        error_message: null,
        date_created: now,
        // Twilio fills date_sent when the message leaves, not when it is accepted.
        date_sent: null,
        created_via_api: true
      }
      messages.set(message.sid, message)
      for (const wake of [...sentWaiters]) wake()
      if (acceptedHook !== null) await acceptedHook(message)
      if (behaviour.kind === 'accept_then_drop') {
        reply.hijack()
        request.raw.socket.destroy()
        return
      }
      if (behaviour.kind === 'slow') await delay(behaviour.delayMs)
      return await reply.code(201).send(toJson(message))
    }
  })

  await app.listen({ host: '127.0.0.1', port: opts.port ?? 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    sent,
    messages,
    seed: (partial) => {
      const now = new Date()
      const message: FakeMessage = {
        from: null,
        messaging_service_sid: null,
        body: '',
        status: 'sent',
        status_callback: null,
        error_code: null,
        error_message: null,
        date_created: now,
        date_sent: now,
        ...partial,
        created_via_api: false
      }
      messages.set(message.sid, message)
      return message
    },
    answerNextSends: (...next) => { behaviours.push(...next) },
    answerNextSendsTo: (to, ...next) => { behavioursByTo.set(to, [...(behavioursByTo.get(to) ?? []), ...next]) },
    setStatus: (sid, status, errorCode) => {
      const m = messages.get(sid)
      if (m === undefined) throw new Error(`fake Twilio: no message ${sid}`)
      m.status = status
      if (errorCode !== undefined) { m.error_code = errorCode; m.error_message = `Twilio error ${errorCode}` }
      if (m.date_sent === null && status !== 'queued' && status !== 'accepted') m.date_sent = new Date()
    },
    onAccepted: (fn) => { acceptedHook = fn },
    answerNextFetches: (...next) => { fetchStatuses.push(...next) },
    waitForSent: async (count, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs
      while (sent().length < count) {
        if (Date.now() > deadline) throw new Error(`fake Twilio: expected ${count} sent message(s), got ${sent().length}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100)
          sentWaiters.add(() => { clearTimeout(timer); resolve() })
        })
        sentWaiters.clear()
      }
      return sent()
    },
    close: async () => {
      for (const [timer, release] of timers) { clearTimeout(timer); release() }
      timers.clear()
      await app.close()
    }
  }
}
