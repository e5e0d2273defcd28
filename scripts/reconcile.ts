/**
 * `npm run reconcile`: one reconciliation pass now, against DATABASE_URL (or the embedded PostgreSQL
 * in DATA_DIR, shared with a running server). Prints each message whose status
 * changed (`sid: old → new`) and a summary, then exits 0; exits 1 when the configuration is invalid.
 * It reads the same variables as the server. A WhatsApp failure it finds gets its SMS fallback
 * queued, and every change its outbound-webhook deliveries (with WEBHOOK_SECRETS_KEY set); a
 * running Tidings process sends them.
 */
import { webhookRecordHooks } from '../src/delivery/on-recorded.ts'
import { createFallbackQueues, createFallbackService } from '../src/fallback/service.ts'
import { createJobQueue, jobQueueConnectionOf } from '../src/fallback/queue.ts'
import { createRecorder } from '../src/ingest/recorder.ts'
import { runReconcile } from '../src/maintenance/reconcile.ts'
import { reconcileDepsOf } from '../src/maintenance/scheduler.ts'
import { startCli } from './maintenance-cli.ts'

const { config, database, log, close } = await startCli()
const boss = createJobQueue(jobQueueConnectionOf(database), { supervise: false })
boss.on('error', (err) => log.error({ err }, 'job queue error'))
try {
  await boss.start()
  await createFallbackQueues(boss, config)
  const recorder = createRecorder({ db: database.db, maxBatch: 1, concurrency: 1 })
  // The same hooks as the server's recorder (src/app.ts), so a change found here is treated alike.
  recorder.use(createFallbackService(config, database.db, boss, log).hooks)
  if (config.webhooksOut.secretsKeys.length > 0) recorder.use(webhookRecordHooks())
  const summary = await runReconcile(reconcileDepsOf(config, database.db, recorder, log), config.reconcile)
  for (const c of summary.changed) console.log(`${c.sid} (${c.provider}): ${c.before ?? 'no status'} → ${c.after ?? 'no status'}`)
  const o = summary.outcomes
  console.log(`Checked ${summary.checked} message(s): ${o.changed} changed, ${o.unchanged} unchanged, ${o.not_found} not found, ${o.error} error(s); ${o.gave_up} given up (older than RECONCILE_MAX_AGE)` +
    (summary.rateLimited.length > 0 ? `; rate limited by ${summary.rateLimited.join(', ')}, the rest waits for the next pass` : '') + '.')
  if (config.reconcile.resendApiKey === undefined) console.log('RESEND_API_KEY is not set: emails were not reconciled.')
} finally {
  await boss.stop({ graceful: true, timeout: 10_000 })
  await close()
}
