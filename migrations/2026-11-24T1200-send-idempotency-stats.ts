import { sql, type Kysely } from 'kysely'

// Frozen in time: never edit a migration that has shipped; add a new one.
// `POST /v1/messages` with an `Idempotency-Key` header: one row per (API key name, key), claimed
// before Twilio is called (the primary key makes concurrent duplicates collide), kept until
// `expires_at` (IDEMPOTENCY_TTL_HOURS). See src/db/idempotency.ts.

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('idempotency_keys')
    .addColumn('api_key_name', 'text', (c) => c.notNull())
    .addColumn('idempotency_key', 'text', (c) => c.notNull())
    // SHA-256 of the canonical JSON request body: the same key with another body is refused.
    .addColumn('request_hash', 'text', (c) => c.notNull())
    // in_progress: a request holds it until locked_until; done: response_* replay;
    // unknown: a send may or may not have reached Twilio (timeout, 5xx, dropped connection).
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('locked_until', 'timestamptz')
    // Start of the earliest attempt whose outcome is unknown: a retry looks for it at Twilio first.
    .addColumn('attempt_started_at', 'timestamptz')
    .addColumn('ambiguous', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('message_sid', 'text')
    .addColumn('response_status', 'integer')
    .addColumn('response_body', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['api_key_name', 'idempotency_key'])
    .execute()
  await db.schema.createIndex('idempotency_keys_expires_at_idx').on('idempotency_keys').column('expires_at').execute()
  await db.schema.createIndex('idempotency_keys_message_sid_idx').on('idempotency_keys').column('message_sid')
    .where(sql.ref('message_sid'), 'is not', null).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('idempotency_keys').execute()
}
