import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// The webhook dispatcher's own wake-up: a statement that writes the change log (fallback state
// changes, email engagement) notifies `tidings_outbox` at commit. Until now the dispatcher woke on
// `tidings_events`, sent by every committed event batch, and spent a horizon check and a cursor
// transaction on each although status events never reach the change log.

export async function up (db: Kysely<any>): Promise<void> {
  await sql`
    create function tidings_notify_outbox() returns trigger language plpgsql as $$
    begin
      perform pg_notify('tidings_outbox', '');
      return null;
    end $$`.execute(db)
  await sql`
    create trigger webhook_outbox_notify after insert on webhook_outbox
    for each statement execute function tidings_notify_outbox()`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists webhook_outbox_notify on webhook_outbox`.execute(db)
  await sql`drop function if exists tidings_notify_outbox()`.execute(db)
}
