/**
 * Limits against hostile traffic (issue 10): what an unauthenticated webhook request may cost
 * before its signature is checked, streams per API key, and when load shedding may refuse
 * provider callbacks. Also the start-up refusal of `.env.example`'s placeholder credentials.
 * `loadConfig` composes the schema fragment and calls `parseLimitsConfig`.
 */
import { Type } from '@sinclair/typebox'
import type { Env } from './config.ts'

/** The variables of this fragment, spread into `EnvSchema`. */
export const LimitsEnvSchema = {
  // A real Twilio status callback has about twenty parameters and well under 2 KiB
  // (../shared/reference/twilio.md): 100 and 16 KiB leave a wide margin.
  WEBHOOK_MAX_PARAMS: Type.Integer({ minimum: 10, maximum: 1000, default: 100 }),
  WEBHOOK_MAX_BODY_BYTES: Type.Integer({ minimum: 1024, maximum: 1024 * 1024, default: 16 * 1024 }),
  RESEND_MAX_BODY_BYTES: Type.Integer({ minimum: 1024, maximum: 1024 * 1024, default: 256 * 1024 }),
  STREAMS_PER_KEY: Type.Integer({ minimum: 1, maximum: 10_000, default: 10 }),
  SHED_CALLBACK_BACKLOG: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000 })
}

/** Validated limits. */
export interface LimitsConfig {
  /** Most form parameters in a Twilio callback (`WEBHOOK_MAX_PARAMS`); more: 400 before the signature check. */
  webhookMaxParams: number
  /** Largest Twilio callback body, in bytes (`WEBHOOK_MAX_BODY_BYTES`); larger: 413. */
  webhookMaxBodyBytes: number
  /** Largest Resend delivery body, in bytes (`RESEND_MAX_BODY_BYTES`); larger: 413. */
  resendMaxBodyBytes: number
  /** Concurrent `/v1/stream` connections per API key and process (`STREAMS_PER_KEY`); more: 429. */
  streamsPerKey: number
  /**
   * Callbacks waiting for a recording slot above which load shedding refuses new callbacks
   * (`SHED_CALLBACK_BACKLOG`): only then would accepting more risk the process.
   */
  shedCallbackBacklog: number
}

type LimitsEnv = Pick<Env, 'WEBHOOK_MAX_PARAMS' | 'WEBHOOK_MAX_BODY_BYTES' | 'RESEND_MAX_BODY_BYTES' | 'STREAMS_PER_KEY' | 'SHED_CALLBACK_BACKLOG'>

export function parseLimitsConfig (env: LimitsEnv): LimitsConfig {
  return {
    webhookMaxParams: env.WEBHOOK_MAX_PARAMS,
    webhookMaxBodyBytes: env.WEBHOOK_MAX_BODY_BYTES,
    resendMaxBodyBytes: env.RESEND_MAX_BODY_BYTES,
    streamsPerKey: env.STREAMS_PER_KEY,
    shedCallbackBacklog: env.SHED_CALLBACK_BACKLOG
  }
}

/** Variables holding credentials, and how to split a value into the credentials in it. */
const CREDENTIALS: Record<string, (value: string) => string[]> = {
  TWILIO_ACCOUNT_SID: (v) => [v],
  TWILIO_AUTH_TOKEN: (v) => [v],
  TWILIO_AUTH_TOKENS: (v) => v.split(',').flatMap((pair) => pair.split(':')),
  API_KEYS: (v) => v.split(',').map((pair) => pair.slice(pair.indexOf(':') + 1)),
  METRICS_TOKEN: (v) => [v],
  RESEND_WEBHOOK_SECRET: (v) => v.split(/[\s,]+/),
  RESEND_API_KEY: (v) => [v]
}

// What .env.example and the README put where a credential goes.
const PLACEHOLDER = /change[_-]?me|your[_-]|x{8,}/i

/**
 * Problems for credentials that are still `.env.example`'s placeholders (`change_me`,
 * `your_auth_token`, `ACxxxx…`, `k_change_me_…`): a server must not start accepting the example's
 * API keys, and a placeholder token could never verify a real signature. Never quotes a value.
 * @param env - the raw environment (checked before the schema, so the message comes first).
 */
export function placeholderProblems (env: Record<string, string | undefined>): string[] {
  const problems: string[] = []
  for (const [name, split] of Object.entries(CREDENTIALS)) {
    const value = env[name]
    if (value === undefined || value === '') continue
    if (split(value).some((part) => PLACEHOLDER.test(part))) {
      problems.push(`${name} still holds a placeholder from .env.example (change_me, your_…, xxxx…): put your real value there, or remove the line`)
    }
  }
  return problems
}
