import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// The operator console (README "Console"):
// - console_sessions: a browser's session, created by exchanging an API key (POST /console/session).
//   Only the SHA-256 of the session token is stored, so a database dump cannot be replayed as a
//   cookie; rows live in PostgreSQL so sessions survive restarts and work on every replica.
// - stats_hourly / stats_hourly_errors: the rollup behind GET /v1/stats/timeseries, refreshed by a
//   job (src/console/rollup.ts), one row per (hour of created_at, channel, outcome, delivery-time
//   bucket), so a 7-day window reads thousands of rows instead of millions of messages.
// - stats_rollup_state: one row, how far the rollup has been computed.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('console_sessions')
    .addColumn('token_hash', 'bytea', (c) => c.primaryKey())
    .addColumn('api_key_name', 'text', (c) => c.notNull())
    // SHA-256 of the API key the session was created with: a rotated key ends its sessions.
    .addColumn('api_key_hash', 'bytea', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('console_sessions_expires_at_idx').on('console_sessions').column('expires_at').execute()

  await db.schema.createTable('stats_hourly')
    .addColumn('hour', 'timestamptz', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    // delivered | failed | pending (src/db/stats.ts defines the status sets).
    .addColumn('outcome', 'text', (c) => c.notNull())
    // Index into DELIVERY_TIME_BOUNDS_S of delivered_at - sent_at; -1: no sample.
    .addColumn('latency_bucket', 'smallint', (c) => c.notNull())
    .addColumn('messages', 'integer', (c) => c.notNull())
    .addColumn('whatsapp_read', 'integer', (c) => c.notNull())
    .addColumn('email_opened', 'integer', (c) => c.notNull())
    .addColumn('fallbacks_sent', 'integer', (c) => c.notNull())
    .addColumn('fallbacks_recovered', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('stats_hourly_pkey', ['hour', 'channel', 'outcome', 'latency_bucket'])
    .execute()

  await db.schema.createTable('stats_hourly_errors')
    .addColumn('hour', 'timestamptz', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('error_code', 'text', (c) => c.notNull())
    .addColumn('messages', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('stats_hourly_errors_pkey', ['hour', 'channel', 'error_code'])
    .execute()

  await db.schema.createTable('stats_rollup_state')
    .addColumn('id', 'boolean', (c) => c.primaryKey().defaultTo(true).check(sql`id`))
    // Hours before this are in the rollup; later ones are computed from messages when asked.
    .addColumn('rolled_until', 'timestamptz')
    .addColumn('refreshed_at', 'timestamptz')
    .execute()
  await sql`insert into stats_rollup_state (id) values (true)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('stats_rollup_state').execute()
  await db.schema.dropTable('stats_hourly_errors').execute()
  await db.schema.dropTable('stats_hourly').execute()
  await db.schema.dropTable('console_sessions').execute()
}
