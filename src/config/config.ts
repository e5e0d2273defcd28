import { createHash } from 'node:crypto'
import { getHeapStatistics } from 'node:v8'
import envSchema from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'
import { parseFallbackConfig, type FallbackConfig } from './fallback.ts'
import { parseWebhooksOutConfig, WebhooksOutEnv, type WebhooksOutConfig } from './webhooks-out.ts'
import { parseMaintenanceConfig, type ReconcileConfig, type RetentionConfig } from './maintenance.ts'
import { LimitsEnvSchema, parseLimitsConfig, placeholderProblems, type LimitsConfig } from './limits.ts'
import { parseReconcileReadConfig, ReconcileReadEnv, type ReconcileReadConfig } from './reconcile-read.ts'
import { ResilienceEnv, parseResilienceConfig, type ResilienceConfig } from './resilience.ts'
import { ConsoleEnvSchema, parseConsoleConfig, type ConsoleConfig } from './console.ts'

/**
 * Every environment variable Tidings reads, validated once at start-up by env-schema
 * (ajv with `allErrors`, so one error lists every problem). Nothing else reads `process.env`.
 */
export const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ default: '0.0.0.0' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' }
  ),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATA_DIR: Type.String({ default: './data', minLength: 1 }),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 5000 }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  WEBHOOK_BATCH_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
  WEBHOOK_BATCH_CONCURRENCY: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
  // --- Twilio REST client and WhatsApp → SMS fallback (docs/fallback.md) ---
  TWILIO_API_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+/?$' })),
  TWILIO_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
  FALLBACK_ERROR_CODES: Type.String({ default: '63049,63016,63024,63003,63032' }),
  FALLBACK_SMS_FROM: Type.Optional(Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$' })),
  FALLBACK_MESSAGING_SERVICE_SID: Type.Optional(Type.String({ pattern: '^MG[0-9a-fA-F]{32}$' })),
  FALLBACK_SMS_FROM_MAP: Type.Optional(Type.String()),
  FALLBACK_MAX_PER_RECIPIENT_PER_DAY: Type.Integer({ minimum: 0, maximum: 10_000, default: 3 }),
  FALLBACK_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 50, default: 5 }),
  FALLBACK_RETRY_DELAY_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 5 }),
  FALLBACK_POLL_INTERVAL_SECONDS: Type.Number({ minimum: 0.5, maximum: 300, default: 2 }),
  FALLBACK_RECOVERY_INTERVAL_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
  PUBLIC_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+(/[^?#]*)?$' })),
  TWILIO_ACCOUNT_SID: Type.Optional(Type.String({ pattern: '^AC[0-9a-fA-F]{32}$' })),
  TWILIO_AUTH_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  // Resend email events (POST /webhooks/resend); see parseResendSecrets.
  RESEND_WEBHOOK_SECRET: Type.Optional(Type.String()),
  RESEND_ENABLED: Type.Optional(Type.Boolean()),
  // --- reconciliation and retention (src/config/maintenance.ts); durations like 90s, 30m, 3d ---
  RECONCILE_INTERVAL: Type.String({ default: '5m' }),
  RECONCILE_AFTER: Type.String({ default: '30m' }),
  RECONCILE_BATCH: Type.Integer({ minimum: 1, maximum: 10_000, default: 100 }),
  RECONCILE_MAX_AGE: Type.String({ default: '3d' }),
  RESEND_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  RESEND_API_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+/?$' })),
  RETENTION_DAYS: Type.Integer({ minimum: 0, maximum: 36_500, default: 90 }),
  RETENTION_INTERVAL: Type.String({ default: '1h' }),
  SCHEDULE_CHECK_INTERVAL: Type.String({ default: '30s' }),
  ...ReconcileReadEnv,
  TWILIO_AUTH_TOKENS: Type.Optional(Type.String()),
  API_KEYS: Type.Optional(Type.String()),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 200 }),
  MAX_EVENT_LOOP_UTILIZATION: Type.Number({ minimum: 0, maximum: 1, default: 0 }),
  MAX_HEAP_USED_BYTES: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  PRESSURE_SAMPLE_INTERVAL_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000 }),
  RATE_LIMIT_PER_MINUTE: Type.Integer({ minimum: 1, maximum: 1_000_000_000, default: 1200 }),
  STREAM_HEARTBEAT_S: Type.Integer({ minimum: 1, maximum: 3600, default: 15 }),
  STREAM_MAX_BUFFER_BYTES: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 1024 * 1024 }),
  IDEMPOTENCY_TTL_HOURS: Type.Number({ minimum: 0.01, maximum: 24 * 30, default: 24 }),
  ...LimitsEnvSchema,
  // --- database faults and load isolation (src/config/resilience.ts) ---
  ...ResilienceEnv,
  // --- outbound status webhooks (src/config/webhooks-out.ts) ---
  ...WebhooksOutEnv,
  // --- operator console (src/config/console.ts) ---
  ...ConsoleEnvSchema
})

