/**
 * The one error handler: every error becomes `{ code, message }` with a stable code from
 * `src/errors.ts`; 5xx never leak internals (logged, not sent).
 */
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify'
import { isDatabaseUnavailableError, isTransientConflict } from '../db/errors.ts'
import { AppError, databaseUnavailable } from '../errors.ts'
import { addLogFields } from './request-log.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The content type a route's body must have, named in its 415 (default `application/json`). */
    accepts?: string
  }
}

/** `64 KiB`, `1 MiB`, or bytes. */
function size (bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`
  return `${bytes} bytes`
}

/** The 415 and 413 messages: what was sent and what the route takes. */
function bodyMessage (err: FastifyError, request: FastifyRequest): string | undefined {
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const sent = request.headers['content-type']
    const accepts = request.routeOptions.config.accepts ?? 'application/json'
    return `${sent === undefined ? 'A body without Content-Type' : `Content-Type ${sent.split(';')[0]}`} is not accepted here; ${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]} takes ${accepts}`
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const limit = request.routeOptions.bodyLimit
    return `The request body is larger than the ${size(limit)} this route accepts (${limit} bytes)`
  }
  return undefined
}

/** Maps Fastify's own errors to the catalogue's codes. */
function fastifyErrorCode (err: FastifyError): { status: number, code: string } | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { status: 413, code: 'payload_too_large' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { status: 415, code: 'unsupported_media_type' }
  }
  if (err.validation !== undefined) return { status: 400, code: 'invalid_payload' }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: err.statusCode === 404 ? 'not_found' : 'invalid_payload' }
  }
  return undefined
}

/**
 * `body.to must match pattern …`, naming the field, also for an unexpected property; a value
 * outside a fixed set (`enum`, or a union of constants, which AJV reports one `const` error per
 * alternative) lists the allowed values.
 */
function validationMessage (err: FastifyError): string {
  const first = err.validation?.[0]
  const extra = first?.params?.additionalProperty
  const where = `${err.validationContext ?? 'request'}${first?.instancePath ?? ''}`.replace(/\//g, '.')
  if (typeof extra === 'string') return `${where}.${extra} is not a known property`
  const allowed = first?.keyword === 'enum'
    ? first.params.allowedValues as unknown[]
    : first?.keyword === 'const'
      ? (err.validation ?? []).filter((e) => e.keyword === 'const' && e.instancePath === first.instancePath).map((e) => e.params.allowedValue)
      : undefined
  if (allowed !== undefined) return `${where} must be one of: ${allowed.map(String).join(', ')}`
  return `${where} ${first?.message ?? 'is invalid'}`
}

/** Installs the error handler and the JSON 404 handler on `app`. */
export function installErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    let status: number
    let code: string
    let message: string
    let fields: Readonly<Record<string, string>> | undefined
    if (err instanceof AppError) {
      status = err.statusCode; code = err.code; message = err.message; fields = err.fields
      if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS))
    } else if (isDatabaseUnavailableError(err) || isTransientConflict(err)) {
      const unavailable = databaseUnavailable(err)
      status = unavailable.statusCode; code = unavailable.code; message = unavailable.message
      reply.header('retry-after', String(unavailable.retryAfterS))
    } else {
      const mapped = fastifyErrorCode(err)
      if (mapped !== undefined) {
        status = mapped.status; code = mapped.code
        message = err.validation !== undefined
          ? validationMessage(err)
          : bodyMessage(err, request) ?? err.message
      } else {
        status = 500; code = 'internal_error'; message = 'Internal server error'
      }
    }
    if (status >= 500) request.log.error({ err }, 'request failed')
    else addLogFields(request, { code, error: message })
    return reply.code(status).send({ ...fields, code, message })
  })

  app.setNotFoundHandler((request, reply) => reply.code(404).send({
    code: 'not_found', message: `Route ${request.method} ${request.url.split('?')[0]} not found`
  }))
}
