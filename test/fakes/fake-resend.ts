/**
 * FAKE Resend API, for tests and demos only: Resend is unreachable from these machines.
 *
 * A small Fastify server on 127.0.0.1 answering `GET /emails/:id` in the shape of Resend's
 * "Retrieve Email" (https://resend.com/docs/api-reference/emails/retrieve-email), so reconciliation
 * can talk to it through `RESEND_API_BASE_URL`. It checks `Authorization: Bearer <apiKey>` (401
 * otherwise, like Resend's `missing_api_key`/`invalid_api_key`), answers 404 `not_found` for an
 * unknown id, records every request, and can be told to answer the next requests with 429 (with
 * `Retry-After`) or 500.
 */
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'

/** An email as the fake stores it, in Resend's JSON field names. */
export interface FakeEmail {
  id: string
  from: string
  to: string[]
  subject: string
  /** `sent`, `delivered`, `bounced`, `opened`, ... (Resend's `last_event`). */
  last_event: string
  created_at: string
}

export type FakeResendBehaviour = { kind: 'http', status: 429 | 500, retryAfterS?: number }

export interface FakeResend {
  /** e.g. `http://127.0.0.1:41234`: the value for `RESEND_API_BASE_URL`. */
  url: string
  apiKey: string
  emails: Map<string, FakeEmail>
  /** Every `GET /emails/:id`, in order. */
  requests: Array<{ id: string, authorized: boolean }>
  seed: (email: Partial<FakeEmail> & { last_event: string }) => FakeEmail
  /** Queues how the next requests are answered, one behaviour each; afterwards they succeed. */
  answerNext: (...behaviours: FakeResendBehaviour[]) => void
  close: () => Promise<void>
}

function resendError (statusCode: number, name: string, message: string): Record<string, unknown> {
  return { statusCode, name, message }
}

/** Starts the FAKE Resend API on 127.0.0.1 (a free port). */
export async function startFakeResend (opts: { apiKey?: string } = {}): Promise<FakeResend> {
  const apiKey = opts.apiKey ?? 're_fake_0123456789abcdef'
  const app = Fastify({ logger: false, forceCloseConnections: true })
  const emails = new Map<string, FakeEmail>()
  const requests: FakeResend['requests'] = []
  const behaviours: FakeResendBehaviour[] = []

  app.get<{ Params: { id: string } }>('/emails/:id', async (request, reply) => {
    const authorized = request.headers.authorization === `Bearer ${apiKey}`
    requests.push({ id: request.params.id, authorized })
    if (!authorized) return await reply.code(401).send(resendError(401, 'invalid_api_key', 'API key is invalid'))
    const behaviour = behaviours.shift()
    if (behaviour?.status === 429) {
      return await reply.code(429).header('retry-after', String(behaviour.retryAfterS ?? 1))
        .send(resendError(429, 'rate_limit_exceeded', 'Too many requests. You can only make 2 requests per second.'))
    }
    if (behaviour?.status === 500) return await reply.code(500).send(resendError(500, 'internal_server_error', 'An unexpected error occurred.'))
    const email = emails.get(request.params.id)
    if (email === undefined) return await reply.code(404).send(resendError(404, 'not_found', 'Email not found'))
    return {
      object: 'email',
      ...email,
      html: '<p>Hello</p>',
      text: null,
      bcc: null,
      cc: null,
      reply_to: null,
      scheduled_at: null
    }
  })

  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    emails,
    requests,
    seed: (partial) => {
      const email: FakeEmail = {
        id: randomUUID(),
        from: 'Acme <onboarding@example.com>',
        to: ['someone@example.com'],
        subject: 'Hello',
        created_at: new Date().toISOString(),
        ...partial
      }
      emails.set(email.id, email)
      return email
    },
    answerNext: (...next) => { behaviours.push(...next) },
    close: async () => { await app.close() }
  }
}
