/**
 * Prometheus metrics (prom-client). One registry per app instance so tests can build many apps.
 */
import { sql, type Kysely } from 'kysely'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Database } from './db/database.ts'
import { RESEND_STATUS_RANK, TWILIO_STATUS_RANK } from './domain/status-precedence.ts'
import { createDeliveryMetrics, type DeliveryMetrics } from './delivery/metrics.ts'

/**
 * A status as a metrics label: the statuses Tidings knows, else `other`. Providers add statuses
 * and a forged or odd payload can carry any name; each distinct label value is a new series
 * (9,490 from one fuzz run), so the set is bounded here, for every caller of `events.inc`.
 */
export function statusLabel (status: string): string {
  return Object.hasOwn(TWILIO_STATUS_RANK, status) || Object.hasOwn(RESEND_STATUS_RANK, status) ||
    status === 'email.opened' || status === 'email.clicked'
    ? status
    : 'other'
}

/** Webhook outcomes, as counted in `tidings_webhooks_total{provider,outcome}`. */
export type WebhookOutcome = 'accepted' | 'duplicate' | 'invalid_signature' | 'unknown_account' | 'account_mismatch' | 'invalid_payload' | 'unavailable' | 'ignored'

export interface Metrics extends DeliveryMetrics {
  registry: Registry
  webhooks: Counter<'provider' | 'outcome'>
  events: Counter<'channel' | 'status'>
  /** Request latency in seconds, by method, route pattern and status code. */
  httpDuration: Histogram<'method' | 'route' | 'status_code'>
  /** Requests refused by load shedding, by reason and request class (`read`, `callback`). */
  shed: Counter<'reason' | 'class'>
  /** Reconciliation: messages looked up (or given up on), by provider and `ReconcileOutcome`. */
  reconcile: Counter<'provider' | 'outcome'>
  /** Reconciliation: statuses it corrected (a callback that never came), by provider and from → to status. */
  reconcileCorrections: Counter<'provider' | 'from' | 'to'>
  /** Rows deleted by retention, by table. */
  retentionDeleted: Counter<'table'>
  /** Input changed at the door so it can be stored (`src/domain/storable.ts`), by source and reason. */
  inputNormalized: Counter<'source' | 'reason'>
  /** Input refused at the door (4xx) because it could never be stored or read, by source and reason. */
  inputRefused: Counter<'source' | 'reason'>
}

/** What a database pool reports about itself (PostgreSQL only). */
export interface PoolStats { total: number, idle: number, waiting: number }

/**
 * `load` at most once per `ttlMs`: concurrent and later callers within that time share one result
 * (or one failure), so a burst of scrapes costs the database one query.
 */
export function cachedLoader<T> (load: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let cached: { at: number, value: Promise<T> } | undefined
  return async () => {
    const now = Date.now()
    if (cached === undefined || now - cached.at >= ttlMs) {
      const value = load()
      cached = { at: now, value }
      // A failure is kept for the same time: a database that is down is not asked again per scrape.
      value.catch(() => {})
    }
    return await cached.value
  }
}

/** Default for `cacheMs`: how long database figures are reused between scrapes, in ms. */
export const METRICS_DATABASE_CACHE_MS = 5000

/**
 * Gauges read from the database, so every replica reports the same shared state: fallbacks by
 * state and reason, and pg-boss queue depth and oldest waiting job. Read at most once per `cacheMs`
 * however often `/metrics` is scraped. A failing query (the database down, or no `pgboss` schema
 * yet) leaves the gauge empty rather than failing the scrape.
 */
