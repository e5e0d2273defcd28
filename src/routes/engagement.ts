/**
 * Email engagement in the read API: the `engagement` list of `GET /v1/messages/:sid/events`
 * (every distinct open and click, in the order received).
 */
import { Type } from '@sinclair/typebox'
import type { Kysely } from 'kysely'
import type { Database, EmailEngagementRow } from '../db/database.ts'
import { EngagementEntry, type EngagementEntryBody } from './schemas.ts'

export const EngagementList = Type.Array(EngagementEntry, { description: 'Email opens and clicks in the order received; empty for other channels' })

/** The API shape of an engagement row (an open or a click). */
export function toEngagementBody (row: EmailEngagementRow): EngagementEntryBody {
  return {
    id: String(row.id),
    kind: row.kind,
    occurred_at: row.occurred_at.toISOString(),
    received_at: row.received_at.toISOString(),
    link: row.link,
    ip_address: row.ip_address,
    user_agent: row.user_agent,
    svix_id: row.svix_id
  }
}

/** A message's opens and clicks, in the order received (none for non-email messages). */
export async function listEngagementOf (db: Kysely<Database>, sid: string): Promise<EngagementEntryBody[]> {
  const rows = await db.selectFrom('email_engagements').selectAll()
    .where('message_sid', '=', sid)
    .orderBy('id')
    .execute()
  return rows.map(toEngagementBody)
}
