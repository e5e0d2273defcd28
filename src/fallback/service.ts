/**
 * The WhatsApp → SMS fallback, assembled: the recording hook, its queues and their workers.
 * `buildApp` creates it when it is given a job-queue connection (`server.ts` always gives one) and
 * starts it once the job queue has started. See docs/fallback.md.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { Kysely } from 'kysely'
import type { Config } from '../config/config.ts'
import type { Database } from '../db/database.ts'
import type { RecordHooks } from '../ingest/record-events.ts'
import type { Recorder } from '../ingest/recorder.ts'
import { twilioClientsOf } from '../providers/twilio-rest.ts'
import { fallbackRecordHook } from './on-recorded.ts'
import type { PgBoss } from 'pg-boss'
import {
  enqueueFallback, FALLBACK_DEAD_LETTER_QUEUE, FALLBACK_QUEUE, finishedJobRetentionSeconds,
  type FallbackJobData
} from './queue.ts'
import { markRetriesExhausted, runFallbackAttempt } from './worker.ts'

export interface FallbackService {
  /** Add to the app's recorder (`recorder.use`), so every path that records runs them. */
  hooks: RecordHooks
  /**
   * Creates or updates the fallback queues, then starts the workers, which record the SMS they send
   * through `recorder`. The job queue must be started (`buildApp` owns it: it starts it when the
   * app is ready and stops it, workers included, on close).
   */
  start: (recorder: Recorder) => Promise<void>
}

/** Creates the fallback queues, or applies the current settings to them (createQueue keeps an existing queue as it was). */
export async function createFallbackQueues (boss: PgBoss, config: Config): Promise<void> {
  await boss.createQueue(FALLBACK_DEAD_LETTER_QUEUE, { deleteAfterSeconds: finishedJobRetentionSeconds(config) })
  const queueOptions = {
    retryLimit: config.fallback.maxAttempts - 1,
    retryDelay: config.fallback.retryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: Math.max(config.fallback.retryDelaySeconds, 3600),
    expireInSeconds: Math.ceil(leaseMsOf(config) / 1000) + 2,
    deadLetter: FALLBACK_DEAD_LETTER_QUEUE,
    deleteAfterSeconds: finishedJobRetentionSeconds(config)
  }
  await boss.createQueue(FALLBACK_QUEUE, queueOptions)
  await boss.updateQueue(FALLBACK_QUEUE, queueOptions)
}

// An attempt makes at most three Twilio requests (fetch the text, look for an earlier send, send)
// and a few short transactions. The job expires a little after the lease, so when a worker dies
// the retry finds the lease run out.
function leaseMsOf (config: Config): number {
  return 3 * config.twilioRequestTimeoutMs + 2_000
}

export function createFallbackService (config: Config, db: Kysely<Database>, boss: PgBoss, log: FastifyBaseLogger): FallbackService {
  const fallbackLog = log.child({ component: 'fallback' })
  const twilio = twilioClientsOf(config)
  const leaseMs = leaseMsOf(config)

  return {
    hooks: {
      onRecorded: fallbackRecordHook({
        config: config.fallback,
        enqueue: async (trx, fallbackId) => await enqueueFallback(boss, trx, { fallbackId })
      })
    },
    start: async (recorder) => {
      if (config.twilioApiBaseUrl !== undefined) {
        fallbackLog.warn({ twilioApiBaseUrl: config.twilioApiBaseUrl }, 'TWILIO_API_BASE_URL is set: Twilio REST requests go there instead of api.twilio.com (tests and demos only)')
      }
      if (config.fallback.defaultSender === undefined && config.fallback.senderByWhatsAppFrom.size === 0) {
        fallbackLog.info('no FALLBACK_SMS_FROM, FALLBACK_MESSAGING_SERVICE_SID or FALLBACK_SMS_FROM_MAP: due fallbacks are recorded as skipped/no_sender')
      }
      await createFallbackQueues(boss, config)
      const polling = { pollingIntervalSeconds: config.fallback.pollIntervalSeconds }
      await boss.work<FallbackJobData>(FALLBACK_QUEUE, polling, async ([job]) => {
        await runFallbackAttempt({
          db,
          recorder,
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
    }
  }
}
