/**
 * Resend webhook signatures: Svix / Standard Webhooks
 * (https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests,
 * https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
 * The signed content is `${svix-id}.${svix-timestamp}.${raw body}`, HMAC-SHA256 with the secret;
 * `svix-signature` is a space-separated list of `v1,<base64>`. The `svix` library does the
 * cryptography, the constant-time comparison and the 300 s timestamp tolerance in both directions;
 * this module tries each configured secret (rotation) and names the reason for a rejection.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { Webhook, WebhookVerificationError } from 'svix'

export type ResendSignatureVerdict = { valid: true } | { valid: false, reason: string }

const REQUIRED_HEADERS = ['svix-id', 'svix-timestamp', 'svix-signature'] as const
const MAX_SVIX_ID = 256
/** Room for ten `v1,<base64 of 32 bytes>` entries. */
const MAX_SVIX_SIGNATURE = 1024

/** A reason safe to log for svix's error (never the secret or the signature). */
function reasonOf (err: WebhookVerificationError): { reason: string, timestamp: boolean } {
  switch (err.message) {
    case 'Message timestamp too old': return { reason: 'svix-timestamp is more than 300 s in the past', timestamp: true }
    case 'Message timestamp too new': return { reason: 'svix-timestamp is more than 300 s in the future', timestamp: true }
    case 'Invalid Signature Headers': return { reason: 'svix-timestamp is not a Unix time in seconds', timestamp: true }
    case 'No matching signature found': return { reason: 'no v1 signature in svix-signature matches a configured secret', timestamp: false }
    default: return { reason: err.message, timestamp: false }
  }
}

/** One `Webhook` verifier per configured `whsec_…` secret, built once. */
export function resendVerifiers (secrets: readonly string[]): Webhook[] {
  return secrets.map((secret) => new Webhook(secret))
}

/**
 * Checks a Resend delivery against every configured secret.
 * @param verifiers - from `resendVerifiers`, in configuration order.
 * @param rawBody - the body exactly as received (never re-serialised JSON).
 * @param headers - the request headers; only the three `svix-*` ones are read.
 */
export function verifyResendSignature (verifiers: readonly Webhook[], rawBody: Buffer, headers: IncomingHttpHeaders): ResendSignatureVerdict {
  const svixHeaders: Record<string, string> = {}
  const missing: string[] = []
  for (const name of REQUIRED_HEADERS) {
    const value = headers[name]
    // A header sent twice arrives as an array: not a valid delivery either.
    if (typeof value !== 'string' || value === '') missing.push(name)
    else svixHeaders[name] = value
  }
  if (missing.length > 0) return { valid: false, reason: `missing or repeated header: ${missing.join(', ')}` }
  // Bounded before any HMAC: Svix ids are short, and a rotation carries a few signatures at most.
  if (svixHeaders['svix-id'].length > MAX_SVIX_ID || svixHeaders['svix-signature'].length > MAX_SVIX_SIGNATURE) {
    return { valid: false, reason: `svix-id longer than ${MAX_SVIX_ID} or svix-signature longer than ${MAX_SVIX_SIGNATURE} characters` }
  }
  let reason = 'no Resend webhook secret is configured'
  for (const verifier of verifiers) {
    try {
      verifier.verify(rawBody, svixHeaders)
      return { valid: true }
    } catch (err) {
      if (!(err instanceof WebhookVerificationError)) throw err
      const why = reasonOf(err)
      reason = why.reason
      // The timestamp is checked before the signature and is the same for every secret.
      if (why.timestamp) break
    }
  }
  return { valid: false, reason }
}
