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
 *
 * Timing, for both callers: an empty lookup is trusted only once the latest uncertain create is a
 * lease old (Twilio can accept a request after the client gave up on it), and a create starts only
 * within `CREATE_START_SHARE_OF_LEASE` of the lease its "attempt started" record renewed.
 */
import type { MessageInstance } from 'twilio/lib/rest/api/v2010/account/message.js'
import type { TwilioClient } from './twilio-rest.ts'

/**
 * How much of its lease a send may spend between asking for "attempt started" (which renews the
 * lease) and starting the create, by the sender's monotonic clock. The rest is for the request
 * itself (the fallback's lease is 3 x `TWILIO_REQUEST_TIMEOUT_MS` + 2 s, an idempotency key's
 * 2 x + 5 s) and for Twilio accepting it late: once the lease is out, another attempt may take
 * over, find nothing at Twilio and send (docs/fallback.md, rule 3).
 */
export const CREATE_START_SHARE_OF_LEASE = 0.5

/**
 * Runs `start`, the "attempt started" record that renews a send's lease, and says whether the
 * create may still begin: `stalledMs` is the time from before `start` was asked (so it covers every
 * moment the renewed lease can have run) when that exceeds `CREATE_START_SHARE_OF_LEASE` of
 * `leaseMs`, else `null`. With a `stalledMs` the caller sends nothing.
 */
export async function startWithinLease<T> (leaseMs: number, start: () => Promise<T>): Promise<{ value: T, stalledMs: number | null }> {
  const askedAt = performance.now()
  const value = await start()
  const elapsedMs = performance.now() - askedAt
  return { value, stalledMs: elapsedMs > leaseMs * CREATE_START_SHARE_OF_LEASE ? Math.round(elapsedMs) : null }
}

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
