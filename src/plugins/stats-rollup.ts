/**
 * Keeps the statistics rollup (`src/db/stats-rollup.ts`) fresh: one refresh when the app is ready,
 * then every `CONSOLE_STATS_REFRESH_INTERVAL`. Every replica runs the timer; an advisory lock lets
 * one refresh at a time. A failed refresh is logged and retried at the next tick: reads stay
 * correct meanwhile, computing the hours after the last refresh from `messages`.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { refreshStatsRollup } from '../db/stats-rollup.ts'

export const statsRollup = fp(async function statsRollup (app: FastifyInstance, opts: { db: Kysely<Database>, intervalMs: number, lookbackMs: number }) {
  if (opts.intervalMs === 0) return
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  const refresh = (): void => {
    if (running !== undefined) return
    const started = performance.now()
    running = refreshStatsRollup(opts.db, { lookbackMs: opts.lookbackMs })
      .then((hours) => { app.log.debug({ hours, ms: Math.round(performance.now() - started) }, 'stats rollup refreshed') })
      .catch((err: unknown) => { app.log.warn({ err }, 'stats rollup refresh failed; will retry') })
      .finally(() => { running = undefined })
  }
  app.addHook('onReady', async () => {
    refresh()
    timer = setInterval(refresh, opts.intervalMs)
    timer.unref()
  })
  app.addHook('preClose', async () => {
    clearInterval(timer)
    await running
  })
}, { name: 'stats-rollup' })
