/**
 * `POST /webhooks/twilio/status`: Twilio message status callbacks
 * (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status).
 *
 * Order of checks: content type and size (415/413), signature (403), payload (400), then record
 * and answer 200 only after the transaction committed. Any database failure answers 503 with
 * `Retry-After`: never a 2xx for unsaved data, never a 500.
 */
import { parse as parseForm } from 'node:querystring'
import formbody from '@fastify/formbody'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../config/config.ts'
import { maskAddress } from '../domain/channel.ts'
import { twilioCallbackToEvent } from '../domain/twilio-callback.ts'
import { AppError } from '../errors.ts'
import { addLogFields } from '../http/request-log.ts'
import { recordingFailure, type Recorder } from '../ingest/recorder.ts'
import { maskUrl } from '../logger.ts'
import type { Metrics } from '../metrics.ts'
import { RefusedInput } from '../domain/storable.ts'
import { publicUrlOf, signedUrlHint, verifyTwilioSignature } from '../providers/twilio-signature.ts'

export interface TwilioStatusOptions {
  config: Pick<Config, 'publicBaseUrl' | 'twilioAuthTokens' | 'limits'>
  metrics: Metrics
  /** The app's recorder: concurrent callbacks commit together (`recordGrouped`). */
  recorder: Recorder
}

/** Where the 403 sends people: the README section on signature failures. */
const SIGNATURE_DOCS = 'see README.md, section "403 invalid_signature from Twilio"'

export async function twilioStatusRoutes (app: FastifyInstance, opts: TwilioStatusOptions): Promise<void> {
  const { webhookMaxParams: maxParams, webhookMaxBodyBytes: bodyLimit } = opts.config.limits
  const refuse = (reason: 'too_many_params', message: string): RefusedInput => {
    opts.metrics.inputRefused.inc({ source: 'twilio', reason })
    return new RefusedInput(reason, message)
  }
  // Only form bodies are accepted here: any other content type is a 415, not a parse attempt.
  // Before anything else, what an unsigned request may cost is bounded: the body by size (413)
  // and the parameters by count, counted on the raw string before parsing (400). Parsed once;
  // twilio's validateRequest then sorts at most `maxParams` names per token and URL variant.
  app.removeAllContentTypeParsers()
  await app.register(formbody, {
    bodyLimit,
    parser: (text: string) => {
      let count = text === '' ? 0 : 1
      for (let i = text.indexOf('&'); i !== -1 && count <= maxParams; i = text.indexOf('&', i + 1)) count++
      // Thrown inside the content-type parser, Fastify answers with it (the error handler's 400).
      if (count > maxParams) throw refuse('too_many_params', `The callback has more than ${maxParams} parameters (WEBHOOK_MAX_PARAMS); a Twilio status callback has about twenty`)
      // Node's parser: repeated names become arrays, as validateRequest expects; never throws.
      return parseForm(text, '&', '=', { maxKeys: maxParams })
    }
  })

  app.post('/webhooks/twilio/status', {
    bodyLimit,
    config: { accepts: 'application/x-www-form-urlencoded' }
  }, async (request, reply) => {
    const params = (request.body ?? {}) as Record<string, unknown>
    const signature = request.headers['x-twilio-signature']
    const url = publicUrlOf(opts.config.publicBaseUrl, targetOf(request))
    const verdict = verifyTwilioSignature(
      opts.config.twilioAuthTokens,
      typeof signature === 'string' ? signature : undefined,
      url,
      params
    )
    if (verdict !== 'valid') {
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: verdict })
      const hint = signedUrlHint(url, request.headers.host, forwardedProto(request))
      request.log.warn({
        verdict,
        accountSid: typeof params.AccountSid === 'string' ? params.AccountSid.slice(0, 64) : undefined,
        signaturePresent: typeof signature === 'string' && signature !== '',
        // The exact URL the signature was checked against (bounded: the request line is not).
        // to/from query values masked, as in the access log.
        checkedUrl: maskUrl(url.slice(0, 2048)),
        ...(hint === undefined ? {} : { hint })
      }, 'rejected Twilio callback')
      throw verdict === 'unknown_account'
        ? new AppError('unknown_account', `No auth token is configured for this AccountSid (TWILIO_AUTH_TOKENS); ${SIGNATURE_DOCS}`)
        : new AppError('invalid_signature', `X-Twilio-Signature is missing or does not match this request; ${SIGNATURE_DOCS}`)
    }

    let event
    try {
      event = twilioCallbackToEvent(params, new Date(), (reason) => {
        opts.metrics.inputNormalized.inc({ source: 'twilio', reason })
        request.log.info({ reason }, 'Twilio callback normalised to be stored')
      })
    } catch (err) {
      opts.metrics.webhooks.inc({ provider: 'twilio', outcome: 'invalid_payload' })
      if (err instanceof RefusedInput) opts.metrics.inputRefused.inc({ source: 'twilio', reason: err.reason })
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

/**
 * The path and query of the request target as received. An absolute-form target
 * (`POST http://x/webhooks/...`, RFC 9112 §3.2.2) is reduced to its path and query: Twilio never
 * sends one, and glued to `PUBLIC_BASE_URL` it was no URL at all.
 */
function targetOf (request: FastifyRequest): string {
  const raw = request.raw.url ?? request.url
  if (raw.startsWith('/')) return raw
  const rest = raw.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '')
  return rest.startsWith('/') ? rest : `/${rest}`
}

/** `X-Forwarded-Proto` when a proxy set exactly one, else the connection's own scheme. */
function forwardedProto (request: FastifyRequest): string {
  const given = request.headers['x-forwarded-proto']
  return typeof given === 'string' && /^https?$/i.test(given) ? given.toLowerCase() : request.protocol
}