function registerDatabaseGauges (registry: Registry, db: Kysely<Database>, cacheMs: number): void {
  const fallbacks = cachedLoader(async () => (await sql<{ state: string, reason: string | null, n: string }>`
    select state, reason, count(*)::text as n from fallbacks group by state, reason`.execute(db)).rows, cacheMs)
  const queues = cachedLoader(async () => (await sql<{ name: string, state: string, n: string, age: string | null }>`
    select name, state::text as state, count(*)::text as n,
           extract(epoch from now() - min(created_on))::text as age
    from pgboss.job where state in ('created', 'retry', 'active') group by name, state`.execute(db)).rows, cacheMs)
  registry.registerMetric(new Gauge({
    name: 'tidings_fallbacks',
    help: 'SMS fallbacks by state and reason',
    labelNames: ['state', 'reason'],
    registers: [],
    async collect () {
      this.reset()
      try {
        for (const r of await fallbacks()) this.set({ state: r.state, reason: r.reason ?? '' }, Number(r.n))
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
        const ages = new Map<string, number>()
        for (const r of await queues()) {
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

/** `events.inc` with the status label bounded by `statusLabel`, whoever calls it. */
function boundedStatusCounter (counter: Counter<'channel' | 'status'>): Counter<'channel' | 'status'> {
  const inc = counter.inc.bind(counter)
  counter.inc = ((labels?: Partial<Record<'channel' | 'status', string | number>> | number, value?: number) => {
    if (typeof labels === 'object' && labels.status !== undefined) labels = { ...labels, status: statusLabel(String(labels.status)) }
    inc(labels as never, value as never)
  }) as typeof counter.inc
  return counter
}

function registerPoolGauge (registry: Registry, name: string, help: string, poolStats: () => PoolStats): void {
  registry.registerMetric(new Gauge({
    name,
    help,
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

/**
 * Creates the registry and Tidings' own metrics.
 * @param poolStats - reads the database pool's state at scrape time, when there is a pool.
 * @param db - for gauges read from the database (fallbacks, queues): the read pool's handle.
 * @param more.cacheMs - how long those figures are reused between scrapes (`METRICS_DATABASE_CACHE`).
 * @param more.readPoolStats - the read pool's state, when there is one.
 */
export function createMetrics (poolStats?: () => PoolStats, db?: Kysely<Database>, more: { cacheMs?: number, readPoolStats?: () => PoolStats } = {}): Metrics {
  const registry = new Registry()
  if (db !== undefined) registerDatabaseGauges(registry, db, more.cacheMs ?? METRICS_DATABASE_CACHE_MS)
  if (more.readPoolStats !== undefined) {
    registerPoolGauge(registry, 'tidings_db_read_pool_connections', 'Read pool connections (API reads, stats, stream, metrics) by state (total, idle, waiting)', more.readPoolStats)
  }
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
    ...createDeliveryMetrics(registry, db, more.cacheMs ?? METRICS_DATABASE_CACHE_MS),
    httpDuration: new Histogram({
      name: 'tidings_http_request_duration_seconds',
      help: 'HTTP request latency by method, route and status code',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    shed: new Counter({
      name: 'tidings_load_shed_total',
      help: 'Requests answered 503 by load shedding, by reason and request class (read: reads, stats, streams, health, console; callback: POST /webhooks/*)',
      labelNames: ['reason', 'class'],
      registers: [registry]
    }),
    registry,
    webhooks: new Counter({
      name: 'tidings_webhooks_total',
      help: 'Webhook requests by provider and outcome',
      labelNames: ['provider', 'outcome'],
      registers: [registry]
    }),
    events: boundedStatusCounter(new Counter({
      name: 'tidings_events_recorded_total',
      help: 'New status events recorded, by channel and status (statuses Tidings does not know count as "other")',
      labelNames: ['channel', 'status'],
      registers: [registry]
    })),
    inputNormalized: new Counter({
      name: 'tidings_input_normalized_total',
      help: 'Provider input changed so it can be stored (lone_surrogate: replaced by U+FFFD; implausible_time: receive time used), by source and reason',
      labelNames: ['source', 'reason'],
      registers: [registry]
    }),
    inputRefused: new Counter({
      name: 'tidings_input_refused_total',
      help: 'Requests refused with a 4xx before any work because a value could never be stored or read (nul, too_deep, too_many_params, too_large, bad_query), by source and reason',
      labelNames: ['source', 'reason'],
      registers: [registry]
    }),
    reconcile: new Counter({
      name: 'tidings_reconcile_total',
      help: 'Reconciliation: messages fetched from their provider or given up on, by provider and outcome (changed, unchanged, not_found, error, rate_limited, gave_up)',
      labelNames: ['provider', 'outcome'],
      registers: [registry]
    }),
    reconcileCorrections: new Counter({
      name: 'tidings_reconcile_corrections_total',
      help: 'Statuses reconciliation corrected (callbacks that never arrived), by provider and from/to status ("none": no status before)',
      labelNames: ['provider', 'from', 'to'],
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
