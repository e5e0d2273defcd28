import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('messages')
    .addColumn('sid', 'text', (c) => c.primaryKey())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('account_sid', 'text')
    .addColumn('messaging_service_sid', 'text')
    .addColumn('from_address', 'text')
    .addColumn('to_address', 'text')
    .addColumn('status', 'text')
    .addColumn('status_rank', 'smallint', (c) => c.notNull().defaultTo(0))
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('body', 'text')
    .addColumn('sent_at', 'timestamptz')
    .addColumn('delivered_at', 'timestamptz')
    .addColumn('read_at', 'timestamptz')
    .addColumn('failed_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema.createIndex('messages_to_address_created_at_idx')
    .on('messages').columns(['to_address', 'created_at']).execute()
  await db.schema.createIndex('messages_status_updated_at_idx')
    .on('messages').columns(['status', 'updated_at']).execute()
  await db.schema.createIndex('messages_created_at_sid_idx')
    .on('messages').columns(['created_at', 'sid']).execute()

  await db.schema.createTable('message_events')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('message_sid', 'text', (c) => c.notNull().references('messages.sid').onDelete('cascade'))
    .addColumn('message_status', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('from_address', 'text')
    .addColumn('to_address', 'text')
    .addColumn('error_code', 'text')
    .addColumn('error_message', 'text')
    .addColumn('raw', 'jsonb', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('carrier_at', 'timestamptz')
    .addColumn('source', 'text', (c) => c.notNull().defaultTo('webhook'))
    .addUniqueConstraint('message_events_sid_status_key', ['message_sid', 'message_status'])
    .execute()

  // Timelines read one message's events in id order.
  await db.schema.createIndex('message_events_sid_id_idx')
    .on('message_events').columns(['message_sid', 'id']).execute()
  await db.schema.createIndex('message_events_received_at_idx')
    .on('message_events').column('received_at').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('message_events').execute()
  await db.schema.dropTable('messages').execute()
}
