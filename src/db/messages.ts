/**
 * Message and event queries for the REST API. Functions take `db` (or a transaction) first.
 */
import { sql, type Kysely } from 'kysely'
import type { Channel, Database, MessageEventRow, MessageRow } from './database.ts'

/** `GET /v1/messages` filters. Times are inclusive `since`, exclusive `until`. */
export interface MessageFilter {
  status?: string
  channel?: Channel
  to?: string
  externalId?: string
  since?: Date
  until?: Date
}

/** A keyset position: the exact `created_at` (µs, UTC text) and `sid` of the last row returned. */
export interface MessageCursor {
  createdAt: string
  sid: string
}

export async function findMessageBySid (db: Kysely<Database>, sid: string): Promise<MessageRow | undefined> {
  return await db.selectFrom('messages').selectAll().where('sid', '=', sid).executeTakeFirst()
}

export async function listEventsOf (db: Kysely<Database>, sid: string): Promise<MessageEventRow[]> {
  return await db.selectFrom('message_events').selectAll().where('message_sid', '=', sid).orderBy('id').execute()
}

/**
 * Messages newest first, by `(created_at, sid)` descending. Keyset pagination over immutable
 * columns: every row that existed when paging began is returned exactly once, whatever is inserted
 * meanwhile.
 * @param limit - page size (1–200).
 * @returns the page, and the cursor of its last row when there may be more.
 */
export async function listMessages (
  db: Kysely<Database>,
  filter: MessageFilter,
  limit: number,
  after?: MessageCursor
): Promise<{ rows: MessageRow[], next: MessageCursor | null }> {
  let q = db.selectFrom('messages')
    .selectAll()
    .select(sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`.as('created_at_exact'))
  if (filter.status !== undefined) q = q.where('status', '=', filter.status)
  if (filter.channel !== undefined) q = q.where('channel', '=', filter.channel)
  if (filter.to !== undefined) q = q.where('to_address', '=', filter.to)
  if (filter.externalId !== undefined) q = q.where('external_id', '=', filter.externalId)
  if (filter.since !== undefined) q = q.where('created_at', '>=', filter.since)
  if (filter.until !== undefined) q = q.where('created_at', '<', filter.until)
  if (after !== undefined) {
    q = q.where(({ eb, refTuple, tuple }) => eb(
      refTuple('created_at', 'sid'), '<', tuple(sql<Date>`(${after.createdAt}::timestamp at time zone 'UTC')`, after.sid) as never
    ))
  }
  const rows = await q.orderBy('created_at', 'desc').orderBy('sid', 'desc').limit(limit + 1).execute()
  const page = rows.slice(0, limit)
  const last = page.at(-1)
  return {
    rows: page,
    next: rows.length > limit && last !== undefined ? { createdAt: last.created_at_exact, sid: last.sid } : null
  }
}
