/**
 * The sender: claims due deliveries, signs them the Standard Webhooks way with the `standardwebhooks`
 * library, POSTs them, and records each attempt. Every replica runs one.
 *
 * - Claiming is one statement: per subscription with a free slot, its oldest due pending rows
 *   (`FOR UPDATE SKIP LOCKED`, so replicas never claim the same row), whose `next_attempt_at` moves
 *   a lease ahead. A process that dies mid-request leaves the row pending; it is due again when the
 *   lease ends, and goes out again under the same `webhook-id` (at least once).
 * - A subscription never has more than `WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION` requests in flight in
 *   a process, so a slow or dead consumer holds only its own slots: other subscriptions, and
 *   recording (which never waits for the sender), go on.
 * - Outcomes are written in batches: one UPDATE of the deliveries and one of the subscriptions'
 *   health (failing since, disabled on 410 or after `WEBHOOK_DISABLE_AFTER` of failures) per loop.
 */
import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { sql, type Kysely } from 'kysely'
import { Webhook } from 'standardwebhooks'
import type { WebhooksOutConfig } from '../config/webhooks-out.ts'
import type { Metrics } from '../metrics.ts'
import type { WebhookHttpClient } from './http-client.ts'
import { outcomeOf } from './retry-policy.ts'
import { decryptSecret } from './secrets.ts'

interface SubscriptionRow {
  id: string
  url: string
  secret_ciphertext: string
  previous_secret_ciphertext: string | null
  previous_secret_expires_at: Date | null
}

/** A claimed delivery with its subscription's target and secrets as they are at the claim. */
interface ClaimedRow extends Omit<SubscriptionRow, 'id'> {
  /** The subscription was failing when the delivery was claimed (`failing_since` set). */
  failing: boolean
  id: string
  subscription_id: string
  webhook_id: string
  payload: unknown
  attempts: number
}

interface Result {
  id: string
  subscriptionId: string
  state: 'delivered' | 'pending' | 'failed'
  statusCode: number | null
  error: string | null
  delayMs: number
  at: Date
  gone: boolean
  /** The attempt this outcome is of (1 for the first): written only over `attempt - 1`. */
  attempt: number
  /** The subscription was failing when the delivery was claimed. */
  failing: boolean
}

/** Outcomes kept in memory while the database cannot take them. */
const MAX_UNRECORDED = 10_000

/** Pause after a claim while requests are in flight, in ms (batches claims and outcome writes). */
const COALESCE_MS = 5

/**
 * Throttling while the process is saturated with callbacks (`SATURATED_BACKLOG`): deliveries yield
 * the CPU and database round trips to provider callbacks, whose fast 2xx matters more than lag.
 * Throttled, the sender pauses `YIELD_MS` between passes and keeps a share of
 * `WEBHOOK_MAX_IN_FLIGHT` in flight (at least one request). The share drops to `MIN_SHARE` as soon
 * as the process is saturated and grows back by the whole every `RAMP_MS` without: a
 * saturated stretch with short dips stays throttled instead of sending at full speed in every dip
 * (the sender's own bursts drew the recording backlog under the threshold for a few passes in each
 * second of saturation, and a third of the deliveries owed went out while callbacks waited,
 * `node bench/deliveries.ts`), and throttling ends gradually.
 */
const YIELD_MS = 100
const MIN_SHARE = 1 / 64
const RAMP_MS = 2000
/**
 * Saturation, as the sender sees it: over about `SATURATION_WINDOW_MS`, callbacks waiting for a
 * recording slot average more than `SATURATED_BACKLOG` events while the event loop is more than
 * `SATURATED_ELU` busy. A backlog alone does not mean saturation: with group commit, callbacks wait
 * for the batch in flight at any load, and yielding whenever one waited let deliveries fall seconds
 * behind at a third of capacity (lag p50 5.7 s at 1,200 callbacks/s, `node bench/deliveries.ts`;
 * 17 ms without yielding). Measured there: about 18 waiting on average when saturated, about 3 at
 * 1,200/s; utilisation 0.7–0.85 in both. Since recording got cheaper (issue 9, 2026-12-04), the
 * event loop of a saturated process is 0.6–0.77 busy (11–28 waiting), so 0.7 caught saturation only
 * part of the time; at 0.55 ingest with one subscription went from 83 % (median of 7 runs) to 90 %
 * (median of 5) of the figure without, lag unchanged (docs/performance.md, "Outbound webhooks").
 */
