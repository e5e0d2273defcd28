import { createHash } from 'node:crypto'
import envSchema from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'
import { parseFallbackConfig, type FallbackConfig } from './fallback.ts'

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
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ minimum: 100, default: 5000 }),
  MIGRATE_ON_START: Type.Boolean({ default: true }),
  // --- Twilio REST client and WhatsApp → SMS fallback (docs/fallback.md) ---
  TWILIO_API_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+/?$' })),
  TWILIO_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
  FALLBACK_ERROR_CODES: Type.String({ default: '63049,63016,63024,63003,63032' }),
  FALLBACK_SMS_FROM: Type.Optional(Type.String({ pattern: '^\\+[1-9][0-9]{6,14}$' })),
  FALLBACK_MESSAGING_SERVICE_SID: Type.Optional(Type.String({ pattern: '^MG[0-9a-fA-F]{32}$' })),
  FALLBACK_SMS_FROM_MAP: Type.Optional(Type.String()),
  FALLBACK_MAX_PER_RECIPIENT_PER_DAY: Type.Integer({ minimum: 0, default: 3 }),
  FALLBACK_MAX_ATTEMPTS: Type.Integer({ minimum: 1, maximum: 50, default: 5 }),
  FALLBACK_RETRY_DELAY_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 5 }),
  FALLBACK_POLL_INTERVAL_SECONDS: Type.Number({ minimum: 0.5, maximum: 300, default: 2 }),
  FALLBACK_RECOVERY_INTERVAL_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
  PUBLIC_BASE_URL: Type.Optional(Type.String({ pattern: '^https?://[^/?#]+(/[^?#]*)?$' })),
  TWILIO_ACCOUNT_SID: Type.Optional(Type.String({ pattern: '^AC[0-9a-fA-F]{32}$' })),
  TWILIO_AUTH_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  TWILIO_AUTH_TOKENS: Type.Optional(Type.String()),
  API_KEYS: Type.Optional(Type.String())
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
  /** PostgreSQL URL; `undefined` means the embedded PGlite database in `dataDir`. */
  databaseUrl: string | undefined
  dataDir: string
  databasePoolMax: number
  /** Per-statement timeout on PostgreSQL, in ms. */
  databaseStatementTimeoutMs: number
  migrateOnStart: boolean
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
  /** Auth tokens per Twilio `AccountSid`, in the order configured (several during rotation). */
  twilioAuthTokens: Map<string, string[]>
  apiKeys: ApiKey[]
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
function parseTwilioTokens (env: Env, problems: string[]): Map<string, string[]> {
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

/**
 * Validates the environment and returns the configuration.
 * @param env - the variables to read (tests pass their own object; `server.ts` passes `process.env`).
 * @throws {ConfigError} listing every missing or invalid variable at once.
 */
export function loadConfig (env: Record<string, string | undefined>): Config {
  const problems: string[] = []
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
    throw new ConfigError([...new Set(problems)])
  }
  const fallback = parseFallbackConfig(parsed, problems)
  const twilioAuthTokens = parseTwilioTokens(parsed, problems)
  const apiKeys = parseApiKeys(parsed.API_KEYS, problems)
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
    migrateOnStart: parsed.MIGRATE_ON_START,
    publicBaseUrl: (parsed.PUBLIC_BASE_URL ?? `http://localhost:${parsed.PORT}`).replace(/\/+$/, ''),
    twilioAuthTokens,
    apiKeys
  }
}
