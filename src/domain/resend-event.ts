/**
 * Turning a verified Resend webhook payload into what Tidings records.
 * Payload: `{ type, created_at, data: { email_id, from, to: [..], subject, tags?, bounce?, click?,
 * failed?, suppressed? } }` (https://resend.com/docs/dashboard/webhooks/event-types).
 *
 * - Status events (`email.sent`, `email.delivered`, ...) become an `IncomingEvent` for
 *   `recordEvents`, keeping the event type as Resend spells it (`email.delivered`).
 * - `email.opened` / `email.clicked` repeat for one email: they become an engagement entry.
 * - Any other type (`contact.*`, `domain.*`, `suppression.*`, inbound `email.received`, or a type
 *   Resend adds later) is acknowledged and not stored: a non-2xx would be retried for a day.
 */
import type { EngagementKind } from '../db/database.ts'
import { AppError } from '../errors.ts'
import { toStorable, type NormalizeReason } from './storable.ts'
import type { IncomingEvent, MessageIdentity } from '../ingest/record-events.ts'
import { RESEND_STATUS_RANK } from './status-precedence.ts'

/** A Resend `email_id` as the read API accepts it (Resend's are UUIDs). */
const EMAIL_ID = /^[A-Za-z0-9_-]{1,64}$/

const ENGAGEMENT_KIND: Readonly<Record<string, EngagementKind>> = Object.freeze({
  'email.opened': 'opened',
  'email.clicked': 'clicked'
})

/** One distinct open or click (by `svix-id`), for the engagement log. */
export interface IncomingEngagement {
  message: MessageIdentity
  kind: EngagementKind
  /** Svix delivery id: a retried delivery has the same one and is counted once. */
  svixId: string
  /** When the open or click happened. */
  occurredAt: Date
  receivedAt: Date
  link: string | null
  ipAddress: string | null
  userAgent: string | null
  raw: Record<string, unknown>
}

export type ResendDelivery =
  | { kind: 'status', event: IncomingEvent }
  | { kind: 'engagement', engagement: IncomingEngagement }
  | { kind: 'ignored', type: string }

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

function optionalString (obj: Json, field: string, path: string): string | null {
  const value = obj[field]
  if (value === undefined || value === null) return null
  if (typeof value !== 'string') throw new AppError('invalid_payload', `${path}.${field} must be a string`)
  const trimmed = value.trim()
  return trimmed === '' ? null : trimmed
}

function optionalObject (obj: Json, field: string, path: string): Json {
  const value = obj[field]
  if (value === undefined || value === null) return {}
  if (!isObject(value)) throw new AppError('invalid_payload', `${path}.${field} must be an object`)
  return value
}

/** Earliest provider time taken as real: Resend did not exist before it. */
const EARLIEST_PROVIDER_TIME = Date.UTC(2000, 0, 1)
/** Clock skew allowed into the future of the receive time. */
const MAX_FUTURE_SKEW_MS = 24 * 3600_000

/**
 * An ISO 8601 time as Resend sends it (`2024-11-22T23:41:12.126Z`), or `null` when not valid.
 * @param receivedAt - when given, a time before 2000 or more than a day after it is impossible
 *   for an event and also `null` (`9999-12-31T23:59:59-01:00` is year 10000 in UTC, which the
 *   API's date-time format cannot carry); `onImplausible` is then called.
 */
export function parseResendTime (value: unknown, receivedAt?: Date, onImplausible?: () => void): Date | null {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) return null
  const ms = Date.parse(value)
  if (!Number.isFinite(ms)) return null
  if (receivedAt !== undefined && (ms < EARLIEST_PROVIDER_TIME || ms > receivedAt.getTime() + MAX_FUTURE_SKEW_MS)) {
    onImplausible?.()
    return null
  }
  return new Date(ms)
}

function recipientsOf (data: Json): string[] {
  const to = data.to
  if (to === undefined || to === null) return []
  const list = Array.isArray(to) ? to : [to]
  if (!list.every((r) => typeof r === 'string')) throw new AppError('invalid_payload', 'data.to must be a list of addresses')
  return (list as string[]).map((r) => r.trim()).filter((r) => r !== '')
}

