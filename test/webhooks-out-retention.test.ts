import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import t from 'tap'
import { runRetention } from '../src/maintenance/retention.ts'
import { createTestDatabase } from './helpers/database.ts'

t.test('retention deletes finished deliveries older than RETENTION_DAYS and the change log already read; pending ones stay', async (t) => {
  const { db } = await createTestDatabase(t)
  const sub = randomUUID()
  await sql`insert into webhook_subscriptions (id, api_key_name, url, event_types, secret_ciphertext) values (${sub}, 'billing', 'https://x.example', '{message.status}', 'v1.x.y.z')`.execute(db)
  const old = new Date(Date.now() - 10 * 86_400_000)
  await sql`
    insert into webhook_deliveries (subscription_id, event_id, event_type, payload, state, created_at) values
      (${sub}, 'a', 'message.status', '{}', 'delivered', ${old}),
      (${sub}, 'b', 'message.status', '{}', 'failed', ${old}),
      (${sub}, 'c', 'message.status', '{}', 'pending', ${old}),
      (${sub}, 'd', 'message.status', '{}', 'delivered', now())`.execute(db)
  await sql`insert into webhook_outbox (kind, ref_id, state) select 'engagement', g, 'opened' from generate_series(1, 5) g`.execute(db)
  await sql`update webhook_cursors set last_id = 3 where name = 'webhook_outbox'`.execute(db)

  await runRetention(db, { days: 5, batchSize: 1, pauseMs: 1 })
  const { rows } = await sql<{ event_id: string }>`select event_id from webhook_deliveries order by event_id`.execute(db)
  t.same(rows.map((r) => r.event_id), ['c', 'd'], 'old finished deliveries deleted; pending and recent kept')
  const { rows: outbox } = await sql<{ id: string }>`select id::text as id from webhook_outbox order by id`.execute(db)
  t.same(outbox.map((r) => r.id), ['4', '5'], 'only the change log the dispatcher has read is deleted')
})
