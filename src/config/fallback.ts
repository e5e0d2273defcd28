/**
 * Parsing of the `FALLBACK_*` variables (WhatsApp → SMS fallback, see docs/fallback.md).
 * Kept apart from `config.ts` so the core configuration stays short; `loadConfig` calls
 * `parseFallbackConfig` and reports its problems together with every other one.
 */
import type { SmsSender } from '../domain/fallback-policy.ts'
import type { Env } from './config.ts'

/** Validated fallback settings. */
export interface FallbackConfig {
  /** WhatsApp `ErrorCode`s that SMS can fix (`FALLBACK_ERROR_CODES`). */
  errorCodes: ReadonlySet<string>
  /** Default sender (`FALLBACK_SMS_FROM`, else `FALLBACK_MESSAGING_SERVICE_SID`); `undefined`: none. */
  defaultSender: SmsSender | undefined
  /** Sender per WhatsApp sender number, E.164 without `whatsapp:` (`FALLBACK_SMS_FROM_MAP`). */
  senderByWhatsAppFrom: ReadonlyMap<string, SmsSender>
  /** Cost guard: fallbacks per recipient in 24 h (`FALLBACK_MAX_PER_RECIPIENT_PER_DAY`). */
  maxPerRecipientPerDay: number
  /** Send attempts before the job is dead-lettered (`FALLBACK_MAX_ATTEMPTS`). */
  maxAttempts: number
  /** Base of the exponential retry backoff, in seconds (`FALLBACK_RETRY_DELAY_SECONDS`). */
  retryDelaySeconds: number
  /** How often idle workers look for jobs, in seconds (`FALLBACK_POLL_INTERVAL_SECONDS`). */
  pollIntervalSeconds: number
  /**
   * How often the queue looks for attempts whose worker died (job expired) to retry them, in
   * seconds (`FALLBACK_RECOVERY_INTERVAL_SECONDS`; pg-boss supervision and monitoring).
   */
  recoveryIntervalSeconds: number
}

const E164 = /^\+[1-9][0-9]{6,14}$/
const MESSAGING_SERVICE_SID = /^MG[0-9a-fA-F]{32}$/

/** `+1415…` → `{ from }`, `MG…` → `{ messagingServiceSid }`, anything else `undefined`. */
function senderOf (value: string): SmsSender | undefined {
  if (E164.test(value)) return { from: value }
  if (MESSAGING_SERVICE_SID.test(value)) return { messagingServiceSid: value }
  return undefined
}

type FallbackEnv = Pick<Env, 'FALLBACK_ERROR_CODES' | 'FALLBACK_SMS_FROM' | 'FALLBACK_MESSAGING_SERVICE_SID' |
'FALLBACK_SMS_FROM_MAP' | 'FALLBACK_MAX_PER_RECIPIENT_PER_DAY' | 'FALLBACK_MAX_ATTEMPTS' |
'FALLBACK_RETRY_DELAY_SECONDS' | 'FALLBACK_POLL_INTERVAL_SECONDS' | 'FALLBACK_RECOVERY_INTERVAL_SECONDS'>

/**
 * Parses the fallback variables; problems are appended to `problems`.
 * `FALLBACK_SMS_FROM_MAP` is comma-separated `whatsappSender=smsSender` pairs, e.g.
 * `whatsapp:+14155238886=+14155550100,whatsapp:+14155238887=MG…`; the `whatsapp:` prefix is optional.
 */
export function parseFallbackConfig (env: FallbackEnv, problems: string[]): FallbackConfig {
  const codes = env.FALLBACK_ERROR_CODES.split(',').map((s) => s.trim()).filter((s) => s !== '')
  codes.forEach((code) => {
    if (!/^\d{1,6}$/.test(code)) problems.push(`FALLBACK_ERROR_CODES entry "${code}" must be a Twilio error code (digits)`)
  })

  const senderByWhatsAppFrom = new Map<string, SmsSender>()
  const entries = (env.FALLBACK_SMS_FROM_MAP ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  entries.forEach((entry, i) => {
    const eq = entry.lastIndexOf('=')
    const whatsapp = (eq === -1 ? entry : entry.slice(0, eq)).trim().replace(/^whatsapp:/i, '')
    const sender = eq === -1 ? undefined : senderOf(entry.slice(eq + 1).trim())
    if (!E164.test(whatsapp) || sender === undefined) {
      problems.push(`FALLBACK_SMS_FROM_MAP entry ${i + 1} must be whatsapp:+E164=+E164 (or =MG… Messaging Service SID)`)
    } else {
      senderByWhatsAppFrom.set(whatsapp, sender)
    }
  })

  // A fixed number wins over a Messaging Service when both are set: it is the more specific choice.
  const defaultSender: SmsSender | undefined = env.FALLBACK_SMS_FROM !== undefined
    ? { from: env.FALLBACK_SMS_FROM }
    : env.FALLBACK_MESSAGING_SERVICE_SID !== undefined
      ? { messagingServiceSid: env.FALLBACK_MESSAGING_SERVICE_SID }
      : undefined

  return {
    errorCodes: new Set(codes),
    defaultSender,
    senderByWhatsAppFrom,
    maxPerRecipientPerDay: env.FALLBACK_MAX_PER_RECIPIENT_PER_DAY,
    maxAttempts: env.FALLBACK_MAX_ATTEMPTS,
    retryDelaySeconds: env.FALLBACK_RETRY_DELAY_SECONDS,
    pollIntervalSeconds: env.FALLBACK_POLL_INTERVAL_SECONDS,
    recoveryIntervalSeconds: env.FALLBACK_RECOVERY_INTERVAL_SECONDS
  }
}
