import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// WhatsApp → SMS fallback (docs/fallback.md): a per-message opt-out flag, the links between a
// WhatsApp message and its SMS fallback, and one `fallbacks` row per original message.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('messages')
    .addColumn('fallback', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('fallback_of', 'text', (c) => c.references('messages.sid').onDelete('set null'))
    .addColumn('fallback_sid', 'text')
    .execute()

  await db.schema.createTable('fallbacks')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    // One fallback per original message, whatever the number of callbacks, workers or replicas.
    .addColumn('original_sid', 'text', (c) => c.notNull().unique().references('messages.sid').onDelete('cascade'))
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('trigger_error_code', 'text')
    .addColumn('to_address', 'text')
    .addColumn('sms_from', 'text')
    .addColumn('messaging_service_sid', 'text')
    .addColumn('fallback_sid', 'text')
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('attempt_started_at', 'timestamptz')
    .addColumn('lease_until', 'timestamptz')
    .addColumn('job_id', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  // The cost guard counts a recipient's fallbacks of the last 24 h.
  await db.schema.createIndex('fallbacks_to_address_created_at_idx')
    .on('fallbacks').columns(['to_address', 'created_at']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('fallbacks').execute()
  await db.schema.alterTable('messages')
    .dropColumn('fallback_sid')
    .dropColumn('fallback_of')
    .dropColumn('fallback')
    .execute()
}
