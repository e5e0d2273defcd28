/**
 * What reconciliation found at the provider, as an event for `recordEvents` (`source: reconcile`).
 *
 * - Twilio: the Message resource (`client.messages(sid).fetch()`,
 *   https://www.twilio.com/docs/messaging/api/message-resource): its `status` is a `MessageStatus`
 *   like a callback's, with `errorCode`/`errorMessage` on failures.
 * - Resend: the retrieved email (`GET /emails/{id}`,
 *   https://resend.com/docs/api-reference/emails/retrieve-email): `last_event` is an event type
 *   without its `email.` prefix. `opened`/`clicked` mean the email was delivered (engagement itself
 *   comes only from webhooks); a value Tidings does not rank (`queued`, `canceled`, one Resend adds
 *   later) gives no event.
 */
import type { IncomingEvent } from '../ingest/record-events.ts'
import type { ResendEmail } from '../providers/resend-rest.ts'
import { detectTwilioChannel, normalizeAddress } from './channel.ts'
import { RESEND_STATUS_RANK } from './status-precedence.ts'

/** The parts of a twilio-node `MessageInstance` reconciliation reads. */
export interface TwilioMessageResource {
  sid: string
  status: string
  accountSid: string
  messagingServiceSid: string | null
  from: string | null
  to: string
  errorCode: number | null
  errorMessage: string | null
  dateUpdated: Date | null
  /** The resource as JSON (twilio-node's `toJSON()`), kept as the event's `raw`. */
  toJSON: () => unknown
}

export function twilioResourceToEvent (m: TwilioMessageResource, receivedAt: Date): IncomingEvent {
  const raw = m.toJSON()
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
    raw: typeof raw === 'object' && raw !== null ? raw as Record<string, unknown> : { sid: m.sid, status: m.status },
    receivedAt,
    carrierAt: null,
    // When Twilio last changed the message: closer to when the status happened than now.
    occurredAt: m.dateUpdated,
    source: 'reconcile'
  }
}

/** The status event a retrieved email stands for, or `undefined` when `last_event` is not a ranked status. */
export function resendStatusOf (lastEvent: string | null): string | undefined {
  if (lastEvent === null) return undefined
  const type = lastEvent === 'opened' || lastEvent === 'clicked' ? 'email.delivered' : `email.${lastEvent}`
  return Object.hasOwn(RESEND_STATUS_RANK, type) ? type : undefined
}

export function resendEmailToEvent (email: ResendEmail, receivedAt: Date): IncomingEvent | undefined {
  const status = resendStatusOf(email.lastEvent)
  if (status === undefined) return undefined
  return {
    provider: 'resend',
    sid: email.id,
    status,
    channel: 'email',
    accountSid: null,
    messagingServiceSid: null,
    from: email.from,
    to: email.to[0] ?? null,
    // The retrieved email says that it bounced or failed, not why: the webhook carries the reason.
    errorCode: null,
    errorMessage: null,
    raw: email.raw,
    receivedAt,
    carrierAt: null,
    source: 'reconcile',
    email: { subject: email.subject, recipients: email.to, tags: email.raw.tags ?? null }
  }
}
