/**
 * Outbound status webhooks API (docs/webhooks-out.md): `/v1/subscriptions` and their deliveries.
 * A subscription belongs to the API key that created it; for any other key it does not exist (404).
 * The signing secret is returned once, on creation and on rotation, and never logged. Without
 * `WEBHOOK_SECRETS_KEY` nothing can be created (501 `webhooks_not_configured`) and nothing is sent.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { WebhooksOutConfig } from '../config/webhooks-out.ts'
import { EVENT_TYPES } from '../delivery/fan-out.ts'
import {
  createSubscription, deleteSubscription, findSubscription, listDeliveries, listSubscriptions, replayDeliveries,
  rotateSecret, updateSubscription, type DeliveryRecord, type SubscriptionRecord
} from '../delivery/subscriptions.ts'
import { urlProblem } from '../delivery/target-guard.ts'
import { AppError } from '../errors.ts'
import { ErrorBody } from './schemas.ts'

const DateTime = Type.String({ format: 'date-time' })
const EventTypes = Type.Array(Type.Union(EVENT_TYPES.map((t) => Type.Literal(t))), { minItems: 1, maxItems: EVENT_TYPES.length, uniqueItems: true })
const Channels = Type.Array(Type.Union([Type.Literal('sms'), Type.Literal('mms'), Type.Literal('whatsapp'), Type.Literal('email')]), { minItems: 1, maxItems: 4, uniqueItems: true })
const Statuses = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 50, uniqueItems: true })
const Url = Type.String({ minLength: 1, maxLength: 2048 })
const Description = Type.String({ maxLength: 500 })
const Prefix = Type.String({ minLength: 1, maxLength: 200 })

const Subscription = Type.Object({
  id: Type.String(),
  url: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  event_types: Type.Array(Type.String()),
  channels: Type.Union([Type.Array(Type.String()), Type.Null()]),
  statuses: Type.Union([Type.Array(Type.String()), Type.Null()]),
  external_id_prefix: Type.Union([Type.String(), Type.Null()]),
  enabled: Type.Boolean(),
  disabled_reason: Type.Union([Type.String({ description: 'manual, gone (the endpoint answered 410) or failing (every attempt failed for WEBHOOK_DISABLE_AFTER)' }), Type.Null()]),
  disabled_at: Type.Union([DateTime, Type.Null()]),
  failing_since: Type.Union([DateTime, Type.Null()]),
  previous_secret_expires_at: Type.Union([DateTime, Type.Null()]),
  created_at: DateTime,
  updated_at: DateTime
})

const Delivery = Type.Object({
  id: Type.String(),
  webhook_id: Type.String(),
  event_type: Type.String(),
  event_id: Type.String(),
  state: Type.String(),
  attempts: Type.Integer(),
  last_status_code: Type.Union([Type.Integer(), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  last_attempt_at: Type.Union([DateTime, Type.Null()]),
  next_attempt_at: Type.Union([DateTime, Type.Null()]),
  created_at: DateTime,
  delivered_at: Type.Union([DateTime, Type.Null()]),
  payload: Type.Unknown()
})

const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) })
const CreateBody = Type.Object({
  url: Url,
  description: Type.Optional(Description),
  event_types: EventTypes,
  channels: Type.Optional(Channels),
  statuses: Type.Optional(Statuses),
  external_id_prefix: Type.Optional(Prefix)
}, { additionalProperties: false })
const PatchBody = Type.Object({
  url: Type.Optional(Url),
  description: Type.Optional(Type.Union([Description, Type.Null()])),
  event_types: Type.Optional(EventTypes),
  channels: Type.Optional(Type.Union([Channels, Type.Null()])),
  statuses: Type.Optional(Type.Union([Statuses, Type.Null()])),
  external_id_prefix: Type.Optional(Type.Union([Prefix, Type.Null()])),
  enabled: Type.Optional(Type.Boolean())
}, { additionalProperties: false, minProperties: 1 })

const iso = (d: Date | null): string | null => d === null ? null : d.toISOString()

function toSubscriptionBody (s: SubscriptionRecord): Static<typeof Subscription> {
  return {
    ...s,
    disabled_at: iso(s.disabled_at),
    failing_since: iso(s.failing_since),
    previous_secret_expires_at: s.previous_secret_expires_at !== null && s.previous_secret_expires_at.getTime() > Date.now() ? s.previous_secret_expires_at.toISOString() : null,
    created_at: s.created_at.toISOString(),
    updated_at: s.updated_at.toISOString()
  }
}

function toDeliveryBody (d: DeliveryRecord): Static<typeof Delivery> {
  return {
    ...d,
    last_attempt_at: iso(d.last_attempt_at),
    next_attempt_at: d.state === 'pending' ? d.next_attempt_at.toISOString() : null,
    created_at: d.created_at.toISOString(),
    delivered_at: iso(d.delivered_at)
  }
}

function notFound (id: string): AppError {
  return new AppError('subscription_not_found', `No subscription ${id.slice(0, 64)} for this API key`)
}

export interface SubscriptionRoutesOptions {
  /** Where writes run (the main pool). */
  db: Kysely<any>
  /** Where the listings run (the read pool, `DATABASE_READ_POOL_MAX`), so they never take the webhooks' connections. */
  readDb: Kysely<any>
  config: WebhooksOutConfig
}

