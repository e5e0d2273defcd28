/**
 * Subscriptions and their deliveries in the database: free functions taking the Kysely handle
 * first. Every read and write is scoped to the API key that owns the subscription, so another
 * key's subscription is simply not found.
 */
import { randomUUID } from 'node:crypto'
import { sql, type Kysely } from 'kysely'
import type { SecretsKey } from '../config/webhooks-out.ts'
import type { EventType } from './fan-out.ts'
import { encryptSecret, generateSigningSecret } from './secrets.ts'

/** A subscription as stored, without its secrets. */
export interface SubscriptionRecord {
  id: string
  url: string
  description: string | null
  event_types: EventType[]
  channels: string[] | null
  statuses: string[] | null
  external_id_prefix: string | null
  enabled: boolean
  disabled_reason: string | null
  disabled_at: Date | null
  failing_since: Date | null
  previous_secret_expires_at: Date | null
  created_at: Date
  updated_at: Date
}

/** What a caller may set. */
export interface SubscriptionFields {
  url: string
  description?: string | null
  event_types: EventType[]
  channels?: string[] | null
  statuses?: string[] | null
  external_id_prefix?: string | null
}

const COLUMNS = sql`id::text as id, url, description, event_types, channels, statuses, external_id_prefix, enabled,
  disabled_reason, disabled_at, failing_since, previous_secret_expires_at, created_at, updated_at`

/** Creates a subscription for `owner` and returns it with its new signing secret (shown once). */
export async function createSubscription (db: Kysely<any>, keys: readonly SecretsKey[], owner: string, fields: SubscriptionFields): Promise<{ subscription: SubscriptionRecord, secret: string }> {
  const id = randomUUID()
  const secret = generateSigningSecret()
  const { rows } = await sql<SubscriptionRecord>`
    insert into webhook_subscriptions (id, api_key_name, url, description, event_types, channels, statuses, external_id_prefix, secret_ciphertext)
    values (${id}, ${owner}, ${fields.url}, ${fields.description ?? null}, ${fields.event_types}::text[], ${fields.channels ?? null}::text[],
            ${fields.statuses ?? null}::text[], ${fields.external_id_prefix ?? null}, ${encryptSecret(keys, id, secret)})
    returning ${COLUMNS}`.execute(db)
  return { subscription: rows[0], secret }
}

