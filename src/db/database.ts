import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'
import type { FallbackReason, FallbackState } from '../domain/fallback-policy.ts'

/** Timestamps are written as `Date` and read back as `Date` (timestamptz). */
type Timestamp = ColumnType<Date, Date | string, Date | string>
/** A timestamp the database fills by default. */
type DefaultTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

/** The providers Tidings tracks. */
export type Provider = 'twilio' | 'resend'

/** `sms`, `mms` and `whatsapp` come from Twilio; `email` from Resend. */
export type Channel = 'sms' | 'mms' | 'whatsapp' | 'email'

/** Where an event came from: a provider's webhook, a reconciliation fetch, or our own REST API. */
export type EventSource = 'webhook' | 'reconcile' | 'api'

/** One row per provider message (Twilio `MessageSid`, Resend `email_id`). */
export interface MessagesTable {
  sid: string
  provider: Provider
  channel: Channel
  account_sid: string | null
  messaging_service_sid: string | null
  /** Sender; E.164 for phone channels, the `whatsapp:` prefix removed. */
  from_address: string | null
  /** Recipient; E.164 for phone channels, the `whatsapp:` prefix removed. */
  to_address: string | null
  /** Whether a failed WhatsApp message may get an SMS fallback (default on). */
  fallback: Generated<boolean>
  /** On a fallback SMS: the WhatsApp message it replaced. */
  fallback_of: string | null
  /** On a WhatsApp message: the SMS sent in its place. */
  fallback_sid: string | null
  /** Current status: the highest-ranked status received (see `src/domain/status-precedence.ts`). */
  status: string | null
  /** Rank of `status`; 0 while no ranked status has been received. */
  status_rank: Generated<number>
  error_code: string | null
  error_message: string | null
  body: string | null
  /** The caller's own id for the message (REST API). */
  external_id: string | null
  /** The caller's free-form JSON object (REST API). */
  metadata: ColumnType<Record<string, unknown> | null, string | null, string | null>
  sent_at: Timestamp | null
  delivered_at: Timestamp | null
  read_at: Timestamp | null
  failed_at: Timestamp | null
  created_at: DefaultTimestamp
  updated_at: DefaultTimestamp
  // Email (Resend) only; NULL or 0 for other channels.
  subject: ColumnType<string | null, string | null | undefined, string | null>
  /** Every recipient, in Resend's order; `to_address` is the first. */
  recipients: ColumnType<string[] | null, string[] | null | undefined, string[] | null>
  /** Resend `tags` as received. */
  tags: ColumnType<unknown, string | null | undefined, string | null>
  bounced_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  complained_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  first_opened_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  open_count: Generated<number>
  first_clicked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  click_count: Generated<number>
  /** Reconciliation: when the provider was last asked about this message, how often, and when Tidings stopped asking. */
  reconciled_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  reconcile_attempts: Generated<number>
  reconcile_gave_up_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  /** How often reconciliation looked a delivered WhatsApp message up again for its `read` (`RECONCILE_READ_WINDOW`). */
  reconcile_read_checks: Generated<number>
}

