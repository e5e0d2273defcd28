/**
 * JSON bodies of the `/v1` API, made storable at the door (`src/domain/storable.ts`): a NUL
 * anywhere, or nesting deeper than `MAX_JSON_DEPTH`, is a 400 naming the field (it was a 500 from
 * PostgreSQL, e.g. `external_id: "\u0000"` on `PUT /v1/messages/:sid`); a lone UTF-16 surrogate
 * is refused too: this is the caller's own input, which the caller can fix (a provider's is
 * normalised instead). Runs before schema validation, so routes only ever see storable values.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { RefusedInput, toStorable } from '../domain/storable.ts'
import type { Metrics } from '../metrics.ts'

async function storableBodyPlugin (app: FastifyInstance, opts: { metrics: Metrics }): Promise<void> {
  app.addHook('preValidation', async (request) => {
    if (request.body === null || typeof request.body !== 'object' || Buffer.isBuffer(request.body)) return
    try {
      request.body = toStorable(request.body, (reason) => {
        opts.metrics.inputNormalized.inc({ source: 'api', reason })
        request.log.info({ reason }, 'request body normalised to be stored')
      }, { prefix: 'body', refuseLoneSurrogates: true })
    } catch (err) {
      if (err instanceof RefusedInput) opts.metrics.inputRefused.inc({ source: 'api', reason: err.reason })
      throw err
    }
  })
}

/** Registered inside the `/v1` context (fastify-plugin: its hook covers every route there). */
export const storableBody = fp(storableBodyPlugin, { name: 'storable-body' })
