import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// Money paths (docs/fallback.md, "Guarantees"): fencing tokens for the two leases that guard a
// Twilio create (a fallback attempt, an Idempotency-Key claim). Every claim takes the next
// generation; completing, linking or releasing requires the generation one still holds, so a worker
// or request whose lease ran out and was taken over can change nothing.
// Reconciliation: how often a delivered WhatsApp message was looked up again for its `read`.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('fallbacks')
    .addColumn('lease_generation', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema.alterTable('idempotency_keys')
    .addColumn('lease_generation', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute()
  await db.schema.alterTable('messages')
    .addColumn('reconcile_read_checks', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()
  // Delivered messages still worth a second look, by delivery time (src/maintenance/reconcile.ts).
  await sql`
    create index messages_read_recheck_idx on messages (delivered_at)
    where reconcile_gave_up_at is null and status in ('delivered', 'email.delivered')
  `.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('messages_read_recheck_idx').execute()
  await db.schema.alterTable('messages').dropColumn('reconcile_read_checks').execute()
  await db.schema.alterTable('idempotency_keys').dropColumn('lease_generation').execute()
  await db.schema.alterTable('fallbacks').dropColumn('lease_generation').execute()
}