/** `[code, message]` of a failure status, from the event's own block. */
function errorOf (type: string, data: Json): [string | null, string | null] {
  switch (type) {
    case 'email.bounced': {
      const bounce = optionalObject(data, 'bounce', 'data')
      const kind = [optionalString(bounce, 'type', 'data.bounce'), optionalString(bounce, 'subType', 'data.bounce')].filter((s) => s !== null)
      return [kind.length > 0 ? kind.join('/') : null, optionalString(bounce, 'message', 'data.bounce')]
    }
    case 'email.failed':
      return [optionalString(optionalObject(data, 'failed', 'data'), 'reason', 'data.failed'), null]
    case 'email.suppressed': {
      const suppressed = optionalObject(data, 'suppressed', 'data')
      return [optionalString(suppressed, 'type', 'data.suppressed'), optionalString(suppressed, 'message', 'data.suppressed')]
    }
    default:
      return [null, null]
  }
}

/**
 * Classifies and normalises one verified delivery.
 * @param payload - the parsed JSON body (signature already checked).
 * @param svixId - the delivery's `svix-id` header.
 * @param receivedAt - when Tidings received it; the fallback when `created_at` is not valid or
 *   impossible (see `parseResendTime`).
 * @param onNormalized - called for each kind of change made to store it (`toStorable`, times).
 * @throws {AppError} `invalid_payload` naming the field when the body is not a Resend event, holds
 *   NUL or nests too deep (`RefusedInput`).
 */
export function parseResendDelivery (received: unknown, svixId: string, receivedAt: Date, onNormalized: (reason: NormalizeReason) => void = () => {}): ResendDelivery {
  if (!isObject(received)) throw new AppError('invalid_payload', 'The body must be a JSON object')
  const payload = toStorable(received, onNormalized)
  const time = (value: unknown): Date | null => parseResendTime(value, receivedAt, () => { onNormalized('implausible_time') })
  const type = payload.type
  if (typeof type !== 'string' || type === '') throw new AppError('invalid_payload', 'type is required')
  const isStatus = Object.hasOwn(RESEND_STATUS_RANK, type)
  const engagementKind = Object.hasOwn(ENGAGEMENT_KIND, type) ? ENGAGEMENT_KIND[type] : undefined
  if (!isStatus && engagementKind === undefined) return { kind: 'ignored', type: type.slice(0, 100) }

  const data = payload.data
  if (!isObject(data)) throw new AppError('invalid_payload', 'data must be an object')
  const sid = data.email_id
  if (typeof sid !== 'string' || !EMAIL_ID.test(sid)) throw new AppError('invalid_payload', 'data.email_id must be a Resend email id')
  const recipients = recipientsOf(data)
  const tags = data.tags === undefined || data.tags === null ? null : data.tags
  const message: MessageIdentity = {
    provider: 'resend',
    sid,
    channel: 'email',
    accountSid: null,
    messagingServiceSid: null,
    from: optionalString(data, 'from', 'data'),
    to: recipients[0] ?? null,
    email: { subject: optionalString(data, 'subject', 'data'), recipients, tags }
  }
  const eventTime = time(payload.created_at)

  if (engagementKind !== undefined) {
    const click = engagementKind === 'clicked' ? optionalObject(data, 'click', 'data') : {}
    return {
      kind: 'engagement',
      engagement: {
        message,
        kind: engagementKind,
        svixId,
        occurredAt: time(click.timestamp) ?? eventTime ?? receivedAt,
        receivedAt,
        link: optionalString(click, 'link', 'data.click'),
        ipAddress: optionalString(click, 'ipAddress', 'data.click'),
        userAgent: optionalString(click, 'userAgent', 'data.click'),
        raw: payload
      }
    }
  }

  const [errorCode, errorMessage] = errorOf(type, data)
  return {
    kind: 'status',
    event: {
      ...message,
      status: type,
      errorCode,
      errorMessage,
      raw: payload,
      receivedAt,
      carrierAt: null,
      source: 'webhook',
      occurredAt: eventTime,
      svixId
    }
  }
}
