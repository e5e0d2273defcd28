/**
 * TypeBox schemas shared by routes and checked against `openapi.yaml` by the contract test.
 */
import { Type, type Static } from '@sinclair/typebox'
import { KNOWN_STATUSES } from '../domain/status-precedence.ts'

export const ErrorBody = Type.Object({
  code: Type.String({ description: 'Stable machine-readable error code' }),
  message: Type.String({ description: 'What was wrong, for a human' })
}, { $id: 'Error' })

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()])
const DateTime = Type.String({ format: 'date-time' })

export const EngagementSummary = Type.Object({
  open_count: Type.Integer({ description: 'Distinct email.opened deliveries (a retried delivery counts once)' }),
  first_opened_at: Nullable(DateTime),
  click_count: Type.Integer({ description: 'Distinct email.clicked deliveries' }),
  first_clicked_at: Nullable(DateTime)
})

export const Message = Type.Object({
  sid: Type.String(),
  provider: Type.String(),
  channel: Type.String(),
  account_sid: Nullable(Type.String()),
  messaging_service_sid: Nullable(Type.String()),
  from: Nullable(Type.String()),
  to: Nullable(Type.String()),
  external_id: Nullable(Type.String()),
  metadata: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  status: Nullable(Type.String()),
  error_code: Nullable(Type.String()),
  error_message: Nullable(Type.String()),
  sent_at: Nullable(DateTime),
  delivered_at: Nullable(DateTime),
  read_at: Nullable(DateTime),
  failed_at: Nullable(DateTime),
  created_at: DateTime,
  updated_at: DateTime,
  // Email (Resend) fields: null for other channels.
  subject: Nullable(Type.String()),
  recipients: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'Every recipient of an email; `to` is the first' }),
  tags: Type.Unknown({ description: 'Resend tags as received, or null' }),
  bounced_at: Nullable(DateTime),
  complained_at: Nullable(DateTime),
  engagement: Type.Union([EngagementSummary, Type.Null()], { description: 'Opens and clicks of an email; null for other channels' })
})
export type MessageBody = Static<typeof Message>

export const MessageEvent = Type.Object({
  id: Type.String({ description: 'Monotonically increasing event id (decimal string)' }),
  status: Type.String(),
  channel: Type.String(),
  from: Nullable(Type.String()),
  to: Nullable(Type.String()),
  error_code: Nullable(Type.String()),
  error_message: Nullable(Type.String()),
  received_at: DateTime,
  carrier_at: Nullable(DateTime),
  source: Type.String(),
  params: Type.Record(Type.String(), Type.Unknown()),
  occurred_at: Nullable(Type.String({ format: 'date-time', description: "The provider's own event time (Resend created_at)" })),
  svix_id: Nullable(Type.String({ description: 'Resend delivery id (svix-id)' }))
})
export type MessageEventBody = Static<typeof MessageEvent>
/** A WhatsApp message's SMS fallback (docs/fallback.md). */
export const Fallback = Type.Object({
  state: Type.String({ description: 'pending, sending, sent, failed or skipped' }),
  reason: Nullable(Type.String({ description: 'Why skipped or failed: opted_out, no_sender, no_recipient, recipient_limit, no_body, twilio_error, retries_exhausted, opted_out_by_caller' })),
  sid: Nullable(Type.String({ description: 'SID of the fallback SMS once Twilio accepted it' })),
  status: Nullable(Type.String({ description: 'Current status of the fallback SMS' })),
  trigger_error_code: Nullable(Type.String({ description: 'The WhatsApp ErrorCode that called for the fallback' })),
  error_code: Nullable(Type.String({ description: 'Twilio error of the last failed attempt (e.g. 21610)' })),
  error_message: Nullable(Type.String()),
  attempts: Type.Integer(),
  created_at: DateTime,
  updated_at: DateTime
})
export type FallbackBody = Static<typeof Fallback>
/** What `GET /v1/messages/:sid` adds to a message: its fallback links. */
export const FallbackFields = Type.Object({
  fallback_enabled: Type.Boolean({ description: 'Whether a failed WhatsApp message may get an SMS fallback' }),
  fallback_of: Nullable(Type.String({ description: 'On a fallback SMS: the WhatsApp message it replaced' })),
  fallback: Type.Union([Fallback, Type.Null()], { description: 'On a WhatsApp message that was due a fallback: its state' })
})
export type FallbackFieldsBody = Static<typeof FallbackFields>

/** One open or click of an email. */
export const EngagementEntry = Type.Object({
  id: Type.String({ description: 'Monotonically increasing id (decimal string)' }),
  kind: Type.Union([Type.Literal('opened'), Type.Literal('clicked')]),
  occurred_at: DateTime,
  received_at: DateTime,
  link: Nullable(Type.String()),
  ip_address: Nullable(Type.String()),
  user_agent: Nullable(Type.String()),
  svix_id: Type.String()
})
export type EngagementEntryBody = Static<typeof EngagementEntry>

export const MessageSidParams = Type.Object({
  sid: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' })
})

export const MessageListQuery = Type.Object({
  status: Type.Optional(Type.Unsafe<string>({ type: 'string', enum: [...KNOWN_STATUSES] })),
  channel: Type.Optional(Type.Union(['sms', 'mms', 'whatsapp', 'email'].map((c) => Type.Literal(c)))),
  // No NUL: PostgreSQL text cannot hold it, so no stored value could match (a 400, not a 500).
  to: Type.Optional(Type.String({ minLength: 1, maxLength: 320, pattern: '^[^\\x00]+$' })),
  external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00]+$' })),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601 with seconds and a full offset (Z or +05:00), inclusive' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601 with seconds and a full offset (Z or +05:00), exclusive' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 }))
}, { additionalProperties: false })
