/**
 * pino options: request ids, secrets and personal data redacted.
 * Headers are not logged by Fastify's default serializer; the redaction list is the second line of
 * defence for any object a log call passes along.
 */
import type { FastifyLoggerOptions } from 'fastify'
import pino, { type DestinationStream } from 'pino'
import { maskAddress } from './domain/channel.ts'

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-twilio-signature"]',
  'req.headers["svix-signature"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-twilio-signature"]',
  'headers["svix-signature"]',
  'authToken', '*.authToken', 'token', '*.token', 'secret', '*.secret', 'apiKey.hash',
  'body', '*.body', '*.Body', 'Body',
  '*.To', '*.From', 'params.To', 'params.From'
]

/** What a redacted value is replaced with. */
export const REDACT_CENSOR = '[redacted]'

/**
 * The redaction of the one line per request (src/http/request-log.ts): `REDACT_PATHS` without the
 * wildcard ones (`*.x`) and without those under `req`. That line holds the `req` serializer's output
 * (masked URL, no headers), the status code and the fields routes add with `addLogFields`. A
 * wildcard path makes pino run its redactor over every field of a line, and a path under `req` over
 * the `req` of every line; that tripled the cost of this line (11.7 against 3.6 µs,
 * docs/performance.md). The other paths cost nothing on a line without their field. Every other
 * log line keeps the full list.
 */
export const REQUEST_LINE_REDACT_PATHS = REDACT_PATHS.filter((p) => !p.startsWith('*') && !p.startsWith('req.'))

const PERSONAL_QUERY = /([?&](?:to|from|To|From)=)([^&#]*)/g

/** A URL with the values of `to`/`from` query parameters masked. */
export function maskUrl (url: string): string {
  return url.replace(PERSONAL_QUERY, (_m, k: string, v: string) => `${k}${maskAddress(decodeURIComponentSafe(v)) ?? ''}`)
}

function decodeURIComponentSafe (v: string): string {
  try { return decodeURIComponent(v) } catch { return v }
}

/** Logger options for Fastify. Pretty output is left to the operator (`| pino-pretty`). */
export function loggerOptions (level: string): FastifyLoggerOptions & { redact: { paths: string[], censor: string } } {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR },
    serializers: {
      req (req: { method: string, url: string, id: string, ip?: string }) {
        return { id: req.id, method: req.method, url: maskUrl(req.url), remoteAddress: req.ip }
      }
    }
  }
}

let stdout: ReturnType<typeof pino.destination> | undefined

/**
 * Standard output for logs, written asynchronously: while one write is under way, the lines that
 * follow are gathered and go out in the next write. A synchronous write per line (pino's default)
 * was about a sixth of the server's CPU at a few thousand callbacks a second (docs/performance.md);
 * at low traffic each line still goes out at once. One destination per process, flushed on exit.
 */
export function stdoutLogStream (): DestinationStream {
  if (stdout === undefined) {
    const dest = pino.destination({ dest: 1, sync: false })
    process.once('exit', () => { try { dest.flushSync() } catch { /* stdout gone */ } })
    stdout = dest
  }
  return stdout
}
