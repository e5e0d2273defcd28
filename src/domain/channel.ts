/**
 * Channel detection and address normalisation for Twilio messages.
 * Facts: WhatsApp addresses carry a `whatsapp:` prefix (`From=whatsapp:+14155238886`), MMS
 * message SIDs start with `MM`, SMS and WhatsApp SIDs with `SM`
 * (https://www.twilio.com/docs/messaging/api/message-resource).
 */
import type { Channel } from '../db/database.ts'

/** Twilio message SID: `SM` or `MM` followed by 32 hex digits. */
export const TWILIO_MESSAGE_SID = /^(SM|MM)[0-9a-fA-F]{32}$/

const WHATSAPP_PREFIX = /^whatsapp:/i

/**
 * The channel of a Twilio message from its addresses and SID: a `whatsapp:` prefix (or
 * `ChannelPrefix=whatsapp`) means WhatsApp; an `MM…` SID means MMS; otherwise SMS.
 */
export function detectTwilioChannel (input: { sid: string, from?: string, to?: string, channelPrefix?: string }): Channel {
  if (
    WHATSAPP_PREFIX.test(input.from ?? '') ||
    WHATSAPP_PREFIX.test(input.to ?? '') ||
    input.channelPrefix?.toLowerCase() === 'whatsapp'
  ) return 'whatsapp'
  if (input.sid.startsWith('MM')) return 'mms'
  return 'sms'
}

/**
 * An address as stored: the `whatsapp:` prefix removed and surrounding space trimmed, so the
 * E.164 number of a WhatsApp recipient matches the same number's SMS. `undefined`/empty gives `null`.
 */
export function normalizeAddress (address: string | undefined): string | null {
  if (address === undefined) return null
  const stripped = address.trim().replace(WHATSAPP_PREFIX, '')
  return stripped === '' ? null : stripped
}

/**
 * A phone number or e-mail address made safe for logs: keeps the country code's first digits and
 * the last two, e.g. `+14155550100` → `+141******00`.
 */
export function maskAddress (address: string | null | undefined): string | null {
  if (address === null || address === undefined || address === '') return null
  const plain = address.replace(WHATSAPP_PREFIX, '')
  const at = plain.indexOf('@')
  if (at > 0) return `${plain[0]}***${plain.slice(at)}`
  if (plain.length <= 6) return '*'.repeat(plain.length)
  return `${plain.slice(0, 4)}${'*'.repeat(plain.length - 6)}${plain.slice(-2)}`
}