export type Env = Static<typeof EnvSchema>

/** An API key as kept in memory: only its name and the SHA-256 of the key. */
export interface ApiKey {
  name: string
  /** SHA-256 digest of the key (32 bytes). */
  hash: Buffer
}

/** Validated, parsed configuration. Passed explicitly; there is no global config. */
export interface Config {
  port: number
  host: string
  logLevel: string
  /** PostgreSQL URL; `undefined` means the embedded PostgreSQL in `dataDir` (src/db/embedded-postgres.ts). */
  databaseUrl: string | undefined
  dataDir: string
  databasePoolMax: number
  /** Per-statement timeout on PostgreSQL, in ms. */
  databaseStatementTimeoutMs: number
  migrateOnStart: boolean
  /** Group commit of Twilio callbacks (`src/ingest/batcher.ts`). */
  webhookBatch: {
    /** Most callbacks in one transaction; 1 turns batching off. */
    max: number
    /** Most recording transactions in flight per process (default: half the pool). */
    concurrency: number
  }
  /**
   * Scheme and host Twilio calls (plus a path prefix if a proxy mounts Tidings under one), without a
   * trailing slash, e.g. `https://hooks.example.com`.
   */
  publicBaseUrl: string
  /**
   * Where the Twilio REST client sends requests instead of `https://api.twilio.com`
   * (`TWILIO_API_BASE_URL`, for tests and the demo's fake Twilio only), without a trailing slash.
   */
  twilioApiBaseUrl: string | undefined
  /** Timeout of one Twilio REST request, in ms. */
  twilioRequestTimeoutMs: number
  /** WhatsApp → SMS fallback (`FALLBACK_*`). */
  fallback: FallbackConfig
  /** Reconciliation of messages stuck without a final status (`RECONCILE_*`, `RESEND_API_*`). */
  reconcile: ReconcileConfig
  /** Deletion of old events and engagement (`RETENTION_*`). */
  retention: RetentionConfig
  /** Reconciliation looking delivered messages up again (`RECONCILE_READ_*`, `RECONCILE_EMAIL_WINDOW`). */
  reconcileRead: ReconcileReadConfig
  /** How often each process looks for due pg-boss schedules, in seconds (`SCHEDULE_CHECK_INTERVAL`). */
  scheduleCheckIntervalS: number
  /** Auth tokens per Twilio `AccountSid`, in the order configured (several during rotation). */
  twilioAuthTokens: Map<string, string[]>
  /**
   * Resend webhook signing secrets (`whsec_…`), any of which may sign a delivery (rotation).
   * Empty: `POST /webhooks/resend` is not registered.
   */
  resendWebhookSecrets: string[]
  apiKeys: ApiKey[]
  /** When set, `/metrics` requires `Authorization: Bearer <metricsToken>`. */
  metricsToken: string | undefined
  /** Load shedding (@fastify/under-pressure): 0 disables a check. */
  pressure: {
    /** Event-loop delay above which requests get 503, in ms. */
    maxEventLoopDelayMs: number
    /** Event-loop utilisation (0–1) above which requests get 503. */
    maxEventLoopUtilization: number
    /** V8 heap use above which requests get 503, in bytes (default 90 % of the heap limit). */
    maxHeapUsedBytes: number
    /** How often the checks sample, in ms. */
    sampleIntervalMs: number
  }
  /** Requests per minute allowed per API key on `/v1` (per process). */
  rateLimitPerMinute: number
  /** Seconds between SSE heartbeat comments on `/v1/stream`. */
  streamHeartbeatS: number
  /** Unsent bytes a stream client may hold before it is disconnected. */
  streamMaxBufferBytes: number
  /** How long `POST /v1/messages` remembers an `Idempotency-Key`, in ms. */
  idempotencyTtlMs: number
  /** Webhook input bounds, streams per key, callback shedding (`src/config/limits.ts`). */
  limits: LimitsConfig
  /** Start-up waiting, the read pool, heavy-read limits, the `/metrics` cache. */
  resilience: ResilienceConfig
  /** Outbound status webhooks (`WEBHOOK_*`, docs/webhooks-out.md). */
  webhooksOut: WebhooksOutConfig
  /** Operator console: sessions and the statistics rollup (`CONSOLE_*`). */
  console: ConsoleConfig
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

const ACCOUNT_SID = /^AC[0-9a-fA-F]{32}$/

/**
 * Parses `TWILIO_AUTH_TOKENS`: comma-separated `AccountSid:token` pairs; an account may appear
 * more than once (old and new token during rotation, see
 * https://www.twilio.com/docs/iam/api/authtoken).
 */
function parseTwilioTokens (env: Pick<Env, 'TWILIO_ACCOUNT_SID' | 'TWILIO_AUTH_TOKEN' | 'TWILIO_AUTH_TOKENS'>, problems: string[]): Map<string, string[]> {
  const tokens = new Map<string, string[]>()
  const add = (sid: string, token: string): void => {
    const list = tokens.get(sid) ?? []
    if (!list.includes(token)) list.push(token)
    tokens.set(sid, list)
  }
  if (env.TWILIO_ACCOUNT_SID !== undefined || env.TWILIO_AUTH_TOKEN !== undefined) {
    if (env.TWILIO_ACCOUNT_SID === undefined) problems.push('TWILIO_AUTH_TOKEN is set but TWILIO_ACCOUNT_SID is not')
    else if (env.TWILIO_AUTH_TOKEN === undefined) problems.push('TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not')
    else add(env.TWILIO_ACCOUNT_SID, env.TWILIO_AUTH_TOKEN)
  }
  const entries = (env.TWILIO_AUTH_TOKENS ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':')
    const sid = colon === -1 ? entry : entry.slice(0, colon)
    const token = colon === -1 ? '' : entry.slice(colon + 1)
    if (!ACCOUNT_SID.test(sid)) problems.push(`TWILIO_AUTH_TOKENS entry ${i + 1} must start with an AccountSid (AC + 32 hex) followed by ':'`)
    else if (token === '') problems.push(`TWILIO_AUTH_TOKENS entry ${i + 1} (${sid}) has no token after ':'`)
    else add(sid, token)
  })
  if (tokens.size === 0) {
    problems.push('no Twilio auth token configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or TWILIO_AUTH_TOKENS (signature checks cannot be turned off)')
  }
  return tokens
}

