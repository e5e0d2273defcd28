/**
 * `PUT /v1/messages/:sid`: another system sent a message through Twilio and tells Tidings about
 * it, so that the SMS fallback has its text and flag and lookups by `external_id` work.
 *
 * It merges with whatever callbacks recorded first: status, error and timestamps are never touched
 * (only callbacks and the send path decide them); fields still empty are filled; the channel comes
 * from the addresses (`whatsapp:` prefix) when the message is new. A field that already holds a
 * *different* value is a `409 registration_conflict` naming it, so repeating a registration is
 * harmless (200) and a contradictory one is not silently dropped. `fallback` is the exception: it is
 * the caller's switch and is set whenever given; `false` also cancels a fallback already decided
 * whose SMS has not left (docs/fallback.md, "Guarantees").
 */
import { sql, type Kysely } from 'kysely'
import type { Database, MessageRow } from '../db/database.ts'
import { detectTwilioChannel, normalizeAddress } from '../domain/channel.ts'
import { AppError } from '../errors.ts'
import { cancelPendingFallback } from '../fallback/repository.ts'
import { checkStorable } from './check-storable.ts'
import { canonicalJson } from './send-message.ts'

export interface RegisterRequest {
  to: string
  from?: string
  messaging_service_sid?: string
  account_sid?: string
  body?: string
  external_id?: string
  metadata?: Record<string, unknown>
  fallback?: boolean
}

/**
 * Creates or merges the message. @returns the row and whether it was created.
 * @throws {AppError} `invalid_payload` naming a field PostgreSQL could not store (`checkStorable`);
 *   `registration_conflict` when a given field differs from the stored value.
 */
export async function registerMessage (db: Kysely<Database>, sid: string, r: RegisterRequest): Promise<{ created: boolean, row: MessageRow }> {
  checkStorable({ ...r })
  const channel = detectTwilioChannel({ sid, from: r.from, to: r.to })
  const given = {
    account_sid: r.account_sid ?? null,
    messaging_service_sid: r.messaging_service_sid ?? null,
    from_address: normalizeAddress(r.from),
    to_address: normalizeAddress(r.to),
    body: r.body ?? null,
    external_id: r.external_id ?? null
  }
  const metadata = r.metadata === undefined ? null : JSON.stringify(r.metadata)
  return await db.transaction().execute(async (trx) => {
    const inserted = await trx.insertInto('messages')
      .values({
        sid,
        provider: 'twilio',
        channel,
        ...given,
        metadata,
        fallback: r.fallback ?? true,
        status: null,
        error_code: null,
        error_message: null,
        sent_at: null,
        delivered_at: null,
        read_at: null,
        failed_at: null
      })
      .onConflict((oc) => oc.column('sid').doNothing())
      .returningAll()
      .executeTakeFirst()
    if (inserted !== undefined) return { created: true, row: inserted }

    // Locked until commit, so a callback arriving meanwhile waits and then sees the merged row.
    const row = await trx.selectFrom('messages').selectAll().where('sid', '=', sid).forUpdate().executeTakeFirstOrThrow()
    const conflict = (field: string): AppError => new AppError('registration_conflict', `body.${field} differs from what Tidings already has for ${sid}`)
    if (row.provider !== 'twilio') throw conflict('sid')
    const names: Record<keyof typeof given, string> = {
      account_sid: 'account_sid',
      messaging_service_sid: 'messaging_service_sid',
      from_address: 'from',
      to_address: 'to',
      body: 'body',
      external_id: 'external_id'
    }
    for (const key of Object.keys(given) as Array<keyof typeof given>) {
      if (given[key] !== null && row[key] !== null && row[key] !== given[key]) throw conflict(names[key])
    }
    // Callbacks detect the channel the same way (whatsapp: prefix, MM SID), so a difference is real.
    if (row.channel !== channel && (row.from_address !== null || row.to_address !== null)) throw conflict('to')
    if (r.metadata !== undefined && row.metadata !== null && canonicalJson(row.metadata) !== canonicalJson(r.metadata)) throw conflict('metadata')

    const merged = await trx.updateTable('messages')
      .set({
        account_sid: row.account_sid ?? given.account_sid,
        messaging_service_sid: row.messaging_service_sid ?? given.messaging_service_sid,
        from_address: row.from_address ?? given.from_address,
        to_address: row.to_address ?? given.to_address,
        body: row.body ?? given.body,
        external_id: row.external_id ?? given.external_id,
        metadata: row.metadata !== null ? JSON.stringify(row.metadata) : metadata,
        // A row created by a callback that carried no addresses (none today) takes the given channel.
        channel: row.from_address === null && row.to_address === null ? channel : row.channel,
        fallback: r.fallback ?? row.fallback,
        updated_at: sql`now()`
      })
      .where('sid', '=', sid)
      .returningAll()
      .executeTakeFirstOrThrow()
    // The opt-out wins until the SMS leaves: a fallback decided before this flag arrived is cancelled.
    if (r.fallback === false) await cancelPendingFallback(trx, sid)
    return { created: false, row: merged }
  })
}
