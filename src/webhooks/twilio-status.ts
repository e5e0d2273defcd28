/**
 * `POST /webhooks/twilio/status`: Twilio message status callbacks
 * (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status).
 *
 * Order of checks: content type and size (415/413), signature (403), payload (400), then record
 * and answer 200 only after the transaction committed. Any database failure answers 503 with
 * `Retry-After`: never a 2xx for unsaved data, never a 500.
 */
import formbody from '@fastify/formbody'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/config.ts'
import { maskAddress } from '../domain/channel.ts'
import { twilioCallbackToEvent } from '../domain/twilio-callback.ts'
import { AppError } from '../errors.ts'
import { addLogFields } from '../http/request-log.ts'
import { recordingFailure, type Recorder } from '../ingest/recorder.ts'
import type { Metrics } from '../metrics.ts'
import { publicUrlOf, verifyTwilioSignature } from '../providers/twilio-signature.ts'

export interface TwilioStatusOptions {
  config: Pick<Config, 'publicBaseUrl' | 'twilioAuthTokens'>
  metrics: Metrics
  /** The app's recorder: concurrent callbacks commit together (`recordGrouped`). */
  recorder: Recorder
}

/** Body limit for Twilio callbacks, in bytes (64 KiB). */
export const TWILIO_BODY_LIMIT = 64 * 1024

export async function twilioStatusRoutes (app: FastifyInstance, opts: TwilioStatusOptions): Promise<void> {
  // Only form bodies are accepted here: any other content type is a 415, not a parse attempt.
  app.removeAllContentTypeParsers()
  await app.register(formbody, { bodyLimit: TWILIO_BODY_LIMIT })

  app.post('/webhooks/twilio/status', {
    bodyLimit: TWILIO_BODY_LIMIT,
    config: { accepts: 'application/x-www-form-urlencoded' }
  }, async (request, reply) => {
    const params = (request.body ?? {}) as Record<string, unknown>
    const signature = request.headers['x-twilio-signature']
    const verdict = verifyTwilioSignature(
      opts.config.twilioAuthTokens,
      typeof signature === 'string' ? signature : undefined,
      publicUrlOf(opts.config.publicBaseUrl, request.raw.url ?? request.url),
      params
    )
    if (verdict !== 'valid') {
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: verdict })
      request.log.warn({
        verdict,
        accountSid: typeof params.AccountSid === 'string' ? params.AccountSid : undefined,
        signaturePresent: typeof signature === 'string' && signature !== '',
        url: request.raw.url
      }, 'rejected Twilio callback')
      throw verdict === 'unknown_account'
        ? new AppError('unknown_account', 'No auth token is configured for this AccountSid')
        : new AppError('invalid_signature', 'X-Twilio-Signature is missing or does not match this request')
    }

    let event
    try {
      event = twilioCallbackToEvent(params, new Date())
    } catch (err) {
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: 'invalid_payload' })
      throw err
    }

    let outcome
    try {
      outcome = await opts.recorder.recordGrouped(event)
    } catch (err) {
      const answer = recordingFailure(err)
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: answer instanceof AppError && answer.statusCode < 500 ? 'invalid_payload' : 'unavailable' })
      throw answer
    }
    if (outcome.outcome === 'account_mismatch') {
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: 'account_mismatch' })
      request.log.warn({ sid: event.sid, accountSid: event.accountSid }, 'Twilio callback signed for another account than the message\'s: refused')
      throw new AppError('account_mismatch', 'This MessageSid belongs to another AccountSid than the one that signed the callback; nothing was changed')
    }
    opts.metrics.webhooks.inc({ provider: 'twilio', outcome: outcome.outcome === 'duplicate' ? 'duplicate' : 'accepted' })
    addLogFields(request, {
      sid: event.sid,
      status: event.status,
      outcome: outcome.outcome,
      currentStatus: outcome.currentStatus,
      to: maskAddress(event.to)
    })
    return await reply.code(200).send({ outcome: outcome.outcome })
  })
}
