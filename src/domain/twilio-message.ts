/**
 * A Twilio Message resource (https://www.twilio.com/docs/messaging/api/message-resource), as
 * returned by `messages.create`, `messages(sid).fetch()` and `messages.list`, turned into an event
 * for `recordEvents`. No status callback is ever sent for a message's initial status, and a
 * missed callback can only be recovered from the resource, so these are events like a callback's.
 */
import type { EventSource } from '../db/database.ts'
import type { IncomingEvent } from '../ingest/record-events.ts'
import { detectTwilioChannel, normalizeAddress } from './channel.ts'

/** The parts of a twilio-node `MessageInstance` an event needs. */
export interface TwilioMessageResource {
  sid: string
  status: string
  accountSid: string
  messagingServiceSid: string | null
  from: string | null
  to: string
  /** Twilio sends 0 or null when there is no error. */
  errorCode: number | null
  errorMessage: string | null
  /** When Twilio last changed the message: closer to when the status happened than "now". */
  dateUpdated?: Date | null
  /** twilio-node's `toJSON()`: the whole resource, kept as the event's `raw`. */
  toJSON?: () => unknown
}

/**
 * @param source - `api` for the create response (our own send), `reconcile` for a fetch or list.
 * @param receivedAt - when Tidings read the resource.
 */
export function twilioMessageToEvent (m: TwilioMessageResource, source: Extract<EventSource, 'api' | 'reconcile'>, receivedAt: Date = new Date()): IncomingEvent {
  const json = m.toJSON?.()
  return {
    provider: 'twilio',
    sid: m.sid,
    status: m.status,
    channel: detectTwilioChannel({ sid: m.sid, from: m.from ?? undefined, to: m.to }),
    accountSid: m.accountSid,
    messagingServiceSid: m.messagingServiceSid,
    from: normalizeAddress(m.from ?? undefined),
    to: normalizeAddress(m.to),
    errorCode: m.errorCode === null || m.errorCode === 0 ? null : String(m.errorCode),
    errorMessage: m.errorMessage,
    raw: typeof json === 'object' && json !== null
      ? json as Record<string, unknown>
      : { MessageSid: m.sid, MessageStatus: m.status, AccountSid: m.accountSid, MessagingServiceSid: m.messagingServiceSid, From: m.from, To: m.to },
    receivedAt,
    carrierAt: null,
    occurredAt: m.dateUpdated ?? undefined,
    source
  }
}
