/**
 * The email engagement log: every distinct `email.opened` / `email.clicked` delivery (by
 * `svix-id`) in `email_engagements`, and the message's counters and first times.
 *
 * Opens and clicks repeat for one email, so they cannot be status events (one row per
 * `(message_sid, message_status)`). A retried delivery has the same `svix-id`: its insert is a
 * no-op and the counters are incremented only when the insert happened, in the same transaction,
 * with the message row locked by the upsert (as `recordEvents` does). An engagement event for a message
 * of another account cannot happen (Resend has no accounts in its payload), so none is checked.
 */
import { sql, type Kysely } from 'kysely'
import type { Database, MessageRow } from '../db/database.ts'
import type { IncomingEngagement } from '../domain/resend-event.ts'
import { upsertMessages } from './batch-statements.ts'

export interface EngagementOutcome {
  sid: string
  outcome: 'recorded' | 'duplicate'
  openCount: number
  clickCount: number
}

/**
 * Records one open or click; answers only after the transaction committed.
 * @throws the database's error; nothing is committed then, and the caller must not acknowledge.
 */
export async function recordEngagement (db: Kysely<Database>, e: IncomingEngagement): Promise<EngagementOutcome> {
  return await db.transaction().execute(async (trx) => {
    const message = (await upsertMessages(trx, [e.message])).get(e.message.sid) as MessageRow
    const inserted = await trx.insertInto('email_engagements')
      .values({
        message_sid: e.message.sid,
        kind: e.kind,
        svix_id: e.svixId,
        occurred_at: e.occurredAt,
        received_at: e.receivedAt,
        link: e.link,
        ip_address: e.ipAddress,
        user_agent: e.userAgent,
        raw: JSON.stringify(e.raw)
      })
      .onConflict((oc) => oc.column('svix_id').doNothing())
      .returning('id')
      .executeTakeFirst()
    if (inserted === undefined) {
      return { sid: message.sid, outcome: 'duplicate', openCount: message.open_count, clickCount: message.click_count }
    }
    // least() ignores NULL, so the first time is the earliest whatever the arrival order.
    const updated = await trx.updateTable('messages')
      .set(e.kind === 'opened'
        ? { open_count: sql`open_count + 1`, first_opened_at: sql`least(first_opened_at, ${e.occurredAt}::timestamptz)`, updated_at: sql`now()` }
        : { click_count: sql`click_count + 1`, first_clicked_at: sql`least(first_clicked_at, ${e.occurredAt}::timestamptz)`, updated_at: sql`now()` })
      .where('sid', '=', e.message.sid)
      .returning(['open_count', 'click_count'])
      .executeTakeFirstOrThrow()
    return { sid: message.sid, outcome: 'recorded', openCount: updated.open_count, clickCount: updated.click_count }
  })
}
