/**
 * Prometheus metrics (prom-client). One registry per app instance so tests can build many apps.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Webhook outcomes, as counted in `tidings_webhooks_total{provider,outcome}`. */
export type WebhookOutcome = 'accepted' | 'duplicate' | 'invalid_signature' | 'unknown_account' | 'invalid_payload' | 'unavailable' | 'ignored'

export interface Metrics {
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
 * Creates the registry and Tidings' own metrics.
 * @param poolStats - reads the database pool's state at scrape time, when there is a pool.
 */
export function createMetrics (poolStats?: () => PoolStats): Metrics {
  const registry = new Registry()
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
