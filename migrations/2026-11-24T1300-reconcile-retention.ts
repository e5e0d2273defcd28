import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// Reconciliation (README "Reconciliation"): when a message was last fetched from its provider, how
// often, and when Tidings gave up on it. Retention (README "Retention") deletes engagement by age.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('messages')
    .addColumn('reconciled_at', 'timestamptz')
    .addColumn('reconcile_attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('reconcile_gave_up_at', 'timestamptz')
    .execute()

  // The pass looks for messages without a final status, least recently looked at first. Final
  // messages (most of the table) stay out of the index: the predicate lists every final status
  // (src/domain/status-precedence.ts, FINAL_STATUSES) as it was when this migration was written.
  await sql`
    create index messages_reconcile_due_idx on messages ((coalesce(reconciled_at, updated_at)))
    where reconcile_gave_up_at is null and (status is null or status not in (
      'canceled', 'undelivered', 'failed', 'partially_delivered', 'delivered', 'read',
      'email.failed', 'email.suppressed', 'email.bounced', 'email.delivered', 'email.complained'))
  `.execute(db)

  // Retention deletes engagement by age (message_events already has an index on received_at).
  await db.schema.createIndex('email_engagements_received_at_idx')
    .on('email_engagements').column('received_at').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('email_engagements_received_at_idx').execute()
  await db.schema.dropIndex('messages_reconcile_due_idx').execute()
  await db.schema.alterTable('messages')
    .dropColumn('reconcile_gave_up_at')
    .dropColumn('reconcile_attempts')
    .dropColumn('reconciled_at')
    .execute()
}
