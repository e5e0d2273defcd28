/**
 * Fallback policy: when a failed WhatsApp message gets the same text by SMS. Pure functions; the
 * database facts they need (the message's flag, how many fallbacks the recipient already got) are
 * gathered by `src/fallback/on-recorded.ts`, which applies the decision inside the transaction that
 * recorded the failure.
 *
 * Which failures SMS can fix comes from Twilio's error catalogue
 * (https://www.twilio.com/docs/api/errors, see shared/reference/twilio.md): 63049 Meta chose not
 * to deliver a marketing template, 63016 outside the 24-hour window, 63024 not a WhatsApp user,
 * 63003 channel could not find the recipient, 63032 Meta experiment group. Rate limits (63018) and
 * template/configuration errors (63005, 63013, 63021) are not fixed by SMS.
 */
import type { Channel } from '../db/database.ts'
import { FAILURE_STATUSES } from './status-precedence.ts'

/** Who sends the fallback SMS: a fixed number, or a Messaging Service that picks one. */
export type SmsSender = { from: string } | { messagingServiceSid: string }

/** A fallback's lifecycle: `pending` → `sending` → `sent` | `failed` | `skipped`. */
export type FallbackState = 'pending' | 'sending' | 'sent' | 'failed' | 'skipped'

/**
 * Why a fallback was skipped or failed:
 * - `opted_out`: the message's `fallback` flag is off;
 * - `no_sender`: no SMS sender is configured for the WhatsApp sender;
 * - `no_recipient`: the failure did not say who the recipient was;
 * - `recipient_limit`: the recipient already got `FALLBACK_MAX_PER_RECIPIENT_PER_DAY` fallbacks in 24 h;
 * - `no_body`: neither Tidings nor Twilio has the message's text;
 * - `twilio_error`: Twilio refused the SMS for good (e.g. 21610 unsubscribed, 21211 invalid number);
 * - `opted_out_by_caller`: the caller turned the flag off (`PUT`/`POST /v1/messages`) after the
 *   fallback was decided and before its SMS left;
 * - `retries_exhausted`: `FALLBACK_MAX_ATTEMPTS` attempts hit rate limits, 5xx or timeouts.
 */
export type FallbackReason = 'opted_out' | 'no_sender' | 'no_recipient' | 'recipient_limit' | 'no_body' | 'twilio_error' | 'retries_exhausted' | 'opted_out_by_caller'

/** What one recorded status event says, as the policy needs it. */
export interface RecordedFailureFacts {
  channel: Channel
  /** The event's status (`MessageStatus`). */
  status: string
  errorCode: string | null
  /** The message's current status before and after this event (`applyEvent`). */
  statusBefore: string | null
  statusAfter: string | null
}

/**
 * True when this event calls for a fallback: a WhatsApp message, a `failed`/`undelivered` event
 * that *advanced* the current status (so a failure reported after `delivered` or `read`, a
 * duplicate, or a late `undelivered` after `failed` does not count), with an error code SMS can fix.
 */
export function isFallbackDue (facts: RecordedFailureFacts, errorCodes: ReadonlySet<string>): boolean {
  return facts.channel === 'whatsapp' &&
    FAILURE_STATUSES.has(facts.status) &&
    facts.statusAfter === facts.status &&
    facts.statusBefore !== facts.statusAfter &&
    facts.errorCode !== null &&
    errorCodes.has(facts.errorCode)
}

/**
 * The SMS sender for a WhatsApp sender: its entry in `FALLBACK_SMS_FROM_MAP`, else the default
 * (`FALLBACK_SMS_FROM`, else `FALLBACK_MESSAGING_SERVICE_SID`), else `undefined`.
 * @param whatsappFrom - the WhatsApp sender, E.164 without `whatsapp:` (as stored).
 */
export function senderFor (
  whatsappFrom: string | null,
  config: { defaultSender: SmsSender | undefined, senderByWhatsAppFrom: ReadonlyMap<string, SmsSender> }
): SmsSender | undefined {
  return (whatsappFrom === null ? undefined : config.senderByWhatsAppFrom.get(whatsappFrom)) ?? config.defaultSender
}

/** The facts a due fallback is decided on. */
export interface FallbackFacts {
  /** The message's `fallback` flag (on unless the sender opted out). */
  optedIn: boolean
  /** The recipient, E.164. */
  to: string | null
  sender: SmsSender | undefined
  /** Fallbacks to this recipient in the last 24 h that were or will be sent (not skipped or failed). */
  recentFallbacksToRecipient: number
}

export type FallbackDecision =
  | { action: 'send', sender: SmsSender }
  | { action: 'skip', reason: 'opted_out' | 'no_sender' | 'no_recipient' | 'recipient_limit' }

/**
 * Decides a due fallback. Checked in this order, so the recorded reason is the first that applies:
 * opt-out, recipient, sender, then the per-recipient daily cost guard.
 */
export function decideFallback (facts: FallbackFacts, maxPerRecipientPerDay: number): FallbackDecision {
  if (!facts.optedIn) return { action: 'skip', reason: 'opted_out' }
  if (facts.to === null) return { action: 'skip', reason: 'no_recipient' }
  if (facts.sender === undefined) return { action: 'skip', reason: 'no_sender' }
  if (facts.recentFallbacksToRecipient >= maxPerRecipientPerDay) return { action: 'skip', reason: 'recipient_limit' }
  return { action: 'send', sender: facts.sender }
}

/**
 * The fallback's recipient: the WhatsApp recipient's number, which is already stored without the
 * `whatsapp:` prefix (`normalizeAddress`), stripped again in case it came from elsewhere.
 */
export function smsRecipientOf (whatsappTo: string): string {
  return whatsappTo.replace(/^whatsapp:/i, '')
}
