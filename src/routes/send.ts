/**
 * `POST /v1/messages` (send through Twilio) and `PUT /v1/messages/:sid` (register a message another
 * system sent). The rules live in `src/outbound/`; this file is the HTTP shape.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { Database, MessageRow } from '../db/database.ts'
import { deleteExpiredIdempotencyKeys } from '../db/idempotency.ts'
import { maskAddress } from '../domain/channel.ts'
import { fallbackFieldsOf, FallbackFields } from '../fallback/api.ts'
import { addLogFields } from '../http/request-log.ts'
import { registerMessage } from '../outbound/register-message.ts'
import { sendMessage, type SendDeps } from '../outbound/send-message.ts'
import { toMessageBody } from './messages.ts'
import { ErrorBody, Message } from './schemas.ts'

/** What sending needs, except how a message is presented: that is this file's job. */
export type SendRoutesOptions = Omit<SendDeps, 'present'>

// Twilio's formats: https://www.twilio.com/docs/glossary/what-e164 and the Message resource.
const PHONE = '^(whatsapp:)?\\+[1-9][0-9]{6,14}$'
const Phone = (description: string) => Type.String({ pattern: PHONE, maxLength: 25, description })
const MessagingServiceSid = Type.String({ pattern: '^MG[0-9a-fA-F]{32}$' })
const Metadata = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), { maxProperties: 50, description: 'Your JSON object, stored and returned as given (at most 16 KiB as JSON)' })
const ExternalId = Type.String({ minLength: 1, maxLength: 255, description: 'Your own id for the message' })
const FallbackFlag = Type.Boolean({ description: 'Whether a failed WhatsApp message may get an SMS fallback (default true)' })

export const SendBody = Type.Object({
  to: Phone('E.164, or whatsapp:+E.164'),
  from: Type.Optional(Phone('E.164, or whatsapp:+E.164 (same channel as to)')),
  messaging_service_sid: Type.Optional(MessagingServiceSid),
  body: Type.Optional(Type.String({ minLength: 1, maxLength: 1600 })),
  content_sid: Type.Optional(Type.String({ pattern: '^HX[0-9a-fA-F]{32}$' })),
  content_variables: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1024 }), { maxProperties: 100 })),
  external_id: Type.Optional(ExternalId),
  metadata: Type.Optional(Metadata),
  fallback: Type.Optional(FallbackFlag)
}, { additionalProperties: false })

export const RegisterBody = Type.Object({
  to: Phone('E.164, or whatsapp:+E.164'),
  from: Type.Optional(Phone('E.164, or whatsapp:+E.164')),
  messaging_service_sid: Type.Optional(MessagingServiceSid),
  account_sid: Type.Optional(Type.String({ pattern: '^AC[0-9a-fA-F]{32}$' })),
  body: Type.Optional(Type.String({ minLength: 1, maxLength: 1600 })),
  external_id: Type.Optional(ExternalId),
  metadata: Type.Optional(Metadata),
  fallback: Type.Optional(FallbackFlag)
}, { additionalProperties: false })

const TwilioErrorBody = Type.Object({
  code: Type.String(),
  message: Type.String(),
  twilio_code: Type.Optional(Type.String()),
  /** `send_not_recorded`: the message Twilio accepted. */
  message_sid: Type.Optional(Type.String())
})
const MessageWithFallback = Type.Composite([Message, FallbackFields])
/** How often expired idempotency records are deleted. */
const SWEEP_INTERVAL_MS = 60 * 60_000

export const sendRoutes: FastifyPluginAsyncTypebox<SendRoutesOptions> = async (app, opts) => {
  const { db } = opts
  const present = async (executor: Kysely<Database>, row: MessageRow): Promise<unknown> =>
    ({ ...toMessageBody(row), ...await fallbackFieldsOf(executor, row) })

  let sweep: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    sweep = setInterval(() => {
      deleteExpiredIdempotencyKeys(db).catch((err: unknown) => app.log.warn({ err }, 'could not delete expired idempotency keys'))
    }, SWEEP_INTERVAL_MS)
    sweep.unref()
  })
  app.addHook('onClose', async () => { clearInterval(sweep) })

  app.post('/messages', {
    schema: {
      summary: 'Send an SMS or WhatsApp message through Twilio',
      headers: Type.Object({
        'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7E]+$' }))
      }),
      body: SendBody,
      response: {
        201: MessageWithFallback,
        400: ErrorBody,
        401: ErrorBody,
        409: ErrorBody,
        422: TwilioErrorBody,
        500: TwilioErrorBody,
        502: TwilioErrorBody,
        503: TwilioErrorBody
      }
    }
  }, async (request, reply) => {
    const key = request.headers['idempotency-key']
    const result = await sendMessage({
      db,
      twilio: opts.twilio,
      statusCallbackUrl: opts.statusCallbackUrl,
      recorder: opts.recorder,
      idempotencyTtlMs: opts.idempotencyTtlMs,
      idempotencyLeaseMs: opts.idempotencyLeaseMs,
      present
    }, request.body, request.apiKeyName ?? '', key)
    const body = result.body as { sid?: string }
    if (result.replayed) reply.header('idempotent-replayed', 'true')
    if (result.status === 201 && body.sid !== undefined) reply.header('location', `/v1/messages/${body.sid}`)
    if (!result.replayed && body.sid !== undefined) addLogFields(request, { sid: body.sid, to: maskAddress(request.body.to), sent: true })
    // A replay sends back exactly what the first request answered (201, or a 422 twilio_error).
    return await reply.code(result.status as 201).send(result.body as never)
  })

  app.put('/messages/:sid', {
    schema: {
      summary: 'Register a message another system sent through Twilio',
      params: Type.Object({ sid: Type.String({ pattern: '^(SM|MM)[0-9a-fA-F]{32}$' }) }),
      body: RegisterBody,
      response: { 200: MessageWithFallback, 201: MessageWithFallback, 400: ErrorBody, 401: ErrorBody, 409: ErrorBody, 503: ErrorBody }
    }
  }, async (request, reply) => {
    const { created, row } = await registerMessage(db, request.params.sid, request.body)
    return await reply.code(created ? 201 : 200).send({ ...toMessageBody(row), ...await fallbackFieldsOf(db, row) })
  })
}
