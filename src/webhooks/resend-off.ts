/**
 * `POST /webhooks/resend` when no signing secret is configured: the route is off, and says how to
 * turn it on instead of a bare "Route not found" that looks like a wrong URL.
 */
import type { FastifyInstance } from 'fastify'
import { AppError } from '../errors.ts'

/** Registers the switched-off route (any body, never read) and logs at start-up that it is off. */
export async function resendWebhookOffRoute (app: FastifyInstance): Promise<void> {
  // Whatever the body, the answer is the same 404: no parsing, no 415 or 413 in its way.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  app.post('/webhooks/resend', async () => {
    throw new AppError('not_found', 'POST /webhooks/resend is off: set RESEND_WEBHOOK_SECRET to the signing secret (whsec_…) of your Resend webhook, leave RESEND_ENABLED unset or true, and restart Tidings (see docs/resend.md)')
  })
  app.log.info('Resend webhook route POST /webhooks/resend is off: RESEND_WEBHOOK_SECRET is not set')
}
