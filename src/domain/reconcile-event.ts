/**
 * What reconciliation found at the provider, as an event for `recordEvents` (`source: reconcile`).
 *
 * - Twilio: the Message resource (`client.messages(sid).fetch()`): `twilioMessageToEvent` in
 *   `twilio-message.ts`, with `source: reconcile`.
 * - Resend: the retrieved email (`GET /emails/{id}`,
 *   https://resend.com/docs/api-reference/emails/retrieve-email): `last_event` is an event type
 *   without its `email.` prefix. `opened`/`clicked` mean the email was delivered (engagement itself
 *   comes only from webhooks); a value Tidings does not rank (`queued`, `canceled`, one Resend adds
 *   later) gives no event.
 */
import type { IncomingEvent } from '../ingest/record-events.ts'
import type { ResendEmail } from '../providers/resend-rest.ts'
import { RESEND_STATUS_RANK } from './status-precedence.ts'

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
