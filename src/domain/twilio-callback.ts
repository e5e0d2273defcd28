/**
 * Turning a verified Twilio status callback into an `IncomingEvent`.
 * Parameters: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
 */
import { AppError } from '../errors.ts'
import { toStorable, type NormalizeReason } from './storable.ts'
import type { IncomingEvent } from '../ingest/record-events.ts'
import { detectTwilioChannel, normalizeAddress, TWILIO_MESSAGE_SID } from './channel.ts'

const STATUS_VALUE = /^[A-Za-z_-]{1,64}$/

function single (params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string') {
    throw new AppError('invalid_payload', `${name} must appear once in the callback`)
  }
  return value
}

function optional (params: Record<string, unknown>, name: string): string | null {
  const value = single(params, name)
  return value === undefined || value === '' ? null : value
}

/**
 * Parses Twilio's `RawDlrDoneDate` (`YYMMDDhhmm`, the carrier's receipt time, UTC).
 * @returns the time, or `null` when absent or not a valid date.
 */
export function parseRawDlrDoneDate (value: string | null): Date | null {
  if (value === null) return null
  const m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(value)
  if (m === null) return null
  const [year, month, day, hour, minute] = m.slice(1).map(Number)
  const date = new Date(Date.UTC(2000 + year, month - 1, day, hour, minute))
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59) return null
  return date
}

/**
 * Builds the event for one verified status callback.
 * @param params - every parameter received (already signature-checked).
 * @param receivedAt - when Tidings received it.
 * @throws {AppError} `invalid_payload` naming the field when `MessageSid` is not a Twilio message
 *   SID, `MessageStatus` is missing or malformed, a field appears more than once, or a value
 *   contains NUL.
 * @param onNormalized - called for each kind of change made to store it (`toStorable`).
 */
export function twilioCallbackToEvent (received: Record<string, unknown>, receivedAt: Date, onNormalized?: (reason: NormalizeReason) => void): IncomingEvent {
  const params = toStorable(received, onNormalized)
  const sid = single(params, 'MessageSid') ?? single(params, 'SmsSid')
  if (sid === undefined || sid === '') throw new AppError('invalid_payload', 'MessageSid is required')
  if (!TWILIO_MESSAGE_SID.test(sid)) throw new AppError('invalid_payload', 'MessageSid must be a Twilio message SID (SM or MM followed by 32 hex digits)')
  const status = single(params, 'MessageStatus') ?? single(params, 'SmsStatus')
  if (status === undefined || status === '') throw new AppError('invalid_payload', 'MessageStatus is required')
  if (!STATUS_VALUE.test(status)) throw new AppError('invalid_payload', 'MessageStatus must be a status name such as "delivered"')
  const from = single(params, 'From')
  const to = single(params, 'To')
  return {
    provider: 'twilio',
    sid,
    status,
    channel: detectTwilioChannel({ sid, from, to, channelPrefix: single(params, 'ChannelPrefix') }),
    accountSid: optional(params, 'AccountSid'),
    messagingServiceSid: optional(params, 'MessagingServiceSid'),
    from: normalizeAddress(from),
    to: normalizeAddress(to),
    errorCode: optional(params, 'ErrorCode'),
    errorMessage: optional(params, 'ErrorMessage') ?? optional(params, 'ChannelStatusMessage'),
    raw: params, // toStorable's copy, not the parser's object
    receivedAt,
    carrierAt: parseRawDlrDoneDate(optional(params, 'RawDlrDoneDate')),
    source: 'webhook'
  }
}
