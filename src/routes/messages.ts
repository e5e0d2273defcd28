/**
 * Read API: `GET /v1/messages/:sid` and `GET /v1/messages/:sid/events`.
 * Emails also carry their engagement: counters on the message, and every distinct open and click
 * in `engagement` next to the status timeline in `/events` (see `./engagement.ts`).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { FallbackFields, fallbackFieldsOf } from '../fallback/api.ts'
import { Type } from '@sinclair/typebox'
import { EngagementList, listEngagementOf } from './engagement.ts'
import type { Kysely } from 'kysely'
import type { Channel, Database, MessageEventRow, MessageRow } from '../db/database.ts'
import { findMessageBySid, listEventsOf, listMessages, type MessageCursor } from '../db/messages.ts'
import { normalizeAddress } from '../domain/channel.ts'
import { AppError } from '../errors.ts'
import { realTime, timeQuery } from './query-time.ts'
import { ErrorBody, Message, MessageEvent, MessageListQuery, MessageSidParams, type MessageBody, type MessageEventBody } from './schemas.ts'

const iso = (d: Date | null): string | null => d === null ? null : d.toISOString()

/** The API shape of a message row. */
export function toMessageBody (row: MessageRow): MessageBody {
  return {
    sid: row.sid,
    provider: row.provider,
    channel: row.channel,
    account_sid: row.account_sid,
    messaging_service_sid: row.messaging_service_sid,
    from: row.from_address,
    to: row.to_address,
    external_id: row.external_id,
    metadata: row.metadata,
    status: row.status,
    error_code: row.error_code,
    error_message: row.error_message,
    sent_at: iso(row.sent_at),
    delivered_at: iso(row.delivered_at),
    read_at: iso(row.read_at),
    failed_at: iso(row.failed_at),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    // Email (Resend) fields.
    subject: row.subject,
    recipients: row.recipients,
    tags: row.tags,
    bounced_at: iso(row.bounced_at),
    complained_at: iso(row.complained_at),
    engagement: row.channel !== 'email'
      ? null
      : {
          open_count: row.open_count,
          first_opened_at: iso(row.first_opened_at),
          click_count: row.click_count,
          first_clicked_at: iso(row.first_clicked_at)
        }
  }
}

/** The API shape of an event row. */
export function toEventBody (row: MessageEventRow): MessageEventBody {
  return {
    id: String(row.id),
    status: row.message_status,
    channel: row.channel,
    from: row.from_address,
    to: row.to_address,
    error_code: row.error_code,
    error_message: row.error_message,
    received_at: row.received_at.toISOString(),
    carrier_at: iso(row.carrier_at),
    source: row.source,
    params: row.raw,
    occurred_at: iso(row.occurred_at),
    svix_id: row.svix_id
  }
}

async function findMessage (db: Kysely<Database>, sid: string): Promise<MessageRow> {
  const row = await findMessageBySid(db, sid)
  if (row === undefined) throw new AppError('message_not_found', `No message with sid ${sid}`)
  return row
}

/** Cursors are opaque to callers: base64url of the keyset position. */
function encodeCursor (c: MessageCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.sid])).toString('base64url')
}

function decodeCursor (raw: string): MessageCursor {
  try {
    const [createdAt, sid] = JSON.parse(Buffer.from(raw, 'base64url').toString()) as unknown[]
    // Every part checked as strictly as the API writes it: a crafted cursor must not reach
    // PostgreSQL as an impossible date or a NUL.
    if (typeof createdAt === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/.test(createdAt) &&
      realTime(`${createdAt.slice(0, 23)}Z`) !== undefined && typeof sid === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(sid)) {
      return { createdAt, sid }
    }
  } catch {}
  throw new AppError('invalid_payload', 'querystring.cursor is not a cursor returned by this API')
}

export const messageRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database> }> = async (app, { db }) => {
  const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 503: ErrorBody }

  app.get('/messages', {
    schema: {
      summary: 'Messages, newest first, filtered, with keyset pagination',
      querystring: MessageListQuery,
      response: { 200: Type.Object({ data: Type.Array(Message), next_cursor: Type.Union([Type.String(), Type.Null()]) }), ...errors }
    }
  }, async (request) => {
    const q = request.query
    const since = timeQuery('since', q.since)
    const until = timeQuery('until', q.until)
    // Ajv's integer check lets Infinity through (`limit=Infinity`, `limit=1e400`).
    if (q.limit !== undefined && !Number.isSafeInteger(q.limit)) throw new AppError('invalid_payload', 'querystring.limit must be an integer from 1 to 200')
    const { rows, next } = await listMessages(db, {
      status: q.status,
      channel: q.channel as Channel | undefined,
      to: normalizeAddress(q.to) ?? undefined,
      externalId: q.external_id,
      since,
      until
    }, q.limit ?? 50, q.cursor === undefined ? undefined : decodeCursor(q.cursor))
    return { data: rows.map(toMessageBody), next_cursor: next === null ? null : encodeCursor(next) }
  })

  app.get('/messages/:sid', {
    schema: {
      summary: 'A message with its current status',
      params: MessageSidParams,
      response: { 200: Type.Composite([Message, FallbackFields]), ...errors }
    }
  }, async (request) => {
    const row = await findMessage(db, request.params.sid)
    return { ...toMessageBody(row), ...await fallbackFieldsOf(db, row) }
  })

  app.get('/messages/:sid/events', {
    schema: {
      summary: "A message's timeline, in the order received",
      params: MessageSidParams,
      response: { 200: Type.Object({ sid: Type.String(), data: Type.Array(MessageEvent), engagement: EngagementList }), ...errors }
    }
  }, async (request) => {
    const { sid } = request.params
    await findMessage(db, sid)
    return { sid, data: (await listEventsOf(db, sid)).map(toEventBody), engagement: await listEngagementOf(db, sid) }
  })
}
