import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// Outbound status webhooks (docs/webhooks-out.md): subscriptions, their deliveries (the delivery
// queue itself; the recorder's hook writes those of status changes in the recording transaction),
// and a small change log that triggers fill for fallback state changes and email engagement, fanned
// out from committed rows by the dispatcher past its durable cursor.

export async function up (db: Kysely<any>): Promise<void> {
  await sql`
    create table webhook_subscriptions (
      id uuid primary key,
      api_key_name text not null,
      url text not null,
      description text,
      event_types text[] not null,
      channels text[],
      statuses text[],
      external_id_prefix text,
      enabled boolean not null default true,
      disabled_reason text,
      disabled_at timestamptz,
      failing_since timestamptz,
      secret_ciphertext text not null,
      previous_secret_ciphertext text,
      previous_secret_expires_at timestamptz,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db)
  await sql`create index webhook_subscriptions_key_idx on webhook_subscriptions (api_key_name, created_at, id)`.execute(db)

  await sql`
    create table webhook_deliveries (
      id bigint generated always as identity primary key,
      subscription_id uuid not null references webhook_subscriptions (id) on delete cascade,
      event_id text not null,
      event_type text not null,
      webhook_id text not null default ('msg_' || replace(gen_random_uuid()::text, '-', '')),
      payload jsonb not null,
      state text not null default 'pending',
      attempts integer not null default 0,
      next_attempt_at timestamptz not null default now(),
      last_attempt_at timestamptz,
      last_status_code integer,
      last_error text,
      created_at timestamptz not null default now(),
      delivered_at timestamptz,
      unique (subscription_id, event_id)
    )`.execute(db)
  // The sender claims per subscription, due first; the listing pages by id; the metric and
  // retention look at the oldest pending and the oldest finished rows.
  await sql`create index webhook_deliveries_due_idx on webhook_deliveries (subscription_id, next_attempt_at) where state = 'pending'`.execute(db)
  await sql`create index webhook_deliveries_list_idx on webhook_deliveries (subscription_id, id)`.execute(db)
  await sql`create index webhook_deliveries_pending_created_idx on webhook_deliveries (created_at) where state = 'pending'`.execute(db)
  await sql`create index webhook_deliveries_finished_created_idx on webhook_deliveries (created_at) where state <> 'pending'`.execute(db)

  await sql`
    create table webhook_outbox (
      id bigint generated always as identity primary key,
      kind text not null,
      ref_id bigint not null,
      state text,
      created_at timestamptz not null default now()
    )`.execute(db)

  await sql`create table webhook_cursors (name text primary key, last_id bigint not null)`.execute(db)
  await sql`insert into webhook_cursors (name, last_id) values ('webhook_outbox', 0)`.execute(db)

  // The change log is written in the transaction that changes the row, after the row's write
  // (which gave the transaction its xid), so the dispatcher's horizon covers it (src/stream/horizon.ts).
  await sql`
    create function tidings_webhook_outbox_fallback() returns trigger language plpgsql as $$
    begin
      if tg_op = 'INSERT' or new.state is distinct from old.state then
        insert into webhook_outbox (kind, ref_id, state) values ('fallback', new.id, new.state);
      end if;
      return null;
    end $$`.execute(db)
  await sql`
    create trigger fallbacks_webhook_outbox after insert or update of state on fallbacks
    for each row execute function tidings_webhook_outbox_fallback()`.execute(db)
  await sql`
    create function tidings_webhook_outbox_engagement() returns trigger language plpgsql as $$
    begin
      insert into webhook_outbox (kind, ref_id, state) values ('engagement', new.id, new.kind);
      return null;
    end $$`.execute(db)
  await sql`
    create trigger email_engagements_webhook_outbox after insert on email_engagements
    for each row execute function tidings_webhook_outbox_engagement()`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop trigger if exists email_engagements_webhook_outbox on email_engagements`.execute(db)
  await sql`drop function if exists tidings_webhook_outbox_engagement()`.execute(db)
  await sql`drop trigger if exists fallbacks_webhook_outbox on fallbacks`.execute(db)
  await sql`drop function if exists tidings_webhook_outbox_fallback()`.execute(db)
  await sql`drop table if exists webhook_cursors`.execute(db)
  await sql`drop table if exists webhook_outbox`.execute(db)
  await sql`drop table if exists webhook_deliveries`.execute(db)
  await sql`drop table if exists webhook_subscriptions`.execute(db)
}