export const subscriptionRoutes: FastifyPluginAsyncTypebox<SubscriptionRoutesOptions> = async (app, { db, readDb, config }) => {
  const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 501: ErrorBody, 503: ErrorBody }
  const requireKey = (): void => {
    if (config.secretsKeys.length === 0) throw new AppError('webhooks_not_configured', 'Outbound webhooks are off on this deployment: an operator must set WEBHOOK_SECRETS_KEY')
  }
  const owner = (request: { apiKeyName?: string }): string => request.apiKeyName ?? ''
  const checkUrl = (url: string | undefined): void => {
    const problem = url === undefined ? null : urlProblem(config, url)
    if (problem !== null) throw new AppError('invalid_webhook_url', problem)
  }

  app.post('/subscriptions', {
    schema: {
      summary: 'Subscribe a URL to status webhooks; the answer carries the signing secret, shown once',
      body: CreateBody,
      response: { 201: Type.Composite([Subscription, Type.Object({ secret: Type.String({ description: 'whsec_…, shown once' }) })]), ...errors }
    }
  }, async (request, reply) => {
    requireKey()
    checkUrl(request.body.url)
    const { subscription, secret } = await createSubscription(db, config.secretsKeys, owner(request), request.body)
    request.log.info({ subscription: subscription.id }, 'webhook subscription created')
    return await reply.code(201).send({ ...toSubscriptionBody(subscription), secret })
  })

  app.get('/subscriptions', {
    schema: { summary: "This API key's subscriptions", response: { 200: Type.Object({ data: Type.Array(Subscription) }), ...errors } }
  }, async (request) => ({ data: (await listSubscriptions(readDb, owner(request))).map(toSubscriptionBody) }))

  app.get('/subscriptions/:id', {
    schema: { summary: 'A subscription, with whether and why it is disabled', params: IdParams, response: { 200: Subscription, ...errors } }
  }, async (request) => {
    const s = await findSubscription(readDb, owner(request), request.params.id)
    if (s === undefined) throw notFound(request.params.id)
    return toSubscriptionBody(s)
  })

  app.patch('/subscriptions/:id', {
    schema: { summary: 'Change the URL, description, filter or enabled', params: IdParams, body: PatchBody, response: { 200: Subscription, ...errors } }
  }, async (request) => {
    checkUrl(request.body.url)
    const s = await updateSubscription(db, owner(request), request.params.id, request.body)
    if (s === undefined) throw notFound(request.params.id)
    return toSubscriptionBody(s)
  })

  app.delete('/subscriptions/:id', {
    schema: { summary: 'Delete a subscription and its deliveries', params: IdParams, response: errors }
  }, async (request, reply) => {
    if (!await deleteSubscription(db, owner(request), request.params.id)) throw notFound(request.params.id)
    // No body at all (the typed reply would serialise `null` as JSON).
    return await (reply as FastifyReply).code(204).send()
  })

  app.post('/subscriptions/:id/rotate-secret', {
    schema: {
      summary: 'Issue a new signing secret; the old one keeps signing for the overlap',
      params: IdParams,
      body: Type.Optional(Type.Object({ overlap_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400 })) }, { additionalProperties: false })),
      response: { 200: Type.Object({ secret: Type.String(), previous_secret_expires_at: Type.Union([DateTime, Type.Null()]) }), ...errors }
    }
  }, async (request) => {
    requireKey()
    const overlapMs = request.body?.overlap_seconds === undefined ? config.secretOverlapMs : request.body.overlap_seconds * 1000
    const r = await rotateSecret(db, config.secretsKeys, owner(request), request.params.id, overlapMs)
    if (r === undefined) throw notFound(request.params.id)
    request.log.info({ subscription: request.params.id }, 'webhook signing secret rotated')
    return { secret: r.secret, previous_secret_expires_at: iso(r.previousSecretExpiresAt) }
  })

  app.get('/subscriptions/:id/deliveries', {
    schema: {
      summary: "A subscription's deliveries, newest first, with keyset pagination",
      params: IdParams,
      querystring: Type.Object({
        state: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')])),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
        cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' }))
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ data: Type.Array(Delivery), next_cursor: Type.Union([Type.String(), Type.Null()]) }), ...errors }
    }
  }, async (request) => {
    const s = await findSubscription(readDb, owner(request), request.params.id)
    if (s === undefined) throw notFound(request.params.id)
    const limit = request.query.limit ?? 50
    const rows = await listDeliveries(readDb, s.id, { state: request.query.state, before: request.query.cursor === undefined ? undefined : BigInt(request.query.cursor), limit })
    return { data: rows.map(toDeliveryBody), next_cursor: rows.length === limit ? rows[rows.length - 1].id : null }
  })

  app.post('/subscriptions/:id/replay', {
    schema: {
      summary: 'Send finished deliveries again (same webhook-id): by ids, or created in [since, until)',
      params: IdParams,
      body: Type.Object({
        delivery_ids: Type.Optional(Type.Array(Type.String({ pattern: '^[0-9]{1,19}$' }), { minItems: 1, maxItems: 1000 })),
        since: Type.Optional(DateTime),
        until: Type.Optional(DateTime)
      }, { additionalProperties: false }),
      response: { 202: Type.Object({ requeued: Type.Integer() }), ...errors }
    }
  }, async (request, reply) => {
    const b = request.body
    if (b.delivery_ids === undefined && b.since === undefined) throw new AppError('invalid_payload', 'Give delivery_ids, or since (and optionally until)')
    const s = await findSubscription(db, owner(request), request.params.id)
    if (s === undefined) throw notFound(request.params.id)
    const requeued = await replayDeliveries(db, s.id, {
      ids: b.delivery_ids,
      since: b.since === undefined ? undefined : new Date(b.since),
      until: b.until === undefined ? undefined : new Date(b.until)
    })
    return await reply.code(202).send({ requeued })
  })
}
