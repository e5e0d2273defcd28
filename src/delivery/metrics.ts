/**
 * Metrics of outbound webhooks: counters kept by the sender, and gauges read from the database so
 * every replica reports the same shared state, at most once per `METRICS_DATABASE_CACHE` however
 * often `/metrics` is scraped (`cachedLoader`). A failing query leaves a gauge empty.
 */
import { sql, type Kysely } from 'kysely'
import { Counter, Gauge, type Registry } from 'prom-client'
import { cachedLoader } from '../metrics.ts'

export interface DeliveryMetrics {
  /** Attempts by what became of the delivery: delivered, retrying, failed (after the last attempt, or 410). */
  webhookDeliveries: Counter<'outcome'>
  /** Attempts by result: 2xx, 3xx, 4xx, 5xx, timeout, network, refused (SSRF guard). */
  webhookAttempts: Counter<'result'>
}

/**
 * Registers the counters and the database gauges on `registry`.
 * @param db - for the gauges: the read pool's handle.
 * @param cacheMs - how long the gauges' figures are reused between scrapes.
 */
export function createDeliveryMetrics (registry: Registry, db: Kysely<any> | undefined, cacheMs: number): DeliveryMetrics {
  if (db !== undefined) {
    const oldest = cachedLoader(async () => (await sql<{ age: string | null }>`
      select extract(epoch from now() - min(d.created_at))::text as age from webhook_deliveries d
      join webhook_subscriptions s on s.id = d.subscription_id and s.enabled where d.state = 'pending'`.execute(db)).rows, cacheMs)
    const subscriptions = cachedLoader(async () => (await sql<{ enabled: boolean, reason: string | null, n: string }>`
      select enabled, disabled_reason as reason, count(*)::text as n from webhook_subscriptions group by 1, 2`.execute(db)).rows, cacheMs)
    registry.registerMetric(new Gauge({
      name: 'tidings_webhook_oldest_pending_delivery_age_seconds',
      help: 'Age of the oldest pending outbound webhook delivery of an enabled subscription, in seconds (0 when none)',
      registers: [],
      async collect () {
        try {
          this.set(Number((await oldest())[0]?.age ?? 0))
        } catch {}
      }
    }))
    registry.registerMetric(new Gauge({
      name: 'tidings_webhook_subscriptions',
      help: 'Outbound webhook subscriptions by state (enabled, disabled) and disabled reason',
      labelNames: ['state', 'reason'],
      registers: [],
      async collect () {
        this.reset()
        try {
          for (const r of await subscriptions()) this.set({ state: r.enabled ? 'enabled' : 'disabled', reason: r.enabled ? '' : r.reason ?? '' }, Number(r.n))
        } catch {}
      }
    }))
  }
  return {
    webhookDeliveries: new Counter({
      name: 'tidings_webhook_deliveries_total',
      help: 'Outbound webhook attempts by what became of the delivery (delivered, retrying, failed)',
      labelNames: ['outcome'],
      registers: [registry]
    }),
    webhookAttempts: new Counter({
      name: 'tidings_webhook_attempts_total',
      help: 'Outbound webhook attempts by result (2xx, 3xx, 4xx, 5xx, timeout, network, refused)',
      labelNames: ['result'],
      registers: [registry]
    })
  }
}
