/**
 * Helpers for the outbound-webhook tests: the environment (fast retries, loopback allowed), and
 * creating a subscription whose secret the receiver then verifies with.
 */
import type { FastifyInstance } from 'fastify'
import { API_KEY } from './app.ts'
import type { WebhookReceiver } from '../fakes/webhook-receiver.ts'

export const SECRETS_KEY = Buffer.alloc(32, 7).toString('base64')

/** WEBHOOK_* for tests: loopback allowed, retries scaled down from seconds-to-hours to ms. */
export function webhooksEnv (overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    WEBHOOK_SECRETS_KEY: SECRETS_KEY,
    WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32',
    WEBHOOK_RETRY_SCHEDULE: '0,50ms,100ms,100ms,100ms',
    WEBHOOK_TIMEOUT: '5s',
    WEBHOOK_POLL_INTERVAL: '50ms',
    ...overrides
  }
}

export interface Subscribed { id: string, secret: string, body: Record<string, unknown> }

/** POST /v1/subscriptions for `receiver` and teach the receiver the secret. */
export async function subscribe (app: FastifyInstance, receiver: WebhookReceiver | { url: string, secrets?: string[] }, fields: Record<string, unknown> = {}, key = API_KEY): Promise<Subscribed> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/subscriptions',
    headers: { authorization: `Bearer ${key}` },
    payload: { url: receiver.url, event_types: ['message.status'], ...fields }
  })
  if (res.statusCode !== 201) throw new Error(`POST /v1/subscriptions answered ${res.statusCode}: ${res.body}`)
  const body = res.json()
  receiver.secrets?.push(body.secret)
  return { id: body.id, secret: body.secret, body }
}

/** Resolves once `check` returns true (polling every 50 ms), or rejects after `timeoutMs`. */
export async function eventually (check: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what} not met in ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
