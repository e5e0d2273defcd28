import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// Email through Resend (issue 4): email fields and engagement on messages, the Svix delivery id on
// events, and the engagement log (opens and clicks repeat, so they are not status events).

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('messages')
    .addColumn('subject', 'text')
    // Every recipient of the email, in the order Resend lists them; `to_address` is the first.
    .addColumn('recipients', sql`text[]`)
    .addColumn('tags', 'jsonb')
    .addColumn('bounced_at', 'timestamptz')
    .addColumn('complained_at', 'timestamptz')
    .addColumn('first_opened_at', 'timestamptz')
    .addColumn('open_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('first_clicked_at', 'timestamptz')
    .addColumn('click_count', 'integer', (c) => c.notNull().defaultTo(0))
    .execute()

  await db.schema.alterTable('message_events')
    // The provider's delivery id (Resend `svix-id`): the same on every retry of one delivery.
    .addColumn('svix_id', 'text')
    // The provider's own time of the event (Resend's `created_at`), when it gives one.
    .addColumn('occurred_at', 'timestamptz')
    .execute()
  // A retried delivery is one event (NULL for Twilio, whose callbacks carry no delivery id).
  await db.schema.alterTable('message_events')
    .addUniqueConstraint('message_events_svix_id_key', ['svix_id'])
    .execute()

  await db.schema.createTable('email_engagements')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('message_sid', 'text', (c) => c.notNull().references('messages.sid').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('opened', 'clicked')`))
    .addColumn('svix_id', 'text', (c) => c.notNull())
    .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('link', 'text')
    .addColumn('ip_address', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('raw', 'jsonb', (c) => c.notNull())
    .addUniqueConstraint('email_engagements_svix_id_key', ['svix_id'])
    .execute()

  await db.schema.createIndex('email_engagements_sid_id_idx')
    .on('email_engagements').columns(['message_sid', 'id']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('email_engagements').execute()
  await db.schema.alterTable('message_events')
    .dropConstraint('message_events_svix_id_key')
    .execute()
  await db.schema.alterTable('message_events')
    .dropColumn('svix_id')
    .dropColumn('occurred_at')
    .execute()
  await db.schema.alterTable('messages')
    .dropColumn('subject')
    .dropColumn('recipients')
    .dropColumn('tags')
    .dropColumn('bounced_at')
    .dropColumn('complained_at')
    .dropColumn('first_opened_at')
    .dropColumn('open_count')
    .dropColumn('first_clicked_at')
    .dropColumn('click_count')
    .execute()
}