/** Parses `API_KEYS`: comma-separated `name:key` pairs; only a hash of each key is kept. */
function parseApiKeys (raw: string | undefined, problems: string[]): ApiKey[] {
  const keys: ApiKey[] = []
  const entries = (raw ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':')
    const name = colon === -1 ? '' : entry.slice(0, colon)
    const key = colon === -1 ? '' : entry.slice(colon + 1)
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) problems.push(`API_KEYS entry ${i + 1} must be name:key with a name of letters, digits, '_', '.' or '-'`)
    else if (key.length < 16) problems.push(`API_KEYS entry ${i + 1} (${name}) needs a key of at least 16 characters`)
    else keys.push({ name, hash: createHash('sha256').update(key).digest() })
  })
  return keys
}

// `whsec_` then the HMAC key in padded standard base64, as Resend's webhook page shows it.
const RESEND_SECRET = /^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$/

/**
 * Parses `RESEND_WEBHOOK_SECRET`: one or more `whsec_…` signing secrets separated by commas or
 * spaces (old and new during rotation). The route is on when a secret is set, unless
 * `RESEND_ENABLED=false`; `RESEND_ENABLED=true` without a secret is an error, so the webhook can
 * never run unverified. Problems never quote a secret.
 */
function parseResendSecrets (env: Pick<Env, 'RESEND_WEBHOOK_SECRET' | 'RESEND_ENABLED'>, problems: string[]): string[] {
  const secrets: string[] = []
  const entries = (env.RESEND_WEBHOOK_SECRET ?? '').split(/[\s,]+/).filter((s) => s !== '')
  entries.forEach((entry, i) => {
    if (!RESEND_SECRET.test(entry)) problems.push(`RESEND_WEBHOOK_SECRET entry ${i + 1} is not a Resend signing secret (whsec_ followed by base64; copy it from the webhook's page in Resend)`)
    else if (!secrets.includes(entry)) secrets.push(entry)
  })
  if (env.RESEND_ENABLED === true && entries.length === 0) {
    problems.push('RESEND_ENABLED is true but RESEND_WEBHOOK_SECRET is not set (the Resend webhook cannot run without signature checks)')
  }
  return env.RESEND_ENABLED === false ? [] : secrets
}

