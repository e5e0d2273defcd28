/**
 * Prometheus metrics (prom-client). One registry per app instance so tests can build many apps.
 */
import { Counter, Registry, collectDefaultMetrics } from 'prom-client'

/** Webhook outcomes, as counted in `tidings_webhooks_total{provider,outcome}`. */
export type WebhookOutcome = 'accepted' | 'duplicate' | 'invalid_signature' | 'unknown_account' | 'invalid_payload' | 'unavailable' | 'ignored'

export interface Metrics {
  registry: Registry
  webhooks: Counter<'provider' | 'outcome'>
  events: Counter<'channel' | 'status'>
}

/** Creates the registry and Tidings' own metrics. */
export function createMetrics (): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'tidings_' })
  return {
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
    })
  }
}