/** The owner's subscriptions, oldest first. */
export async function listSubscriptions (db: Kysely<any>, owner: string): Promise<SubscriptionRecord[]> {
  const { rows } = await sql<SubscriptionRecord>`
    select ${COLUMNS} from webhook_subscriptions where api_key_name = ${owner} order by created_at, id`.execute(db)
  return rows
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The owner's subscription `id`, or undefined (also for an id that is not a UUID). */
export async function findSubscription (db: Kysely<any>, owner: string, id: string): Promise<SubscriptionRecord | undefined> {
  if (!UUID.test(id)) return undefined
  const { rows } = await sql<SubscriptionRecord>`
    select ${COLUMNS} from webhook_subscriptions where id = ${id}::uuid and api_key_name = ${owner}`.execute(db)
  return rows[0]
}

/**
 * Changes the given fields (a `null` filter removes it). `enabled: true` also forgets why it was
 * disabled and since when it was failing; `enabled: false` records a manual disable.
 */
export async function updateSubscription (db: Kysely<any>, owner: string, id: string, patch: Partial<SubscriptionFields> & { enabled?: boolean }): Promise<SubscriptionRecord | undefined> {
  if (!UUID.test(id)) return undefined
  const has = (k: string): boolean => Object.hasOwn(patch, k)
  const { rows } = await sql<SubscriptionRecord>`
    update webhook_subscriptions set
      url = ${has('url') ? sql`${patch.url}` : sql`url`},
      description = ${has('description') ? sql`${patch.description ?? null}` : sql`description`},
      event_types = ${has('event_types') ? sql`${patch.event_types}::text[]` : sql`event_types`},
      channels = ${has('channels') ? sql`${patch.channels ?? null}::text[]` : sql`channels`},
      statuses = ${has('statuses') ? sql`${patch.statuses ?? null}::text[]` : sql`statuses`},
      external_id_prefix = ${has('external_id_prefix') ? sql`${patch.external_id_prefix ?? null}` : sql`external_id_prefix`},
      enabled = ${patch.enabled === undefined ? sql`enabled` : sql`${patch.enabled}`},
      disabled_reason = ${patch.enabled === true ? sql`null` : patch.enabled === false ? sql`case when enabled then 'manual' else disabled_reason end` : sql`disabled_reason`},
      disabled_at = ${patch.enabled === true ? sql`null` : patch.enabled === false ? sql`case when enabled then now() else disabled_at end` : sql`disabled_at`},
      failing_since = ${patch.enabled === true ? sql`null` : sql`failing_since`},
      updated_at = now()
    where id = ${id}::uuid and api_key_name = ${owner}
    returning ${COLUMNS}`.execute(db)
  return rows[0]
}

/** Deletes the subscription and its deliveries; false when the owner has no such subscription. */
export async function deleteSubscription (db: Kysely<any>, owner: string, id: string): Promise<boolean> {
  if (!UUID.test(id)) return false
  const r = await sql`delete from webhook_subscriptions where id = ${id}::uuid and api_key_name = ${owner}`.execute(db)
  return Number(r.numAffectedRows ?? 0n) > 0
}

/**
 * Issues a new signing secret; the current one keeps signing (both signatures are sent) for
 * `overlapMs`. A secret already overlapping is dropped: at most two are ever valid.
 */
export async function rotateSecret (db: Kysely<any>, keys: readonly SecretsKey[], owner: string, id: string, overlapMs: number): Promise<{ secret: string, previousSecretExpiresAt: Date | null } | undefined> {
  if (!UUID.test(id)) return undefined
  const secret = generateSigningSecret()
  const { rows } = await sql<{ previous_secret_expires_at: Date | null }>`
    update webhook_subscriptions set
      previous_secret_ciphertext = case when ${overlapMs} > 0 then secret_ciphertext end,
      previous_secret_expires_at = case when ${overlapMs} > 0 then now() + ${overlapMs} * interval '1 millisecond' end,
      secret_ciphertext = ${encryptSecret(keys, id, secret)},
      updated_at = now()
    where id = ${id}::uuid and api_key_name = ${owner}
    returning previous_secret_expires_at`.execute(db)
  return rows.length === 0 ? undefined : { secret, previousSecretExpiresAt: rows[0].previous_secret_expires_at }
}

export type DeliveryState = 'pending' | 'delivered' | 'failed'

export interface DeliveryRecord {
  id: string
  webhook_id: string
  event_type: string
  event_id: string
  state: DeliveryState
  attempts: number
  last_status_code: number | null
  last_error: string | null
  last_attempt_at: Date | null
  next_attempt_at: Date
  created_at: Date
  delivered_at: Date | null
  payload: unknown
}

/** A subscription's deliveries, newest first, after the keyset position `before` (a delivery id). */
export async function listDeliveries (db: Kysely<any>, subscriptionId: string, opts: { state?: DeliveryState, before?: bigint, limit: number }): Promise<DeliveryRecord[]> {
  const { rows } = await sql<DeliveryRecord>`
    select id::text as id, webhook_id, event_type, event_id, state, attempts, last_status_code, last_error,
           last_attempt_at, next_attempt_at, created_at, delivered_at, payload
    from webhook_deliveries
    where subscription_id = ${subscriptionId}::uuid
      ${opts.state === undefined ? sql`` : sql`and state = ${opts.state}`}
      ${opts.before === undefined ? sql`` : sql`and id < ${opts.before.toString()}::bigint`}
    order by id desc limit ${opts.limit}`.execute(db)
  return rows
}

/**
 * Puts finished deliveries (delivered or failed) back in the queue, due now, with a fresh retry
 * schedule and their own `webhook-id` and body: by ids, or those created in `[since, until)`.
 * @returns how many were re-queued.
 */
export async function replayDeliveries (db: Kysely<any>, subscriptionId: string, sel: { ids?: string[], since?: Date, until?: Date }): Promise<number> {
  const r = await sql`
    update webhook_deliveries set state = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = null
    where subscription_id = ${subscriptionId}::uuid and state <> 'pending'
      ${sel.ids === undefined ? sql`` : sql`and id = any(${sel.ids}::bigint[])`}
      ${sel.since === undefined ? sql`` : sql`and created_at >= ${sel.since}`}
      ${sel.until === undefined ? sql`` : sql`and created_at < ${sel.until}`}`.execute(db)
  return Number(r.numAffectedRows ?? 0n)
}
