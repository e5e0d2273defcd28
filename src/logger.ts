/**
 * pino options: request ids, secrets and personal data redacted.
 * Headers are not logged by Fastify's default serializer; the redaction list is the second line of
 * defence for any object a log call passes along.
 */
import type { FastifyLoggerOptions } from 'fastify'
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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req (req: { method: string, url: string, id: string, ip?: string }) {
        return { id: req.id, method: req.method, url: maskUrl(req.url), remoteAddress: req.ip }
      }
    }
  }
}
