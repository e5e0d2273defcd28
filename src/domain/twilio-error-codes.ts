/**
 * What common Twilio error codes mean, for `GET /v1/stats` (failures by error code). Short
 * paraphrases of Twilio's error catalogue (https://www.twilio.com/docs/api/errors/<code>); codes
 * not listed here are reported without a meaning.
 */
export const TWILIO_ERROR_MEANINGS: Readonly<Record<string, string>> = Object.freeze({
  20003: 'Authentication failed (account SID or auth token)',
  20429: 'Too many requests',
  21211: "Invalid 'To' phone number",
  21408: 'Permission to send to this region is not enabled',
  21610: 'Recipient has unsubscribed (replied STOP)',
  21614: "'To' number is not a valid mobile number",
  30001: 'Queue overflow',
  30002: 'Account suspended',
  30003: 'Unreachable destination handset',
  30004: 'Message blocked',
  30005: 'Unknown destination handset',
  30006: 'Landline or unreachable carrier',
  30007: 'Message filtered by the carrier',
  30008: 'Unknown error',
  30034: 'Message from an unregistered US A2P 10DLC number',
  63003: 'WhatsApp: channel could not find the To address',
  63005: 'WhatsApp: channel did not accept the content',
  63013: 'WhatsApp: channel policy violation',
  63016: 'WhatsApp: free-form message outside the 24-hour window (use a template)',
  63018: 'WhatsApp: channel rate limit exceeded',
  63021: 'WhatsApp: channel invalid content',
  63024: 'WhatsApp: invalid recipient (not a WhatsApp user, or has not accepted the terms)',
  63032: 'WhatsApp: cannot send to this user (Meta experiment group)',
  63049: 'WhatsApp: Meta chose not to deliver this marketing template'
})

/** The meaning of a Twilio `ErrorCode`, or `null` when Tidings does not know it. */
export function twilioErrorMeaning (code: string | null): string | null {
  if (code === null || !Object.hasOwn(TWILIO_ERROR_MEANINGS, code)) return null
  return TWILIO_ERROR_MEANINGS[code]
}
