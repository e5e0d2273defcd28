/**
 * Resolving an uncertain send. Twilio has no idempotency key on message creation
 * (https://www.twilio.com/docs/messaging/api/message-resource), so when an attempt may have reached
 * Twilio without its result being recorded (a timeout, a 5xx, a dropped connection, a process that
 * died mid-request), the retry first lists the messages to that number from that sender and adopts
 * a match created since the attempt began instead of sending a second copy. Used by the SMS
 * fallback worker and by `POST /v1/messages` with an `Idempotency-Key`.
 *
 * The list is filtered by `To` (and `From`) only, never by `DateSent`: a message still `queued` or
 * `accepted` has no `date_sent` yet, and it is exactly the one an interrupted attempt leaves behind.
 * Twilio lists newest first, so the window (`date_created` since the attempt began, less a margin)
 * and the text are compared here.
 */
import type { MessageInstance } from 'twilio/lib/rest/api/v2010/account/message.js'
import type { TwilioClient } from './twilio-rest.ts'

/** Messages listed per lookup (one page): more to one number from one sender within minutes is not expected. */
export const LOOKUP_PAGE_SIZE = 200

/** How far back a lookup reaches before the attempt began: Tidings' and Twilio's clocks differ. */
export const LOOKUP_MARGIN_MS = 5 * 60_000

export interface EarlierSendQuery {
  /** The recipient exactly as sent (`+E.164` or `whatsapp:+E.164`). */
  to: string
  sender: { from: string } | { messagingServiceSid: string }
  /** The text sent; `undefined` for a template send, whose rendered text is not known here. */
  body: string | undefined
  /** When the uncertain attempt began. */
  startedAt: Date
  /** True when the message already belongs to another send (another fallback, another key). */
  isTaken: (sid: string) => Promise<boolean>
}

/**
 * The oldest message at Twilio that the uncertain attempt may have created, or `undefined`.
 * @throws the twilio client's error when the list call fails (the caller retries later).
 */
export async function findEarlierSend (client: TwilioClient, q: EarlierSendQuery): Promise<MessageInstance | undefined> {
  const since = new Date(q.startedAt.getTime() - LOOKUP_MARGIN_MS)
  const listed = await client.messages.list({
    to: q.to,
    ...('from' in q.sender ? { from: q.sender.from } : {}),
    limit: LOOKUP_PAGE_SIZE
  })
  const matches = listed
    .filter((m) => m.to === q.to)
    .filter((m) => 'from' in q.sender ? m.from === q.sender.from : m.messagingServiceSid === q.sender.messagingServiceSid)
    .filter((m) => q.body === undefined || m.body === q.body)
    .filter((m) => m.dateCreated !== null && m.dateCreated.getTime() >= since.getTime())
    .sort((a, b) => (a.dateCreated?.getTime() ?? 0) - (b.dateCreated?.getTime() ?? 0))
  for (const m of matches) {
    if (!await q.isTaken(m.sid)) return m
  }
  return undefined
}
