/**
 * Reading an email back from the Resend API: `GET /emails/{id}`
 * (https://resend.com/docs/api-reference/emails/retrieve-email), with `Authorization: Bearer
 * RESEND_API_KEY`. Plain `fetch` rather than the `resend` package: its client reads the API origin
 * from `process.env.RESEND_BASE_URL`, and Tidings passes configuration in rather than reading the
 * environment. `RESEND_API_BASE_URL` (tests and demos only) points it at the FAKE Resend API.
 */

/** The fields of a retrieved email that Tidings reads; the whole body is kept as the event's `raw`. */
export interface ResendEmail {
  id: string
  from: string | null
  to: string[]
  subject: string | null
  /** The most recent event, without the `email.` prefix: `sent`, `delivered`, `bounced`, ... */
  lastEvent: string | null
  raw: Record<string, unknown>
}

export type ResendFetchResult =
  | { kind: 'found', email: ResendEmail }
  | { kind: 'not_found' }
  /** 429: stop asking; `retryAfterS` from the `Retry-After` header when Resend sent one. */
  | { kind: 'rate_limited', retryAfterS: number | null }
  | { kind: 'error', message: string }

export interface ResendClient {
  getEmail: (id: string) => Promise<ResendFetchResult>
}

export interface ResendRestOptions {
  apiKey: string
  /** `https://api.resend.com`, or the fake's origin; no trailing slash. */
  baseUrl: string
  timeoutMs: number
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const stringOrNull = (v: unknown): string | null => typeof v === 'string' && v !== '' ? v : null

export function createResendClient (opts: ResendRestOptions): ResendClient {
  return {
    getEmail: async (id) => {
      let res: Response
      try {
        res = await fetch(`${opts.baseUrl}/emails/${encodeURIComponent(id)}`, {
          headers: { authorization: `Bearer ${opts.apiKey}`, accept: 'application/json' },
          signal: AbortSignal.timeout(opts.timeoutMs)
        })
      } catch (err) {
        return { kind: 'error', message: err instanceof Error ? err.message : String(err) }
      }
      const text = await res.text().catch(() => '')
      if (res.status === 404) return { kind: 'not_found' }
      if (res.status === 429) {
        const retryAfter = Number(res.headers.get('retry-after'))
        return { kind: 'rate_limited', retryAfterS: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null }
      }
      if (res.status !== 200) return { kind: 'error', message: `Resend answered HTTP ${res.status}` }
      let body: unknown
      try { body = JSON.parse(text) } catch { return { kind: 'error', message: 'Resend answered with a body that is not JSON' } }
      if (!isObject(body) || typeof body.id !== 'string') return { kind: 'error', message: 'Resend answered without an email id' }
      const to = Array.isArray(body.to) ? body.to.filter((r): r is string => typeof r === 'string') : typeof body.to === 'string' ? [body.to] : []
      return {
        kind: 'found',
        email: { id: body.id, from: stringOrNull(body.from), to, subject: stringOrNull(body.subject), lastEvent: stringOrNull(body.last_event), raw: body }
      }
    }
  }
}
