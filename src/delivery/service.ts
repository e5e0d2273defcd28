/**
 * Outbound status webhooks in one process: the recorder's hook (status changes → deliveries, in the
 * recording transaction), the dispatcher (committed fallback changes and engagement → deliveries)
 * and the sender (deliveries → signed HTTP requests), started when the app is ready and stopped
 * when it closes. See docs/webhooks-out.md.
 */
import type { FastifyBaseLogger } from 'fastify'
import { sql, type Kysely } from 'kysely'
import type { WebhooksOutConfig } from '../config/webhooks-out.ts'
import type { RecordHooks } from '../ingest/record-events.ts'
import type { Metrics } from '../metrics.ts'
import { Dispatcher } from './dispatcher.ts'
import { createWebhookHttpClient } from './http-client.ts'
import { webhookRecordHooks } from './on-recorded.ts'
import { Sender } from './sender.ts'

export interface WebhooksOut {
  /** For `recorder.use`: every recorded batch enqueues its status deliveries. */
  hooks: RecordHooks
  start: () => Promise<void>
  stop: () => Promise<void>
}

/** How long stopping waits for requests in flight; the rest go out again after their lease. */
const STOP_WAIT_MS = 3000

/**
 * @param listen - subscribes to a NOTIFY channel (`DatabaseHandle.listen`); without it, polling only.
 */
export function createWebhooksOut (deps: {
  config: WebhooksOutConfig
  db: Kysely<any>
  log: FastifyBaseLogger
  metrics?: Metrics
  listen?: (channel: string, onNotify: () => void) => Promise<() => Promise<void>>
  /** Provider events waiting for a recording slot: the sender yields while there are any. */
  ingestBacklog?: () => number
}): WebhooksOut {
  const { config, db, log } = deps
  const http = createWebhookHttpClient(config, { connectionsPerOrigin: config.concurrencyPerSubscription })
  const sender = new Sender({ db, log, config, http, metrics: deps.metrics, ingestBacklog: deps.ingestBacklog })
  const dispatcher = new Dispatcher({ db, log, pollIntervalMs: config.pollIntervalMs, onDeliveries: () => sender.wake() })
  let unlisten: (() => Promise<void>) | undefined
  return {
    hooks: webhookRecordHooks(),
    async start () {
      if (deps.listen !== undefined) {
        try {
          // Recorded events commit with their status deliveries: the sender has work. A write to
          // the change log (fallback state, engagement) notifies its own channel: the dispatcher has work.
          const events = await deps.listen('tidings_events', () => { sender.wake() })
          const outbox = await deps.listen('tidings_outbox', () => { dispatcher.wake() })
          unlisten = async () => { await events(); await outbox() }
        } catch (err) {
          log.warn({ err }, 'webhooks-out: LISTEN failed; polling only')
        }
      }
      // With subscriptions already there, deliveries will come: load the HTTP client now, not
      // in the middle of the first burst of callbacks.
      try {
        const { rows } = await sql`select 1 from webhook_subscriptions where enabled limit 1`.execute(db)
        if (rows.length > 0) http.warm()
      } catch (err) {
        log.warn({ err }, 'webhooks-out: could not look for subscriptions; the HTTP client loads on the first delivery')
      }
      dispatcher.start()
      sender.start()
    },
    async stop () {
      await unlisten?.()
      await dispatcher.stop()
      await Promise.race([sender.stop(), new Promise((resolve) => setTimeout(resolve, STOP_WAIT_MS).unref())])
      await http.close()
    }
  }
}
