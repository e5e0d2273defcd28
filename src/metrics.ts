/**
 * Prometheus metrics (prom-client). One registry per app instance so tests can build many apps.
 */
import { sql, type Kysely } from 'kysely'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Database } from './db/database.ts'
import { createDeliveryMetrics, type DeliveryMetrics } from './delivery/metrics.ts'

/** Webhook outcomes, as counted in `tidings_webhooks_total{provider,outcome}`. */
export type WebhookOutcome = 'accepted' | 'duplicate' | 'invalid_signature' | 'unknown_account' | 'invalid_payload' | 'unavailable' | 'ignored'

export interface Metrics extends DeliveryMetrics {
  registry: Registry
  webhooks: Counter<'provider' | 'outcome'>
  events: Counter<'channel' | 'status'>
  /** Request latency in seconds, by method, route pattern and status code. */
  httpDuration: Histogram<'method' | 'route' | 'status_code'>
  /** Requests refused by load shedding, by reason. */
  shed: Counter<'reason'>
  /** Reconciliation: messages looked up (or given up on), by provider and `ReconcileOutcome`. */
  reconcile: Counter<'provider' | 'outcome'>
  /** Rows deleted by retention, by table. */
  retentionDeleted: Counter<'table'>
}

/** What a database pool reports about itself (PostgreSQL only). */
export interface PoolStats { total: number, idle: number, waiting: number }

/**
 * Gauges read from the database at scrape time, so every replica reports the same shared state:
 * fallbacks by state and reason, and pg-boss queue depth and oldest waiting job. A failing query
 * (the database down, or no `pgboss` schema yet) leaves the gauge empty rather than failing the scrape.
 */
function registerDatabaseGauges (registry: Registry, db: Kysely<Database>): void {
  registry.registerMetric(new Gauge({
    name: 'tidings_fallbacks',
    help: 'SMS fallbacks by state and reason',
    labelNames: ['state', 'reason'],
    registers: [],
    async collect () {
      this.reset()
      try {
        const rows = await sql<{ state: string, reason: string | null, n: string }>`
          select state, reason, count(*)::text as n from fallbacks group by state, reason`.execute(db)
        for (const r of rows.rows) this.set({ state: r.state, reason: r.reason ?? '' }, Number(r.n))
      } catch {}
    }
  }))
  const jobs = new Gauge({
    name: 'tidings_queue_jobs',
    help: 'Jobs in the pg-boss queues by queue and state (created, retry, active)',
    labelNames: ['queue', 'state'],
    registers: []
  })
  const oldest = new Gauge({
    name: 'tidings_queue_oldest_job_age_seconds',
    help: 'Age of the oldest job waiting to run (created or retry) per queue, in seconds',
    labelNames: ['queue'],
    registers: [],
    async collect () {
      jobs.reset()
      this.reset()
      try {
        const rows = await sql<{ name: string, state: string, n: string, age: string | null }>`
          select name, state::text as state, count(*)::text as n,
                 extract(epoch from now() - min(created_on))::text as age
          from pgboss.job where state in ('created', 'retry', 'active') group by name, state`.execute(db)
        const ages = new Map<string, number>()
        for (const r of rows.rows) {
          jobs.set({ queue: r.name, state: r.state }, Number(r.n))
          if (r.state !== 'active' && r.age !== null) ages.set(r.name, Math.max(ages.get(r.name) ?? 0, Number(r.age)))
        }
        for (const [queue, age] of ages) this.set({ queue }, age)
      } catch {}
    }
  })
  registry.registerMetric(jobs)
  registry.registerMetric(oldest)
}

/**
 * Creates the registry and Tidings' own metrics.
 * @param poolStats - reads the database pool's state at scrape time, when there is a pool.
 * @param db - for gauges read from the database at scrape time (fallbacks, queues).
 */
export function createMetrics (poolStats?: () => PoolStats, db?: Kysely<Database>): Metrics {
  const registry = new Registry()
  if (db !== undefined) registerDatabaseGauges(registry, db)
  // Process metrics, including event-loop delay (tidings_nodejs_eventloop_lag_*).
  collectDefaultMetrics({ register: registry, prefix: 'tidings_' })
  if (poolStats !== undefined) {
    registry.registerMetric(new Gauge({
      name: 'tidings_db_pool_connections',
      help: 'Database pool connections by state (total, idle, waiting = callers waiting for one)',
      labelNames: ['state'],
      registers: [],
      collect () {
        const s = poolStats()
        this.set({ state: 'total' }, s.total)
        this.set({ state: 'idle' }, s.idle)
        this.set({ state: 'waiting' }, s.waiting)
      }
    }))
  }
  return {
    // Outbound status webhooks (src/delivery/metrics.ts).
    ...createDeliveryMetrics(registry, db),
    httpDuration: new Histogram({
      name: 'tidings_http_request_duration_seconds',
      help: 'HTTP request latency by method, route and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    shed: new Counter({
      name: 'tidings_load_shed_total',
      help: 'Requests answered 503 by load shedding, by reason',
      labelNames: ['reason'],
      registers: [registry]
    }),
    registry,
    webhooks: new Counter({
      name: 'tidings_webhooks_total',
      help: 'Webhook requests by provider and outcome',
      labelNames: ['provider', 'outcome'],
      registers: [registry]
    }),
    events: new Counter({
      name: 'tidings_events_recorded_total',
      help: 'New status events recorded, by channel and status',
      labelNames: ['channel', 'status'],
      registers: [registry]
    }),
    reconcile: new Counter({
      name: 'tidings_reconcile_total',
      help: 'Reconciliation: messages fetched from their provider or given up on, by provider and outcome (changed, unchanged, not_found, error, rate_limited, gave_up)',
      labelNames: ['provider', 'outcome'],
      registers: [registry]
    }),
    retentionDeleted: new Counter({
      name: 'tidings_retention_deleted_total',
      help: 'Rows deleted by retention, by table',
      labelNames: ['table'],
      registers: [registry]
    })
  }
}
