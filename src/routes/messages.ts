/**
 * Read API: `GET /v1/messages/:sid` and `GET /v1/messages/:sid/events`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { FallbackFields, fallbackFieldsOf } from '../fallback/api.ts'
import { Type } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { Database, MessageEventRow, MessageRow } from '../db/database.ts'
import { AppError } from '../errors.ts'
import { ErrorBody, Message, MessageEvent, MessageSidParams, type MessageBody, type MessageEventBody } from './schemas.ts'

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
    status: row.status,
    error_code: row.error_code,
    error_message: row.error_message,
    sent_at: iso(row.sent_at),
    delivered_at: iso(row.delivered_at),
    read_at: iso(row.read_at),
    failed_at: iso(row.failed_at),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString()
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
    params: row.raw
  }
}

async function findMessage (db: Kysely<Database>, sid: string): Promise<MessageRow> {
  const row = await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirst()
  if (row === undefined) throw new AppError('message_not_found', `No message with sid ${sid}`)
  return row
}

export const messageRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database> }> = async (app, { db }) => {
  const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 503: ErrorBody }

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
      response: { 200: Type.Object({ sid: Type.String(), data: Type.Array(MessageEvent) }), ...errors }
    }
  }, async (request) => {
    const { sid } = request.params
    await findMessage(db, sid)
    const rows = await db.selectFrom('message_events').selectAll()
      .where('message_sid', '=', sid)
      .orderBy('id')
      .execute()
    return { sid, data: rows.map(toEventBody) }
  })
}
