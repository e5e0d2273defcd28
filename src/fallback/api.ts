/**
 * The fallback's part of the read API: what `GET /v1/messages/:sid` adds to a message.
 */
import type { Kysely } from 'kysely'
import type { Database, MessageRow } from '../db/database.ts'
import type { FallbackFieldsBody } from '../routes/schemas.ts'
import { findFallbackOf } from './repository.ts'

export { FallbackFields } from '../routes/schemas.ts'

/** `fallback_enabled`, `fallback_of`, and the `fallback` of `row` with its SMS's current status. */
export async function fallbackFieldsOf (db: Kysely<Database>, row: MessageRow): Promise<FallbackFieldsBody> {
  const f = await findFallbackOf(db, row.sid)
  return {
    fallback_enabled: row.fallback,
    fallback_of: row.fallback_of,
    fallback: f === undefined
      ? null
      : {
          state: f.state,
          reason: f.reason,
          sid: f.fallback_sid,
          status: f.sms_status,
          trigger_error_code: f.trigger_error_code,
          error_code: f.error_code,
          error_message: f.error_message,
          attempts: f.attempts,
          created_at: f.created_at.toISOString(),
          updated_at: f.updated_at.toISOString()
        }
  }
}
