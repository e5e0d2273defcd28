/**
 * Resend deliveries for tests, signed with svix's own `Webhook.sign` exactly as Resend (Svix) signs.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { Webhook } from 'svix'

export const RESEND_PATH = '/webhooks/resend'
/** Secrets in Resend's format: `whsec_` + base64 of the HMAC key. */
export const RESEND_SECRET = 'whsec_' + Buffer.from('tidings-test-resend-secret-01').toString('base64')
export const RESEND_SECOND_SECRET = 'whsec_' + Buffer.from('tidings-test-resend-secret-02').toString('base64')

/** A Resend email id (a UUID, as Resend's are). */
export function emailId (): string {
  return randomUUID()
}

/** A Svix message id, as Resend sends in `svix-id`. */
export function svixId (): string {
  return `msg_${randomUUID().replace(/-/g, '')}`
}

/** A Resend webhook payload as documented: `{ type, created_at, data: { email_id, ... } }`. */
export function emailEvent (type: string, id: string, data: Record<string, unknown> = {}, createdAt: string = new Date().toISOString()): Record<string, unknown> {
  return {
    type,
    created_at: createdAt,
    data: {
      email_id: id,
      from: 'Acme <onboarding@acme.example>',
      to: ['ada@example.com', 'grace@example.com'],
      subject: 'Your receipt',
      created_at: '2026-11-24T08:00:00.000000+00:00',
      tags: { category: 'receipt' },
      ...data
    }
  }
}

export interface SignOptions {
  /** Secrets to sign with; each adds one `v1,` entry to `svix-signature`. */
  secrets?: string[]
  id?: string
  /** Signing time (default now). */
  at?: Date
}

/** The three `svix-*` headers for `body`. */
export function svixHeaders (body: string, opts: SignOptions = {}): Record<string, string> {
  const id = opts.id ?? svixId()
  const at = opts.at ?? new Date()
  const signatures = (opts.secrets ?? [RESEND_SECRET]).map((secret) => new Webhook(secret).sign(id, at, body))
  return {
    'svix-id': id,
    'svix-timestamp': String(Math.floor(at.getTime() / 1000)),
    'svix-signature': signatures.join(' ')
  }
}

/** Posts a delivery through `app.inject`: JSON-encodes objects, signs unless `headers` is given. */
export async function postResend (
  app: FastifyInstance,
  payload: Record<string, unknown> | string | Buffer,
  opts: SignOptions & { headers?: Record<string, string>, contentType?: string } = {}
): Promise<LightMyRequestResponse> {
  const body = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload)
  const headers = opts.headers ?? svixHeaders(body.toString(), opts)
  return await app.inject({
    method: 'POST',
    url: RESEND_PATH,
    headers: { 'content-type': opts.contentType ?? 'application/json', ...headers },
    payload: body
  })
}