const SATURATED_BACKLOG = 8
const SATURATED_ELU = 0.55
const SATURATION_WINDOW_MS = 250
/**
 * The longest the sender stays throttled in one go while deliveries are due, in ms; after that it
 * does not throttle again for as long, so under saturation that never lets up deliveries still go
 * out at full speed at least half the time and their lag stays bounded. Throttling with nothing due
 * does not count.
 */
const MAX_YIELD_MS = 10_000

export interface SenderOptions {
  db: Kysely<any>
  /**
   * Provider events waiting for a recording slot (`EventBatcher.queued`). When many wait while the
   * event loop is busy (`SATURATED_BACKLOG`), ingest is saturated and the sender yields (`YIELD_MS`,
   * `MAX_YIELD_MS`): deliveries wait in the database, lag grows, nothing is lost. Without it, the
   * sender never yields.
   */
  ingestBacklog?: () => number
  log: FastifyBaseLogger
  config: WebhooksOutConfig
  http: WebhookHttpClient
  metrics?: Pick<Metrics, 'webhookDeliveries' | 'webhookAttempts'>
}

export class Sender {
  readonly #db: Kysely<any>
  readonly #log: FastifyBaseLogger
  readonly #config: WebhooksOutConfig
  readonly #http: WebhookHttpClient
  readonly #metrics: SenderOptions['metrics']
  readonly #ingestBacklog: () => number
  #elu = performance.eventLoopUtilization()
  #sampledAt = performance.now()
  /** Event-loop utilisation and recording backlog, smoothed over `SATURATION_WINDOW_MS`. */
  #busy = 0
  #backlog = 0
  /** The share of `WEBHOOK_MAX_IN_FLIGHT` the sender may use (1: not throttled), as of `#shareAt`. */
  #share = 1
  #shareAt = performance.now()
  /** ms throttled while deliveries were due, in the current throttled stretch. */
  #throttledMs = 0
  /**
   * The last claim got every row it asked for, so more deliveries are probably due: throttling now
   * holds them back. Only such throttling counts toward `MAX_YIELD_MS`.
   */
  #owed = false
  #noYieldUntil = 0
  readonly #inFlight = new Map<string, number>()
  #total = 0
  #results: Result[] = []
  /** Decrypted signers per subscription, keyed by the ciphertexts they came from. */
  readonly #signers = new Map<string, { key: string, signers: Webhook[], until: Date | null }>()
  #stopped = true
  #woken = false
  #wakeUp: (() => void) | undefined
  #loop: Promise<void> | undefined
  readonly #sends = new Set<Promise<void>>()
  #turn = 0
  /** The enabled subscriptions' ids, re-read at most every second: they only share out the claim budget. */
  #subs: { rows: Array<{ id: string }>, at: number } = { rows: [], at: 0 }

  constructor (opts: SenderOptions) {
    this.#db = opts.db
    this.#log = opts.log.child({ component: 'webhooks-out' })
    this.#config = opts.config
    this.#http = opts.http
    this.#metrics = opts.metrics
    this.#ingestBacklog = opts.ingestBacklog ?? (() => 0)
  }

  start (): void {
    this.#stopped = false
    this.#loop = this.#run()
  }

