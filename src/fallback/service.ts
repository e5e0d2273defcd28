/**
 * The WhatsApp → SMS fallback, assembled: the recording hook, the job queue and its workers.
 * `buildApp` creates it when it is given a job-queue connection (`server.ts` always gives one),
 * starts it when the app is ready and stops it when the app closes. See docs/fallback.md.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import type { Config } from '../config/config.ts'
import type { Database } from '../db/database.ts'
import type { RecordHooks } from '../ingest/record-events.ts'
import { createTwilioClients } from '../providers/twilio-rest.ts'
import { fallbackRecordHook } from './on-recorded.ts'
import {
  createJobQueue, enqueueFallback, FALLBACK_DEAD_LETTER_QUEUE, FALLBACK_QUEUE,
  type FallbackJobData, type JobQueueConnection
} from './queue.ts'
import { markRetriesExhausted, runFallbackAttempt } from './worker.ts'

export interface FallbackService {
  /** Pass to `recordEvents` (through the webhook route). */
  hooks: RecordHooks
  /** Creates or migrates pg-boss's schema and queues, then starts the workers. */
  start: () => Promise<void>
  /** Stops the workers (in-flight attempts finish) and the queue. Idempotent. */
  stop: () => Promise<void>
}

export function createFallbackService (config: Config, db: Kysely<Database>, connection: JobQueueConnection, log: FastifyBaseLogger): FallbackService {
  const boss = createJobQueue(connection, { recoveryIntervalSeconds: config.fallback.recoveryIntervalSeconds })
  const fallbackLog = log.child({ component: 'fallback' })
  // pg-boss reports background failures (maintenance, polling) as events; unhandled they would crash.
  boss.on('error', (err) => fallbackLog.error({ err }, 'job queue error'))
  const twilio = createTwilioClients({ tokens: config.twilioAuthTokens, baseUrl: config.twilioApiBaseUrl, timeoutMs: config.twilioRequestTimeoutMs })
  // An attempt makes at most three Twilio requests (fetch the text, look for an earlier send, send)
  // and a few short transactions. The job expires a little after the lease, so when a worker dies
  // the retry finds the lease run out.
  const leaseMs = 3 * config.twilioRequestTimeoutMs + 2_000
  let started = false
  let stopped = false

  return {
    hooks: {
      onRecorded: fallbackRecordHook({
        config: config.fallback,
        enqueue: async (trx, fallbackId) => await enqueueFallback(boss, trx, { fallbackId })
      })
    },
    start: async () => {
      if (config.twilioApiBaseUrl !== undefined) {
        fallbackLog.warn({ twilioApiBaseUrl: config.twilioApiBaseUrl }, 'TWILIO_API_BASE_URL is set: Twilio REST requests go there instead of api.twilio.com (tests and demos only)')
      }
      if (config.fallback.defaultSender === undefined && config.fallback.senderByWhatsAppFrom.size === 0) {
        fallbackLog.info('no FALLBACK_SMS_FROM, FALLBACK_MESSAGING_SERVICE_SID or FALLBACK_SMS_FROM_MAP: due fallbacks are recorded as skipped/no_sender')
      }
      await boss.start()
      started = true
      await boss.createQueue(FALLBACK_DEAD_LETTER_QUEUE)
      const queueOptions = {
        retryLimit: config.fallback.maxAttempts - 1,
        retryDelay: config.fallback.retryDelaySeconds,
        retryBackoff: true,
        retryDelayMax: Math.max(config.fallback.retryDelaySeconds, 3600),
        expireInSeconds: Math.ceil(leaseMs / 1000) + 2,
        deadLetter: FALLBACK_DEAD_LETTER_QUEUE
      }
      await boss.createQueue(FALLBACK_QUEUE, queueOptions)
      // createQueue keeps an existing queue as it was: apply the current settings.
      await boss.updateQueue(FALLBACK_QUEUE, queueOptions)
      const polling = { pollingIntervalSeconds: config.fallback.pollIntervalSeconds }
      await boss.work<FallbackJobData>(FALLBACK_QUEUE, polling, async ([job]) => {
        await runFallbackAttempt({
          db,
          twilio,
          statusCallbackUrl: `${config.publicBaseUrl}/webhooks/twilio/status`,
          leaseMs,
          log: fallbackLog
        }, job.data.fallbackId)
      })
      await boss.work<FallbackJobData>(FALLBACK_DEAD_LETTER_QUEUE, polling, async ([job]) => {
        await markRetriesExhausted(db, job.data.fallbackId)
        fallbackLog.warn({ fallbackId: job.data.fallbackId }, 'fallback dead-lettered: attempts exhausted')
      })
    },
    stop: async () => {
      if (!started || stopped) return
      stopped = true
      await boss.stop({ graceful: true, timeout: 10_000 })
    }
  }
}