/** One row per distinct `(message_sid, message_status)`; `id` orders timelines and streams. */
export interface MessageEventsTable {
  /** bigint identity; read back as a decimal string. */
  id: ColumnType<string, never, never>
  message_sid: string
  message_status: string
  channel: Channel
  from_address: string | null
  to_address: string | null
  error_code: string | null
  error_message: string | null
  /** The full parameter set or payload as received. */
  raw: ColumnType<Record<string, unknown>, string, string>
  received_at: DefaultTimestamp
  /** Carrier's delivery-receipt time (Twilio `RawDlrDoneDate`), when present. */
  carrier_at: Timestamp | null
  source: EventSource
  /** The provider's delivery id (Resend `svix-id`), unique; NULL for Twilio. */
  svix_id: ColumnType<string | null, string | null | undefined, string | null>
  /** The provider's own time of the event (Resend `created_at`), when valid. */
  occurred_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** Email engagement kinds: they repeat, so they are logged here rather than as status events. */
export type EngagementKind = 'opened' | 'clicked'

/** One row per distinct Resend `email.opened`/`email.clicked` delivery (by `svix-id`). */
export interface EmailEngagementsTable {
  id: ColumnType<string, never, never>
  message_sid: string
  kind: EngagementKind
  svix_id: string
  /** When the open or click happened (`click.timestamp`, else the event's `created_at`). */
  occurred_at: Timestamp
  received_at: DefaultTimestamp
  link: string | null
  ip_address: string | null
  user_agent: string | null
  raw: ColumnType<Record<string, unknown>, string, string>
}

/** One row per WhatsApp message that was due a fallback (UNIQUE `original_sid`); see docs/fallback.md. */
export interface FallbacksTable {
  /** bigint identity; read back as a decimal string. */
  id: ColumnType<string, never, never>
  original_sid: string
  state: FallbackState
  /** Why it was skipped or failed (`FallbackReason`). */
  reason: FallbackReason | null
  /** The WhatsApp `ErrorCode` that called for the fallback. */
  trigger_error_code: string | null
  /** SMS recipient, E.164. */
  to_address: string | null
  /** Sender: a number, or a Messaging Service. */
  sms_from: string | null
  messaging_service_sid: string | null
  /** SID of the SMS, once Twilio accepted it. */
  fallback_sid: string | null
  /** Twilio error code of the last failed attempt (e.g. 21610), or the HTTP status/network code. */
  error_code: string | null
  error_message: string | null
  attempts: Generated<number>
  /** Start of the latest create whose outcome is unknown; set means "look before re-sending", and wait until it is a lease old before trusting an empty lookup. */
  attempt_started_at: Timestamp | null
  /** A worker holds the fallback until then. */
  lease_until: Timestamp | null
  /** Fencing token: each claim takes the next one; only its holder may start, complete or release. bigint, read back as a string. */
  lease_generation: ColumnType<string, never, string>
  job_id: string | null
  created_at: DefaultTimestamp
  updated_at: DefaultTimestamp
}
export type FallbackRow = Selectable<FallbacksTable>

/** `IdempotencyKeysTable.state`; see `src/db/idempotency.ts`. */
export type IdempotencyState = 'in_progress' | 'done' | 'unknown'

/** One row per `Idempotency-Key` of `POST /v1/messages`, per API key name, until `expires_at`. */
export interface IdempotencyKeysTable {
  api_key_name: string
  idempotency_key: string
  /** SHA-256 (hex) of the canonical JSON request body. */
  request_hash: string
  state: IdempotencyState
  /** An `in_progress` claim is held until then; afterwards a retry may take it over. */
  locked_until: Timestamp | null
  /** Start of the earliest attempt whose outcome is unknown. */
  attempt_started_at: Timestamp | null
  /** Fencing token: each claim takes the next one; only its holder may complete or release. bigint, read back as a string. */
  lease_generation: ColumnType<string, never, string>
  /** True when the current claim follows an attempt that may have reached Twilio. */
  ambiguous: Generated<boolean>
  /** The message sent under this key, once known. */
  message_sid: string | null
  response_status: number | null
  response_body: ColumnType<unknown, string | null, string | null>
  created_at: DefaultTimestamp
  expires_at: Timestamp
}
export type IdempotencyRow = Selectable<IdempotencyKeysTable>

/** A console browser session (`src/db/console-sessions.ts`); only the token's SHA-256 is stored. */
export interface ConsoleSessionsTable {
  token_hash: Buffer
  api_key_name: string
  /** SHA-256 of the API key the session was created with. */
  api_key_hash: Buffer
  created_at: DefaultTimestamp
  expires_at: Timestamp
}

/** The statistics rollup (`src/db/stats-rollup.ts`): one row per hour, channel, outcome and delivery-time bucket. */
export interface StatsHourlyTable {
  hour: Timestamp
  channel: Channel
  outcome: 'delivered' | 'failed' | 'pending'
  latency_bucket: number
  messages: number
  whatsapp_read: number
  email_opened: number
  fallbacks_sent: number
  fallbacks_recovered: number
}

/** Failed messages per hour, channel and error code (`''`: none). */
export interface StatsHourlyErrorsTable {
  hour: Timestamp
  channel: Channel
  error_code: string
  messages: number
}

/** One row: hours before `rolled_until` are in the rollup. */
export interface StatsRollupStateTable {
  id: Generated<boolean>
  rolled_until: Timestamp | null
  refreshed_at: Timestamp | null
}

export interface Database {
  console_sessions: ConsoleSessionsTable
  stats_hourly: StatsHourlyTable
  stats_hourly_errors: StatsHourlyErrorsTable
  stats_rollup_state: StatsRollupStateTable
  messages: MessagesTable
  idempotency_keys: IdempotencyKeysTable
  fallbacks: FallbacksTable
  message_events: MessageEventsTable
  email_engagements: EmailEngagementsTable
}

export type MessageRow = Selectable<MessagesTable>

/**
 * Every column of `messages`, in a fixed order: for statements that return whole rows without `*`
 * (prepared statements must not change their result type when a migration adds a column). The
 * `satisfies` makes the type check fail when a column is added to `MessagesTable` and not here.
 */
export const MESSAGE_COLUMNS = Object.keys({
  sid: true,
  provider: true,
  channel: true,
  account_sid: true,
  messaging_service_sid: true,
  from_address: true,
  to_address: true,
  fallback: true,
  fallback_of: true,
  fallback_sid: true,
  status: true,
  status_rank: true,
  error_code: true,
  error_message: true,
  body: true,
  external_id: true,
  metadata: true,
  sent_at: true,
  delivered_at: true,
  read_at: true,
  failed_at: true,
  created_at: true,
  updated_at: true,
  subject: true,
  recipients: true,
  tags: true,
  bounced_at: true,
  complained_at: true,
  first_opened_at: true,
  open_count: true,
  first_clicked_at: true,
  click_count: true,
  reconciled_at: true,
  reconcile_attempts: true,
  reconcile_gave_up_at: true,
  reconcile_read_checks: true
} satisfies Record<keyof MessagesTable, true>) as ReadonlyArray<keyof MessagesTable>

/**
 * The columns of a message that recording reads (its status state and account) and its hooks read
 * (the fallback: channel, addresses, opt-in; outbound webhooks: `external_id`, `metadata`). The
 * recording statement returns only these: each further column was parsed for every message of
 * every batch (dates into `Date`s) and read by nobody.
 */
export const RECORDING_COLUMNS = [
  'sid', 'channel', 'account_sid', 'from_address', 'to_address', 'fallback', 'external_id', 'metadata',
  'status', 'status_rank', 'error_code', 'error_message', 'sent_at', 'delivered_at', 'read_at', 'failed_at',
  'bounced_at', 'complained_at'
] as const satisfies ReadonlyArray<keyof MessageRow>

/** A message as recording locked it: `RECORDING_COLUMNS` of its row. */
export type RecordingMessage = Pick<MessageRow, typeof RECORDING_COLUMNS[number]>

export type NewMessageRow = Insertable<MessagesTable>
export type MessageUpdate = Updateable<MessagesTable>
export type MessageEventRow = Selectable<MessageEventsTable>
export type NewMessageEventRow = Insertable<MessageEventsTable>
export type EmailEngagementRow = Selectable<EmailEngagementsTable>
