/**
 * A big `messages` table in one INSERT … SELECT generate_series (as bench/stats.ts seeds it, in
 * short): 30 days of SMS, WhatsApp and email with realistic statuses, then ANALYZE. For the load
 * isolation test and bench/isolation.ts.
 */
import type { Kysely } from 'kysely'
import pg from 'pg'
import type { Database, NewMessageRow } from '../../src/db/database.ts'
import { messageSid } from './app.ts'

/** A message as callbacks would have left it: what `insertStoredMessage` needs, the rest defaults. */
export type StoredMessage = Omit<Partial<NewMessageRow>, 'created_at'> & {
  channel: NewMessageRow['channel']
  status: string | null
  created_at: string | Date
}

/**
 * Inserts one message row directly (no events): a random SID unless `m.sid` is given, Resend for
 * email and Twilio otherwise, `updated_at` = `created_at`, every other field NULL unless given.
 * @returns its sid.
 */
export async function insertStoredMessage (db: Kysely<Database>, m: StoredMessage): Promise<string> {
  const sid = m.sid ?? (m.channel === 'email' ? `em_${messageSid().slice(2)}` : messageSid())
  await db.insertInto('messages').values({
    provider: m.channel === 'email' ? 'resend' : 'twilio',
    account_sid: null,
    messaging_service_sid: null,
    from_address: null,
    to_address: '+15550000000',
    error_code: null,
    error_message: null,
    body: null,
    sent_at: null,
    delivered_at: null,
    read_at: null,
    failed_at: null,
    ...m,
    sid,
    updated_at: m.created_at
  }).execute()
  return sid
}

/** Inserts `count` messages into the database at `url`. */
export async function seedMessages (url: string, count: number): Promise<void> {
  const client = new pg.Client({ connectionString: url, statement_timeout: 0 })
  await client.connect()
  try {
    await client.query(`
      insert into messages (sid, provider, channel, to_address, status, status_rank, error_code, sent_at, delivered_at, created_at, updated_at)
      select case when i % 10 = 9 then 'em_' else 'SM' end || md5('seed' || i::text),
        case when i % 10 = 9 then 'resend' else 'twilio' end,
        case when i % 10 < 6 then 'sms' when i % 10 < 9 then 'whatsapp' else 'email' end,
        '+1555' || lpad((i % 10000000)::text, 7, '0'),
        case when i % 10 = 9 then (case when r < 0.9 then 'email.delivered' else 'email.bounced' end)
             when r < 0.85 then 'delivered' when r < 0.95 then 'undelivered' else 'sent' end,
        0,
        case when i % 10 <> 9 and r >= 0.85 and r < 0.95 then (array['30003','30005','30006','63016'])[1 + (i % 4)] end,
        created + interval '2 seconds',
        case when r < 0.85 then created + interval '2 seconds' + (r * 120) * interval '1 second' end,
        created, created
      from (
        select i, ((i * 2654435761) % 1000003) / 1000003.0 as r,
          now() - (i::float8 / $1 * 30) * interval '1 day' as created
        from generate_series(1, $1::int) as i
      ) g`, [count])
    await client.query('analyze messages')
  } finally {
    await client.end()
  }
}
