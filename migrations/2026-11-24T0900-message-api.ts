import { sql, type Kysely } from 'kysely'

// Frozen in time. Fields the REST API sets on messages, and the stream's notification trigger.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('messages')
    .addColumn('external_id', 'text')
    .addColumn('metadata', 'jsonb')
    .execute()
  await db.schema.createIndex('messages_external_id_idx')
    .on('messages').column('external_id').where(sql.ref('external_id'), 'is not', null).execute()
  await db.schema.createIndex('messages_status_created_at_idx')
    .on('messages').columns(['status', 'created_at', 'sid']).execute()

  // Wake stream listeners when events commit (NOTIFY is delivered at commit; one per statement).
  await sql`
    create function tidings_notify_events() returns trigger language plpgsql as $$
    begin
      perform pg_notify('tidings_events', '');
      return null;
    end $$`.execute(db)
  await sql`
    create trigger message_events_notify after insert on message_events
    for each statement execute function tidings_notify_events()`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists message_events_notify on message_events`.execute(db)
  await sql`drop function if exists tidings_notify_events()`.execute(db)
  await db.schema.dropIndex('messages_status_created_at_idx').execute()
  await db.schema.dropIndex('messages_external_id_idx').execute()
  await db.schema.alterTable('messages').dropColumn('metadata').dropColumn('external_id').execute()
}