/**
 * Validates the environment and returns the configuration.
 * @param env - the variables to read (tests pass their own object; `server.ts` passes `process.env`).
 * @throws {ConfigError} listing every missing or invalid variable at once.
 */
export function loadConfig (env: Record<string, string | undefined>): Config {
  const problems: string[] = placeholderProblems(env)
  let parsed: Env
  try {
    parsed = envSchema<Env>({ schema: EnvSchema, data: { ...env }, dotenv: false })
  } catch (err) {
    const errors = (err as { errors?: Array<{ instancePath: string, message?: string, params?: Record<string, unknown> }> }).errors
    if (errors === undefined) throw err
    for (const e of errors) {
      const name = e.instancePath.replace(/^\//, '') || String(e.params?.missingProperty ?? 'environment')
      problems.push(`${name} ${e.message ?? 'is invalid'}`)
    }
    // The list parsers read strings only, so their problems can be reported in the same error.
    parseTwilioTokens(env, problems)
    parseApiKeys(env.API_KEYS, problems)
    throw new ConfigError([...new Set(problems)])
  }
  const fallback = parseFallbackConfig(parsed, problems)
  const maintenance = parseMaintenanceConfig(parsed, problems)
  const reconcileRead = parseReconcileReadConfig(parsed, problems)
  const twilioAuthTokens = parseTwilioTokens(parsed, problems)
  const apiKeys = parseApiKeys(parsed.API_KEYS, problems)
  const resendWebhookSecrets = parseResendSecrets(parsed, problems)
  const resilience = parseResilienceConfig(parsed, problems)
  const webhooksOut = parseWebhooksOutConfig(parsed, problems)
  const consoleConfig = parseConsoleConfig(parsed, problems)
  if (problems.length > 0) throw new ConfigError(problems)
  return {
    port: parsed.PORT,
    host: parsed.HOST,
    logLevel: parsed.LOG_LEVEL,
    databaseUrl: parsed.DATABASE_URL,
    dataDir: parsed.DATA_DIR,
    databasePoolMax: parsed.DATABASE_POOL_MAX,
    databaseStatementTimeoutMs: parsed.DATABASE_STATEMENT_TIMEOUT_MS,
    twilioApiBaseUrl: parsed.TWILIO_API_BASE_URL?.replace(/\/+$/, ''),
    twilioRequestTimeoutMs: parsed.TWILIO_REQUEST_TIMEOUT_MS,
    fallback,
    ...maintenance,
    reconcileRead,
    migrateOnStart: parsed.MIGRATE_ON_START,
    webhookBatch: {
      max: parsed.WEBHOOK_BATCH_MAX,
      // Two, not more: fewer, larger batches cost the database and the server less per callback
      // (docs/performance.md), and the second keeps callbacks moving while one waits on a lock.
      concurrency: parsed.WEBHOOK_BATCH_CONCURRENCY ?? Math.max(1, Math.min(2, Math.floor(parsed.DATABASE_POOL_MAX / 2)))
    },
    resendWebhookSecrets,
    publicBaseUrl: (parsed.PUBLIC_BASE_URL ?? `http://localhost:${parsed.PORT}`).replace(/\/+$/, ''),
    twilioAuthTokens,
    apiKeys,
    metricsToken: parsed.METRICS_TOKEN,
    pressure: {
      maxEventLoopDelayMs: parsed.MAX_EVENT_LOOP_DELAY_MS,
      maxEventLoopUtilization: parsed.MAX_EVENT_LOOP_UTILIZATION,
      maxHeapUsedBytes: parsed.MAX_HEAP_USED_BYTES ?? Math.floor(getHeapStatistics().heap_size_limit * 0.9),
      sampleIntervalMs: parsed.PRESSURE_SAMPLE_INTERVAL_MS
    },
    rateLimitPerMinute: parsed.RATE_LIMIT_PER_MINUTE,
    streamHeartbeatS: parsed.STREAM_HEARTBEAT_S,
    streamMaxBufferBytes: parsed.STREAM_MAX_BUFFER_BYTES,
    idempotencyTtlMs: Math.round(parsed.IDEMPOTENCY_TTL_HOURS * 3600_000),
    limits: parseLimitsConfig(parsed),
    resilience,
    webhooksOut,
    console: consoleConfig
  }
}

/**
 * `loadConfig` for entry points (the server, the CLI scripts): on a `ConfigError`, prints every
 * problem to stderr and exits 1.
 */
export function loadConfigOrExit (env: Record<string, string | undefined>): Config {
  try {
    return loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nSee .env.example for every variable.\n`)
      process.exit(1)
    }
    throw err
  }
}
