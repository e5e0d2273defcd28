/**
 * Helpers for the outbound-webhook tests: the environment (fast retries, loopback allowed),
 * creating a subscription whose secret the receiver then verifies with, and the at-least-once
 * checks of the fault tests (everything recorded delivered, signed, under one webhook-id each).
 */
import type { FastifyInstance } from 'fastify'
import { sql, type Kysely } from 'kysely'
import type { Test } from 'tap'
import type { Database } from '../../src/db/database.ts'
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

/**
 * POST /v1/subscriptions for `receiver` and teach the receiver the secret: through `app.inject`, or
 * over HTTP when `app` is the base URL of a running server (`startServer`).
 */
export async function subscribe (app: FastifyInstance | string, receiver: WebhookReceiver | { url: string, secrets?: string[] }, fields: Record<string, unknown> = {}, key = API_KEY): Promise<Subscribed> {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
  const payload = JSON.stringify({ url: receiver.url, event_types: ['message.status'], ...fields })
  const res = typeof app === 'string'
    ? await fetch(`${app}/v1/subscriptions`, { method: 'POST', headers, body: payload }).then(async (r) => ({ statusCode: r.status, body: await r.text() }))
    : await app.inject({ method: 'POST', url: '/v1/subscriptions', headers, payload })
  if (res.statusCode !== 201) throw new Error(`POST /v1/subscriptions answered ${res.statusCode}: ${res.body}`)
  const body = JSON.parse(res.body)
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

/**
 * Waits until `receiver` (a `message.status` subscription) got every event recorded in
 * `message_events` so far; call it once nothing more is being recorded.
 * @returns the ids of the recorded events.
 */
export async function deliveredAllRecorded (db: Kysely<Database>, receiver: WebhookReceiver, timeoutMs = 60_000): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`select id::text as id from message_events`.execute(db)
  const ids = rows.map((r) => r.id)
  await receiver.waitUntil((received) => {
    const seen = new Set(received.map((r) => String(r.payload.data.event_id)))
    return ids.every((id) => seen.has(id))
  }, timeoutMs)
  return ids
}

/**
 * The at-least-once checks over everything `receiver` got: every request verifies, a change sent
 * more than once kept its `webhook-id`, and the changes delivered are exactly `recorded` (event ids).
 */
export function checkDeliveredAsRecorded (t: Test, receiver: WebhookReceiver, recorded: readonly string[]): void {
  t.same(receiver.unverified(), [], 'every request verifies with standardwebhooks')
  const ids = new Map<string, Set<string>>()
  for (const r of receiver.received) {
    const event = String(r.payload.data.event_id)
    ids.set(event, (ids.get(event) ?? new Set()).add(r.id))
  }
  t.same([...ids].filter(([, s]) => s.size > 1).map(([event]) => event), [], 'a change sent more than once kept its webhook-id')
  const expected = new Set(recorded)
  t.same([...ids.keys()].filter((event) => !expected.has(event)), [], 'nothing was sent that was not recorded')
  t.same(recorded.filter((event) => !ids.has(event)), [], 'every recorded change was delivered')
}
