/**
 * A big `messages` table in one INSERT … SELECT generate_series (as bench/stats.ts seeds it, in
 * short): 30 days of SMS, WhatsApp and email with realistic statuses, then ANALYZE. For the load
 * isolation test and bench/isolation.ts.
 */
import pg from 'pg'

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
