/**
 * Reconciliation against the FAKE Twilio and FAKE Resend APIs on loopback: the fallback app (its
 * workers send the SMS fallbacks), plus a one-off pass exactly as `npm run reconcile` runs it (its
 * own job-queue handle for the fallback hook, the real twilio-node client, the real Resend client).
 */
import { sql, type Kysely } from 'kysely'
import type { ReconcileConfig } from '../../src/config/maintenance.ts'
import type { Database, NewMessageRow } from '../../src/db/database.ts'
import { createJobQueue } from '../../src/fallback/queue.ts'
import { webhookRecordHooks } from '../../src/delivery/on-recorded.ts'
import { createFallbackQueues, createFallbackService } from '../../src/fallback/service.ts'
import { createRecorder } from '../../src/ingest/recorder.ts'
import { runReconcile, type ReconcileSummary } from '../../src/maintenance/reconcile.ts'
import { reconcileDepsOf } from '../../src/maintenance/scheduler.ts'
import { startFakeResend, type FakeResend } from '../fakes/fake-resend.ts'
import { buildFallbackApp, type FallbackTestApp } from './fallback.ts'

interface TapLike { teardown: (fn: () => unknown) => void }

export interface ReconcileTestApp extends FallbackTestApp {
  resend: FakeResend
  /** One pass now; `overrides` replace `RECONCILE_*` settings for this pass. */
  reconcile: (overrides?: Partial<Pick<ReconcileConfig, 'afterMs' | 'batch' | 'maxAgeMs'>>) => Promise<ReconcileSummary>
}

export async function buildReconcileApp (t: TapLike, env: Record<string, string | undefined> = {}): Promise<ReconcileTestApp> {
  const resend = await startFakeResend()
  t.teardown(async () => { await resend.close() })
  const fx = await buildFallbackApp(t, {
    // Passes run when a test says so, not on the app's schedule.
    RECONCILE_INTERVAL: '0',
    RESEND_API_KEY: resend.apiKey,
    RESEND_API_BASE_URL: resend.url,
    ...env
  })
  const boss = createJobQueue({ connectionString: fx.url }, { supervise: false })
  await boss.start()
  t.teardown(async () => { await boss.stop({ graceful: true, timeout: 5000 }) })
  await createFallbackQueues(boss, fx.config)
  const recorder = createRecorder({ db: fx.db, metrics: fx.app.metrics, maxBatch: 1, concurrency: 1 })
  recorder.use(createFallbackService(fx.config, fx.db, boss, fx.app.log).hooks)
  if (fx.config.webhooksOut.secretsKeys.length > 0) recorder.use(webhookRecordHooks())
  const deps = reconcileDepsOf(fx.config, fx.db, recorder, fx.app.log, fx.app.metrics)
  return {
    ...fx,
    resend,
    reconcile: async (overrides = {}) => await runReconcile(deps, { ...fx.config.reconcile, ...overrides })
  }
}

/** Makes a message look untouched for `minutes` (its last change, and its creation when `created`). */
export async function age (db: Kysely<Database>, sid: string, minutes: number, opts: { created?: number } = {}): Promise<void> {
  await db.updateTable('messages')
    .set({
      updated_at: sql`now() - make_interval(mins => ${minutes})`,
      ...(opts.created === undefined ? {} : { created_at: sql`now() - make_interval(mins => ${opts.created})` })
    })
    .where('sid', '=', sid)
    .execute()
}

/** `GET …/Messages/{sid}.json` requests the fake Twilio received for `sid`. */
export function twilioFetches (fake: FallbackTestApp['fake'], sid: string): number {
  return fake.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/Messages/${sid}.json`)).length
}

/** Inserts a message as if its last callback came `minutes` ago (columns left out are null). */
export async function insertStuckMessage (db: Kysely<Database>, row: NewMessageRow, minutes = 45): Promise<void> {
  await db.insertInto('messages').values(row).execute()
  await age(db, row.sid, minutes)
}
