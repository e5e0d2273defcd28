/**
 * Outbound status webhooks (`WEBHOOK_*`, docs/webhooks-out.md): the schema fragment `config.ts`
 * spreads into its environment schema, and the parser it calls. The feature is on when
 * `WEBHOOK_SECRETS_KEY` is set: without a key there is nowhere safe to keep signing secrets.
 */
import { createHash } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import ipaddr from 'ipaddr.js'
import type { Env } from './config.ts'
import { formatDuration, parseDuration } from './duration.ts'

/** Environment variables of the feature, spread into `EnvSchema`. */
export const WebhooksOutEnv = {
  WEBHOOK_SECRETS_KEY: Type.Optional(Type.String()),
  WEBHOOK_ALLOWED_TARGETS: Type.Optional(Type.String()),
  WEBHOOK_RETRY_SCHEDULE: Type.String({ default: '0,5s,5m,30m,2h,5h,10h,10h' }),
  WEBHOOK_TIMEOUT: Type.String({ default: '15s' }),
  WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION: Type.Integer({ minimum: 1, maximum: 1000, default: 16 }),
  WEBHOOK_MAX_IN_FLIGHT: Type.Integer({ minimum: 1, maximum: 10_000, default: 256 }),
  WEBHOOK_DISABLE_AFTER: Type.String({ default: '5d' }),
  WEBHOOK_SECRET_OVERLAP: Type.String({ default: '24h' }),
  WEBHOOK_POLL_INTERVAL: Type.String({ default: '1s' })
}

/** An encryption key for subscription secrets: its id (first 8 hex of its SHA-256) and 32 bytes. */
export interface SecretsKey { id: string, key: Buffer }

export interface WebhooksOutConfig {
  /** Keys for the signing secrets at rest; the first encrypts, any decrypts. Empty: the feature is off. */
  secretsKeys: SecretsKey[]
  /** Networks (CIDR) a delivery may reach even though they are not public (`WEBHOOK_ALLOWED_TARGETS`). */
  allowedNetworks: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>
  /** Host names (lower case) allowed to resolve anywhere, and to be called over plain http. */
  allowedHosts: string[]
  /** Delay before each attempt, in ms; the first is usually 0 (its length is the number of attempts). */
  retryScheduleMs: number[]
  /** Whole-request timeout of one attempt, in ms. */
  timeoutMs: number
  /** Requests in flight per subscription per process. */
  concurrencyPerSubscription: number
  /** Requests in flight per process. */
  maxInFlight: number
  /** A subscription whose attempts have failed for this long, with no success since, is disabled (ms). */
  disableAfterMs: number
  /** Default overlap of a rotated secret: the old one still signs for this long, in ms. */
  secretOverlapMs: number
  /** How often the dispatcher and the sender look for work without a wake-up, in ms. */
  pollIntervalMs: number
}

type WebhooksEnv = Pick<Env, keyof typeof WebhooksOutEnv>

/** Milliseconds of `250ms`, or of a duration `parseDuration` reads (`5s`, `5m`, `2h`, `3d`, `0`). */
export function parseDurationMs (value: string): number | undefined {
  const m = /^(\d{1,9})\s*ms$/i.exec(value.trim())
  return m !== null ? Number(m[1]) : parseDuration(value)
}

function durationMs (name: string, value: string, problems: string[], min: number, max: number): number {
  const ms = parseDurationMs(value)
  if (ms === undefined || ms < min || ms > max) {
    problems.push(`${name} must be a duration between ${min < 1000 ? `${min}ms` : formatDuration(min)} and ${formatDuration(max)} such as 500ms, 15s, 5m or 2h, not "${value.slice(0, 40)}"`)
    return min
  }
  return ms
}

/** Parses the variables; problems (never quoting a key) are appended to `problems`. */
export function parseWebhooksOutConfig (env: WebhooksEnv, problems: string[]): WebhooksOutConfig {
  const secretsKeys: SecretsKey[] = []
  const keys = (env.WEBHOOK_SECRETS_KEY ?? '').split(/[\s,]+/).filter((s) => s !== '')
  keys.forEach((entry, i) => {
    const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(entry) ? Buffer.from(entry, 'base64') : Buffer.alloc(0)
    if (key.length !== 32) problems.push(`WEBHOOK_SECRETS_KEY entry ${i + 1} must be 32 random bytes in base64 (openssl rand -base64 32)`)
    else secretsKeys.push({ id: createHash('sha256').update(key).digest('hex').slice(0, 8), key })
  })
  const allowedNetworks: WebhooksOutConfig['allowedNetworks'] = []
  const allowedHosts: string[] = []
  for (const entry of (env.WEBHOOK_ALLOWED_TARGETS ?? '').split(/[\s,]+/).filter((s) => s !== '')) {
    if (entry.includes('/')) {
      try { allowedNetworks.push(ipaddr.parseCIDR(entry)) } catch { problems.push(`WEBHOOK_ALLOWED_TARGETS entry "${entry.slice(0, 60)}" is not a CIDR such as 10.1.0.0/16`) }
    } else if (ipaddr.isValid(entry)) {
      const ip = ipaddr.parse(entry)
      allowedNetworks.push([ip, ip.kind() === 'ipv4' ? 32 : 128])
    } else if (/^[a-z0-9.-]+$/i.test(entry)) {
      allowedHosts.push(entry.toLowerCase())
    } else {
      problems.push(`WEBHOOK_ALLOWED_TARGETS entry "${entry.slice(0, 60)}" is neither a CIDR, an IP address nor a host name`)
    }
  }
  const retryScheduleMs: number[] = []
  for (const item of env.WEBHOOK_RETRY_SCHEDULE.split(',').map((s) => s.trim())) {
    const ms = parseDurationMs(item)
    if (ms === undefined || ms > 7 * 86_400_000) {
      problems.push(`WEBHOOK_RETRY_SCHEDULE must be a comma-separated list of delays (at most 7d each) such as 0,5s,5m,30m,2h,5h,10h,10h, not "${env.WEBHOOK_RETRY_SCHEDULE.slice(0, 80)}"`)
      break
    }
    retryScheduleMs.push(ms)
  }
  if (retryScheduleMs.length > 50) problems.push('WEBHOOK_RETRY_SCHEDULE may list at most 50 attempts')
  return {
    secretsKeys,
    allowedNetworks,
    allowedHosts,
    retryScheduleMs,
    timeoutMs: durationMs('WEBHOOK_TIMEOUT', env.WEBHOOK_TIMEOUT, problems, 100, 120_000),
    concurrencyPerSubscription: env.WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION,
    maxInFlight: env.WEBHOOK_MAX_IN_FLIGHT,
    disableAfterMs: durationMs('WEBHOOK_DISABLE_AFTER', env.WEBHOOK_DISABLE_AFTER, problems, 1000, 365 * 86_400_000),
    secretOverlapMs: durationMs('WEBHOOK_SECRET_OVERLAP', env.WEBHOOK_SECRET_OVERLAP, problems, 0, 30 * 86_400_000),
    pollIntervalMs: durationMs('WEBHOOK_POLL_INTERVAL', env.WEBHOOK_POLL_INTERVAL, problems, 10, 60_000)
  }
}
