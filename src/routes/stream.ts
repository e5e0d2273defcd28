/**
 * `GET /v1/stream`: every new status event as Server-Sent Events, as it commits, on any replica.
 * `id:` is the event id, so a client that reconnects with `Last-Event-ID` gets everything after
 * it without gaps. A client that does not read fast enough is disconnected once its unsent
 * output passes `maxBufferBytes` (it resumes with `Last-Event-ID`), so no client holds memory
 * without bound or slows the webhooks, which never wait for the stream.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Gauge } from 'prom-client'
import { AppError } from '../errors.ts'
import type { EventHub, StreamEvent } from '../stream/event-hub.ts'
import { ErrorBody } from './schemas.ts'

export interface StreamOptions {
  hub: EventHub
  /** Interval between heartbeat comments, in ms. */
  heartbeatMs: number
  /** Unsent bytes allowed per client before it is disconnected. */
  maxBufferBytes: number
  /** Concurrent streams per API key in this process (`STREAMS_PER_KEY`); more get 429. */
  streamsPerKey: number
}

function frame (e: StreamEvent): string {
  return `id: ${e.id}\nevent: status\ndata: ${JSON.stringify(e)}\n\n`
}

export const streamRoutes: FastifyPluginAsyncTypebox<StreamOptions> = async (app, opts) => {
  /** Open streams per API key name. */
  const open = new Map<string, number>()
  // eslint-disable-next-line no-new -- registered in the app's registry, read at scrape time
  new Gauge({
    name: 'tidings_stream_clients',
    help: 'Stream subscribers registered in the event hub (live or catching up)',
    registers: [app.metrics.registry],
    collect () { this.set(opts.hub.subscriberCount) }
  })

  app.get('/stream', {
    schema: {
      summary: 'Live status events (Server-Sent Events)',
      querystring: Type.Object({
        channel: Type.Optional(Type.Union(['sms', 'mms', 'whatsapp', 'email'].map((c) => Type.Literal(c)))),
        sid: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }))
      }, { additionalProperties: false }),
      headers: Type.Object({ 'last-event-id': Type.Optional(Type.String()) }),
      response: { 400: ErrorBody, 401: ErrorBody, 429: ErrorBody }
    }
  }, async (request, reply) => {
    const rawLast = request.headers['last-event-id']
    let lastEventId: bigint | undefined
    if (rawLast !== undefined && rawLast !== '') {
      if (!/^\d{1,19}$/.test(rawLast)) throw new AppError('invalid_payload', 'headers.last-event-id must be an event id')
      lastEventId = BigInt(rawLast)
    }
    const key = request.apiKeyName ?? request.ip
    const mine = open.get(key) ?? 0
    if (mine >= opts.streamsPerKey) {
      throw new AppError('rate_limited', `This API key already has ${mine} open streams, the most allowed per key (STREAMS_PER_KEY); close one first`)
    }
    open.set(key, mine + 1)
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no'
    })
    res.write('retry: 2000\n: connected\n\n')
    let closed = false
    // Aborted on every way out: unregisters the subscriber, and stops a catch-up in progress.
    const left = new AbortController()
    const end = (reason: string): void => {
      if (closed) return
      closed = true
      clearInterval(heartbeat)
      left.abort()
      const n = (open.get(key) ?? 1) - 1
      if (n > 0) open.set(key, n); else open.delete(key)
      request.log.info({ reason }, 'stream closed')
      res.end()
      if (reason === 'slow_client') res.destroy()
    }
    const write = (chunk: string): void => {
      if (closed) return
      if (res.writableLength > opts.maxBufferBytes) { end('slow_client'); return }
      res.write(chunk)
    }
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), opts.heartbeatMs)
    request.raw.on('close', () => end('client_closed'))
    try {
      await opts.hub.subscribe({
        filter: { channel: request.query.channel, sid: request.query.sid },
        deliver: (events) => write(events.map(frame).join('')),
        close: () => end('server_closing')
      }, lastEventId, left.signal)
    } catch (err) {
      // The client reconnects (retry: 2000) and resumes with Last-Event-ID.
      if (!closed) request.log.warn({ err }, 'stream: catch-up failed; closing the stream')
      end('catch_up_failed')
    }
  })
}