  /** Stops claiming, waits for requests in flight, and records their outcomes. */
  async stop (): Promise<void> {
    this.#stopped = true
    this.wake()
    await this.#loop
    await Promise.allSettled([...this.#sends])
    await this.#flush().catch((err: unknown) => { this.#log.warn({ err }, 'recording webhook outcomes at shutdown failed; the deliveries go out again after their lease') })
  }

  /** Looks for work now (new deliveries, a finished request). */
  wake (): void {
    this.#woken = true
    this.#wakeUp?.()
  }

  async #run (): Promise<void> {
    while (!this.#stopped) {
      const yielding = this.#throttle() < 1
      if (this.#total > 0 || yielding) {
        // Requests in flight: let a few more finish, so one claim and one outcome write serve many
        // deliveries. Ingest saturated: wait longer, so callbacks get the CPU and the database.
        await new Promise((resolve) => setTimeout(resolve, yielding ? YIELD_MS : COALESCE_MS))
      }
      this.#woken = false
      let claimed = 0
      try {
        await this.#flush()
        claimed = await this.#claimAndSend()
      } catch (err) {
        this.#log.warn({ err }, 'webhook sender pass failed; will retry')
      }
      if (claimed === 0 && !this.#woken && !this.#stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.#config.pollIntervalMs)
          this.#wakeUp = () => { clearTimeout(timer); resolve() }
        })
        this.#wakeUp = undefined
      }
    }
  }

  /**
   * The share of `WEBHOOK_MAX_IN_FLIGHT` this pass may use (see `YIELD_MS`): below 1 while the
   * process is saturated with callbacks (see `SATURATED_BACKLOG`) and shortly after, for at most
   * `MAX_YIELD_MS` in a row.
   */
  #throttle (): number {
    const at = performance.now()
    const elu = performance.eventLoopUtilization()
    const weight = 1 - Math.exp(-(at - this.#sampledAt) / SATURATION_WINDOW_MS)
    this.#busy += weight * (performance.eventLoopUtilization(elu, this.#elu).utilization - this.#busy)
    this.#backlog += weight * (this.#ingestBacklog() - this.#backlog)
    this.#elu = elu
    this.#sampledAt = at
    const saturated = this.#backlog > SATURATED_BACKLOG && this.#busy > SATURATED_ELU
    const elapsed = at - this.#shareAt
    this.#shareAt = at
    if (at < this.#noYieldUntil) this.#share = 1
    else if (saturated) this.#share = MIN_SHARE
    else this.#share = Math.min(1, this.#share + elapsed / RAMP_MS)
    // Throttling with nothing due delays no delivery, so it spends none of the budget: otherwise a
    // saturated stretch with nothing to send would leave the deliveries that follow no yielding.
    if (this.#share === 1) this.#throttledMs = 0
    else if (this.#owed) this.#throttledMs += elapsed
    if (this.#throttledMs > MAX_YIELD_MS) {
      this.#throttledMs = 0
      this.#noYieldUntil = at + MAX_YIELD_MS
      this.#share = 1
    }
    return this.#share
  }

  async #claimAndSend (): Promise<number> {
    const limit = Math.max(1, Math.floor(this.#config.maxInFlight * this.#share))
    const free = limit - this.#total
    if (free <= 0) return 0
    if (Date.now() - this.#subs.at >= Math.min(this.#config.pollIntervalMs, 1000)) {
      const { rows } = await sql<{ id: string }>`select id::text as id from webhook_subscriptions where enabled`.execute(this.#db)
      this.#subs = { rows, at: Date.now() }
    }
    const subs = this.#subs.rows
    if (subs.length === 0) {
      this.#owed = false
      return 0
    }
    // Start from a different subscription each time, so a small global budget is shared fairly.
    const start = this.#turn++ % subs.length
    const ids: string[] = []
    const slots: number[] = []
    let budget = free
    for (let i = 0; i < subs.length && budget > 0; i++) {
      const sub = subs[(start + i) % subs.length]
      const n = Math.min(budget, this.#config.concurrencyPerSubscription - (this.#inFlight.get(sub.id) ?? 0))
      if (n > 0) { ids.push(sub.id); slots.push(n); budget -= n }
    }
    if (ids.length === 0) return 0
    const wanted = free - budget
    const leaseMs = this.#config.timeoutMs + 5000
    const { rows } = await sql<ClaimedRow>`
      with want as (select * from unnest(${ids}::uuid[], ${slots}::int[]) as w(id, slots)),
      picked as (
        select c.id from want cross join lateral (
          select d.id from webhook_deliveries d
          where d.subscription_id = want.id and d.state = 'pending' and d.next_attempt_at <= now()
          order by d.next_attempt_at limit want.slots
          for update skip locked) c
      )
      update webhook_deliveries d set next_attempt_at = now() + ${leaseMs} * interval '1 millisecond'
      from picked, webhook_subscriptions s
      where d.id = picked.id and s.id = d.subscription_id and s.enabled
      returning d.id::text as id, d.subscription_id::text as subscription_id, d.webhook_id, d.payload, d.attempts,
        s.url, s.secret_ciphertext, s.previous_secret_ciphertext, s.previous_secret_expires_at,
        s.failing_since is not null as failing`.execute(this.#db)
    for (const row of rows) {
      // The target and secrets come from the claim, not the cached list: a rotation, a new URL or a
      // disabling applies to the next claim (the cached list only shares out the budget).
      const sub: SubscriptionRow = { id: row.subscription_id, url: row.url, secret_ciphertext: row.secret_ciphertext, previous_secret_ciphertext: row.previous_secret_ciphertext, previous_secret_expires_at: row.previous_secret_expires_at }
      this.#inFlight.set(sub.id, (this.#inFlight.get(sub.id) ?? 0) + 1)
      this.#total++
      const p = this.#send(sub, row).finally(() => {
        this.#sends.delete(p)
        this.#total--
        const left = (this.#inFlight.get(sub.id) ?? 1) - 1
        if (left === 0) this.#inFlight.delete(sub.id); else this.#inFlight.set(sub.id, left)
        this.wake()
      })
      this.#sends.add(p)
    }
    this.#owed = rows.length === wanted
    return rows.length
  }

  /** The signers of a subscription: the current secret, and the previous one during its overlap. */
  #signersOf (sub: SubscriptionRow): Webhook[] {
    const key = `${sub.secret_ciphertext}|${sub.previous_secret_ciphertext ?? ''}`
    let cached = this.#signers.get(sub.id)
    if (cached?.key !== key) {
      const keys = this.#config.secretsKeys
      const signers = [new Webhook(decryptSecret(keys, sub.id, sub.secret_ciphertext))]
      if (sub.previous_secret_ciphertext !== null) signers.push(new Webhook(decryptSecret(keys, sub.id, sub.previous_secret_ciphertext)))
      cached = { key, signers, until: sub.previous_secret_expires_at }
      this.#signers.set(sub.id, cached)
    }
    const overlap = cached.until !== null && cached.until.getTime() > Date.now()
    return overlap ? cached.signers : cached.signers.slice(0, 1)
  }

  async #send (sub: SubscriptionRow, row: ClaimedRow): Promise<void> {
    const at = new Date()
    let result
    try {
      const body = JSON.stringify(row.payload)
      // Several signatures, space-separated, while a rotated secret overlaps (Standard Webhooks).
      const signature = this.#signersOf(sub).map((w) => w.sign(row.webhook_id, at, body)).join(' ')
      result = await this.#http.post(sub.url, {
        'webhook-id': row.webhook_id,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': signature
      }, body)
    } catch (err) {
      this.#log.error({ err, subscription: sub.id }, 'could not sign a webhook delivery')
      result = { statusCode: null, retryAfterS: null, error: 'could not sign (see the logs)', kind: 'network' as const }
    }
    const attempt = row.attempts + 1
    const outcome = outcomeOf(result, attempt, this.#config.retryScheduleMs)
    this.#metrics?.webhookAttempts.inc({ result: result.kind })
    this.#metrics?.webhookDeliveries.inc({ outcome: outcome.state === 'pending' ? 'retrying' : outcome.state })
    this.#results.push({
      id: row.id,
      subscriptionId: sub.id,
      state: outcome.state,
      statusCode: result.statusCode,
      error: result.error,
      delayMs: outcome.state === 'pending' ? outcome.delayMs : 0,
      at,
      gone: result.statusCode === 410,
      attempt,
      failing: row.failing
    })
  }

  /** Writes the outcomes gathered since the last flush: deliveries, then subscription health. */
  async #flush (): Promise<void> {
    if (this.#results.length === 0) return
    const results = this.#results
    this.#results = []
    try {
      await sql`
        update webhook_deliveries d set
          state = r.state,
          attempts = r.attempt,
          last_attempt_at = r.at,
          last_status_code = r.code,
          last_error = r.error,
          next_attempt_at = case when r.state = 'pending' then r.at + r.delay_ms * interval '1 millisecond' else d.next_attempt_at end,
          delivered_at = case when r.state = 'delivered' then r.at else d.delivered_at end
        from unnest(${results.map((r) => r.id)}::bigint[], ${results.map((r) => r.state)}::text[],
                    ${results.map((r) => r.statusCode)}::int[], ${results.map((r) => r.error)}::text[],
                    ${results.map((r) => r.delayMs)}::bigint[], ${results.map((r) => r.at.toISOString())}::timestamptz[],
                    ${results.map((r) => r.attempt)}::int[])
          as r(id, state, code, error, delay_ms, at, attempt)
        -- Idempotent: an outcome written again (the subscription update below failed, or the
        -- commit's answer was lost) finds the attempt already counted and changes nothing.
        where d.id = r.id and d.state = 'pending' and d.attempts = r.attempt - 1`.execute(this.#db)
      // Per subscription: did its latest attempt succeed, its first failure's time, a 410. A
      // subscription that was healthy at the claim and only succeeded has nothing to change: it is
      // left out, and with no other, so is the statement.
      const health = new Map<string, { ok: boolean, firstFailure: Date | null, gone: boolean }>()
      const changed = new Set(results.filter((r) => r.failing || r.state !== 'delivered').map((r) => r.subscriptionId))
      for (const r of results) {
        if (!changed.has(r.subscriptionId)) continue
        const h = health.get(r.subscriptionId) ?? { ok: false, firstFailure: null, gone: false }
        h.ok = r.state === 'delivered'
        if (!h.ok && h.firstFailure === null) h.firstFailure = r.at
        h.gone ||= r.gone
        health.set(r.subscriptionId, h)
      }
      const subs = [...health.keys()]
      if (subs.length === 0) return
      const { rows } = await sql<{ id: string, disabled_reason: string }>`
        with r as (
          select * from unnest(${subs}::uuid[], ${subs.map((s) => health.get(s)?.ok)}::bool[], ${subs.map((s) => health.get(s)?.gone)}::bool[],
                               ${subs.map((s) => health.get(s)?.firstFailure?.toISOString() ?? null)}::timestamptz[]) as r(id, ok, gone, first_failure)
        ), n as (
          select s.id, s.enabled,
            case when r.ok then null else coalesce(s.failing_since, r.first_failure) end as failing_since,
            case when r.gone then 'gone'
                 when not r.ok and coalesce(s.failing_since, r.first_failure) < now() - ${this.#config.disableAfterMs} * interval '1 millisecond' then 'failing'
            end as disable
          from webhook_subscriptions s join r on r.id = s.id
        )
        update webhook_subscriptions s set
          failing_since = n.failing_since,
          enabled = s.enabled and n.disable is null,
          disabled_reason = case when s.enabled and n.disable is not null then n.disable else s.disabled_reason end,
          disabled_at = case when s.enabled and n.disable is not null then now() else s.disabled_at end
        from n where s.id = n.id
        returning s.id::text as id, case when n.enabled and n.disable is not null then n.disable end as disabled_reason`.execute(this.#db)
      for (const r of rows) {
        if (r.disabled_reason !== null) this.#log.warn({ subscription: r.id, reason: r.disabled_reason }, 'webhook subscription disabled')
      }
    } catch (err) {
      // Kept for the next flush (the UPDATE only touches rows still pending at the attempt before
      // this one, so a repeat counts no attempt twice). Past the cap, or if the process dies first, the rows stay pending and go out
      // again when their lease ends, under the same webhook-id.
      this.#results = [...results, ...this.#results].slice(-MAX_UNRECORDED)
      this.#log.warn({ err, deliveries: results.length }, 'recording webhook outcomes failed; will retry')
    }
  }
}
