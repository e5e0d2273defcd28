/**
 * `POST /webhooks/resend`: Resend email events, delivered by Svix
 * (https://resend.com/docs/dashboard/webhooks/introduction).
 *
 * Order of checks: content type and size (415/413), signature over the exact raw bytes (401),
 * payload (400), then record and answer 200 only after the transaction committed. `svix-id` is the
 * delivery's identity: a retry is acknowledged and changes nothing. Authentic events of a type
 * Tidings does not track are acknowledged and not stored (Resend retries any non-2xx for about a
 * day). Any database failure answers 503 with `Retry-After`, so Resend retries.
 */
import type { FastifyInstance } from 'fastify'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { maskAddress } from '../domain/channel.ts'
import { parseResendDelivery, type ResendDelivery } from '../domain/resend-event.ts'
import { RefusedInput } from '../domain/storable.ts'
import { AppError } from '../errors.ts'
import { recordEngagement } from '../ingest/record-engagement.ts'
import { addLogFields } from '../http/request-log.ts'
import { recordingFailure, type Recorder } from '../ingest/recorder.ts'
import type { Metrics, WebhookOutcome } from '../metrics.ts'
import { resendVerifiers, verifyResendSignature } from '../providers/resend-signature.ts'

export interface ResendWebhookOptions {
  /** `whsec_…` secrets; any may sign (rotation). The route is only registered with at least one. */
  secrets: readonly string[]
  db: Kysely<Database>
  /** The app's recorder, for status events (engagement has its own log). */
  recorder: Recorder
  metrics: Metrics
  /** Body limit for Resend deliveries, in bytes (`RESEND_MAX_BODY_BYTES`, default 256 KiB). */
  bodyLimit?: number
}

// Rejects bytes that are not UTF-8 rather than replacing them: the JSON Resend signs is UTF-8.
const utf8 = new TextDecoder('utf-8', { fatal: true })

export async function resendWebhookRoutes (app: FastifyInstance, opts: ResendWebhookOptions): Promise<void> {
  if (opts.secrets.length === 0) throw new Error('resendWebhookRoutes needs at least one secret')
  const verifiers = resendVerifiers(opts.secrets)
  const bodyLimit = opts.bodyLimit ?? 256 * 1024
  const count = (outcome: WebhookOutcome): void => { opts.metrics.webhooks.inc({ provider: 'resend', outcome }) }

  // Keep the exact bytes: the signature covers them, and re-serialised JSON would not match.
  // Encapsulated: only this plugin's routes parse JSON this way; other content types are a 415.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (_request, body, done) => {
    done(null, body)
  })

  app.post('/webhooks/resend', { bodyLimit }, async (request, reply) => {
    const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const svixIdHeader = request.headers['svix-id']
    const verdict = verifyResendSignature(verifiers, rawBody, request.headers)
    if (!verdict.valid) {
      count('invalid_signature')
      request.log.warn({
        reason: verdict.reason,
        svixId: typeof svixIdHeader === 'string' ? svixIdHeader.slice(0, 100) : undefined,
        signaturePresent: request.headers['svix-signature'] !== undefined
      }, 'rejected Resend webhook')
      throw new AppError('invalid_signature', 'The svix-signature, svix-id or svix-timestamp header is missing, invalid or outside the 300 s tolerance', { statusCode: 401 })
    }
    const svixId = svixIdHeader as string

    let delivery: ResendDelivery
    try {
      let payload: unknown
      try {
        payload = JSON.parse(utf8.decode(rawBody))
      } catch {
        throw new AppError('invalid_payload', 'The body is not valid UTF-8 JSON')
      }
      delivery = parseResendDelivery(payload, svixId, new Date(), (reason) => {
        opts.metrics.inputNormalized.inc({ source: 'resend', reason })
        request.log.info({ svixId, reason }, 'Resend event normalised to be stored')
      })
    } catch (err) {
      count('invalid_payload')
      if (err instanceof RefusedInput) opts.metrics.inputRefused.inc({ source: 'resend', reason: err.reason })
      request.log.warn({ svixId, reason: err instanceof Error ? err.message : String(err) }, 'invalid Resend payload')
      throw err
    }

    if (delivery.kind === 'ignored') {
      count('ignored')
      addLogFields(request, { svixId, type: delivery.type, outcome: 'ignored', note: 'a type Tidings does not track: acknowledged, not stored' })
      return await reply.code(200).send({ outcome: 'ignored' })
    }

    const sid = delivery.kind === 'status' ? delivery.event.sid : delivery.engagement.message.sid
    const type = delivery.kind === 'status' ? delivery.event.status : `email.${delivery.engagement.kind}`
    let outcome: 'recorded' | 'duplicate'
    let currentStatus: string | null | undefined
    try {
      if (delivery.kind === 'status') {
        const [result] = await opts.recorder.record([delivery.event])
        // Resend events carry no account: never account_mismatch.
        outcome = result.outcome === 'recorded' ? 'recorded' : 'duplicate'
        currentStatus = result.currentStatus
      } else {
        outcome = (await recordEngagement(opts.db, delivery.engagement)).outcome
      }
    } catch (err) {
      const answer = recordingFailure(err)
      count(answer instanceof AppError && answer.statusCode < 500 ? 'invalid_payload' : 'unavailable')
      throw answer
    }
    count(outcome === 'duplicate' ? 'duplicate' : 'accepted')
    if (outcome === 'recorded' && delivery.kind === 'engagement') opts.metrics.events.inc({ channel: 'email', status: type })
    addLogFields(request, {
      sid,
      svixId,
      type,
      outcome,
      currentStatus,
      to: maskAddress(delivery.kind === 'status' ? delivery.event.to : delivery.engagement.message.to)
    })
    return await reply.code(200).send({ outcome })
  })
}
