/**
 * Twilio request validation, with twilio-node's own code
 * (https://www.twilio.com/docs/usage/webhooks/webhooks-security): its `getExpectedTwilioSignature`
 * algorithm for the URL as received with and without the default port (what `validateRequest`
 * tries first; the parameters' part is built once, `paramsPartOf`),
 * and `validateRequest` itself only for a URL that `new URL()` would re-encode. An unsigned request
 * then costs one HMAC per token and URL variant over a body already bounded by size and parameter
 * count (`WEBHOOK_MAX_*`), rather than six per token (docs/fuzzing.md has the figures).
 *
 * The token is chosen by the `AccountSid` in the payload, because sub-accounts sign with their own
 * token and looking up by phone number breaks for Messaging Service pools. Every configured token
 * of that account is tried (old and new during rotation). There is no switch that turns this off.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { twilioLib } from './twilio-rest.ts'

/** `valid`, or why the request was refused. */
export type TwilioSignatureVerdict = 'valid' | 'invalid_signature' | 'unknown_account'

/**
 * Checks `X-Twilio-Signature` over `url` and every received parameter.
 * @param tokens - auth tokens per `AccountSid`.
 * @param signature - the header value, or `undefined` when absent.
 * @param url - the public URL Twilio requested, query string included (see `publicUrlOf`).
 * @param params - every form parameter received, repeated names as arrays.
 * @returns `unknown_account` when the payload names an `AccountSid` with no configured token;
 *   when it names none, every configured token is tried.
 */
export function verifyTwilioSignature (
  tokens: ReadonlyMap<string, readonly string[]>,
  signature: string | undefined,
  url: string,
  params: Record<string, unknown>
): TwilioSignatureVerdict {
  const accountSid = typeof params.AccountSid === 'string' ? params.AccountSid : undefined
  let candidates: readonly string[]
  if (accountSid !== undefined) {
    const forAccount = tokens.get(accountSid)
    if (forAccount === undefined) return 'unknown_account'
    candidates = forAccount
  } else {
    candidates = [...tokens.values()].flat()
  }
  // A Twilio signature is base64 of an HMAC-SHA1: 28 characters. Anything else cannot match, so
  // it costs nothing more.
  if (signature === undefined || !SIGNATURE_SHAPE.test(signature)) return 'invalid_signature'
  // The URL variants twilio's validateRequest tries, worked out once per URL (the last one is kept)
  // rather than once per token: as received, with and without the scheme's default port. Only a URL
  // that `new URL()` would re-encode needs validateRequest's further variants (rare: odd characters
  // in the query).
  const forUrl = urlVariantsOf(url)
  // Not a URL at all (validateRequest would throw): it cannot be the one Twilio signed.
  if (forUrl === undefined) return 'invalid_signature'
  const { variants, needsFullCheck } = forUrl
  const given = Buffer.from(signature)
  // The parameters' part of the signed string, built once (it is the same for every token and URL).
  const signedParams = Buffer.from(paramsPartOf(params), 'utf8')
  for (const token of candidates) {
    for (const variant of variants) {
      const expected = createHmac('sha1', token).update(variant, 'utf8').update(signedParams).digest('base64')
      if (timingSafeEqual(given, Buffer.from(expected))) return 'valid'
    }
    if (needsFullCheck && twilioLib().validateRequest(token, signature, url, params)) return 'valid'
  }
  return 'invalid_signature'
}

/**
 * What twilio-node's `getExpectedTwilioSignature` appends to the URL before signing: every
 * parameter name, sorted, followed by its value (a repeated name: each distinct value, sorted).
 * test/twilio-signature.test.ts checks it against the library on generated parameters.
 */
export function paramsPartOf (params: Record<string, unknown>): string {
  let data = ''
  for (const key of Object.keys(params).sort()) {
    const value = params[key]
    if (Array.isArray(value)) for (const v of Array.from(new Set(value)).sort()) data += key + String(v)
    else data += key + String(value)
  }
  return data
}

/** What `verifyTwilioSignature` checks a URL as: its variants, and whether `new URL()` re-encodes it. */
interface UrlVariants { variants: readonly string[], needsFullCheck: boolean }

/** The last URL's variants: every callback to one Tidings comes to the same URL or a few. */
let lastUrl: string | undefined
let lastVariants: UrlVariants | undefined

/** The URL variants twilio's validateRequest tries; `undefined` when `url` is no URL at all. */
function urlVariantsOf (url: string): UrlVariants | undefined {
  if (url === lastUrl) return lastVariants
  let found: UrlVariants | undefined
  try {
    found = { variants: [...new Set([url, withoutPort(url), withDefaultPort(url)])], needsFullCheck: new URL(url).toString() !== url }
  } catch {
    found = undefined
  }
  lastUrl = url
  lastVariants = found
  return found
}

const AUTHORITY = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)?(\[[^\]]*\]|[^/?#:]*)(:\d*)?/i

function withoutPort (url: string): string {
  return url.replace(AUTHORITY, (_m, scheme: string, user: string | undefined, host: string) => `${scheme}${user ?? ''}${host}`)
}

function withDefaultPort (url: string): string {
  return url.replace(AUTHORITY, (m, scheme: string, user: string | undefined, host: string, port: string | undefined) =>
    port !== undefined ? m : `${scheme}${user ?? ''}${host}:${scheme.toLowerCase() === 'https://' ? 443 : 80}`)
}

const SIGNATURE_SHAPE = /^[A-Za-z0-9+/]{27}=$/

/**
 * A hint for the warn log when the URL a signature was checked against differs in scheme or host
 * from what the request itself says (`Host`, and the scheme of the connection or of
 * `X-Forwarded-Proto`): the usual cause of every callback failing is a `PUBLIC_BASE_URL` that is
 * not the URL configured in Twilio. Behind a proxy that rewrites `Host` the hint is expected.
 * @returns the hint, or `undefined` when scheme and host agree.
 */
export function signedUrlHint (checkedUrl: string, host: string | undefined, scheme: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(checkedUrl)
  if (m === null || host === undefined) return undefined
  const [, checkedScheme, checkedHost] = m
  if (checkedScheme.toLowerCase() === scheme.toLowerCase() && checkedHost.toLowerCase() === host.toLowerCase()) return undefined
  return `the signature was checked against ${checkedScheme}://${checkedHost} but the request came for ${scheme}://${host.slice(0, 256)}: check that PUBLIC_BASE_URL is the scheme and host of the callback URL configured in Twilio`
}

/**
 * The URL Twilio requested: the configured public base URL plus the raw path and query as
 * received (never re-encoded), so checks work behind TLS-terminating proxies.
 * @param publicBaseUrl - e.g. `https://hooks.example.com` (no trailing slash).
 * @param rawUrl - the request line's target, e.g. `/webhooks/twilio/status?tenant=a`.
 */
export function publicUrlOf (publicBaseUrl: string, rawUrl: string): string {
  return publicBaseUrl + rawUrl
}
