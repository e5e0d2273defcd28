/**
 * `GET /v1/stats`: delivery statistics over messages *created* in `[since, until)`, optionally of
 * one channel, computed in PostgreSQL (four aggregate queries, run concurrently; counts and rates
 * come out of SQL, JavaScript only renames them). Definitions
 * (also in openapi.yaml, `Stats`), all over a message's *current* status:
 *
 * - delivered: `delivered`, `read` (Twilio); `email.delivered`, `email.complained` (a complaint
 *   comes from a delivered email). Failed: `undelivered`, `failed`; `email.bounced`,
 *   `email.failed`, `email.suppressed`. Anything else is still in flight (or canceled).
 * - delivery_rate = delivered / (delivered + failed): messages with an outcome only.
 * - read_rate = WhatsApp `read` / WhatsApp delivered (`delivered` + `read`).
 * - open_rate, click_rate = delivered emails with at least one open (click) / delivered emails.
 * - delivery time = `delivered_at - sent_at` in seconds, over messages with both where
 *   `delivered_at >= sent_at` (a `delivered` received before `sent` gives no sample); median and
 *   p95 by `percentile_cont`.
 */
import { sql, type Kysely, type SqlBool, type ExpressionBuilder } from 'kysely'
import type { Channel, Database } from './database.ts'
import { FAILURE_STATUSES, RESEND_FAILURE_STATUSES } from '../domain/status-precedence.ts'

export interface StatsFilter {
  since?: Date
  until?: Date
  channel?: Channel
}

export const DELIVERED_STATUSES = ['delivered', 'read', 'email.delivered', 'email.complained'] as const
/** Failed for good: the statuses that carry an error, as status precedence defines them. */
export const FAILED_STATUSES: readonly string[] = [...FAILURE_STATUSES, ...RESEND_FAILURE_STATUSES]
const EMAIL_DELIVERED = ['email.delivered', 'email.complained'] as const
/** How many error codes `failuresByErrorCode` lists. */
export const TOP_ERROR_CODES = 20

export interface Ratio { numerator: number, denominator: number, rate: number | null }

export interface StatsResult {
  total: number
  byStatus: Array<{ status: string | null, count: number }>
  delivery: Ratio
  read: Ratio
  open: Ratio
  click: Ratio
  failuresByErrorCode: Array<{ errorCode: string | null, count: number }>
  fallbacks: Array<{ state: string, reason: string | null, count: number }>
  deliveryTime: { samples: number, medianS: number | null, p95S: number | null }
}

function inRange (filter: StatsFilter) {
  return (eb: ExpressionBuilder<Database, 'messages'>) => {
    const conditions = []
    if (filter.since !== undefined) conditions.push(eb('messages.created_at', '>=', filter.since))
    if (filter.until !== undefined) conditions.push(eb('messages.created_at', '<', filter.until))
    if (filter.channel !== undefined) conditions.push(eb('messages.channel', '=', filter.channel))
    return eb.and(conditions)
  }
}

const ratio = (numerator: string | number, denominator: string | number, rate: number | null): Ratio =>
  ({ numerator: Number(numerator), denominator: Number(denominator), rate: rate === null ? null : Number(rate) })

const list = (values: readonly string[]) => sql.join(values.map((v) => sql.lit(v)))

export async function computeStats (db: Kysely<Database>, filter: StatsFilter): Promise<StatsResult> {
  const where = inRange(filter)
  const delivered = sql<SqlBool>`status in (${list(DELIVERED_STATUSES)})`
  const failed = sql<SqlBool>`status in (${list(FAILED_STATUSES)})`
  const emailDelivered = sql<SqlBool>`status in (${list(EMAIL_DELIVERED)})`
  const waDelivered = sql<SqlBool>`channel = 'whatsapp' and status in ('delivered', 'read')`

  const totals = db.with('t', (qb) => qb.selectFrom('messages')
    .where(where)
    .select([
      sql<string>`count(*)`.as('total'),
      sql<string>`count(*) filter (where ${delivered})`.as('delivered'),
      sql<string>`count(*) filter (where ${failed})`.as('failed'),
      sql<string>`count(*) filter (where ${waDelivered})`.as('wa_delivered'),
      sql<string>`count(*) filter (where ${waDelivered} and status = 'read')`.as('wa_read'),
      sql<string>`count(*) filter (where ${emailDelivered})`.as('email_delivered'),
      sql<string>`count(*) filter (where ${emailDelivered} and open_count > 0)`.as('email_opened'),
      sql<string>`count(*) filter (where ${emailDelivered} and click_count > 0)`.as('email_clicked'),
      sql<string>`count(*) filter (where delivered_at >= sent_at)`.as('latency_samples'),
      sql<number[] | null>`percentile_cont(array[0.5, 0.95]::float8[]) within group (order by extract(epoch from delivered_at - sent_at)::float8) filter (where delivered_at >= sent_at)`.as('latency')
    ]))
    .selectFrom('t')
    .selectAll()
    .select([
      sql<number | null>`delivered::float8 / nullif(delivered + failed, 0)`.as('delivery_rate'),
      sql<number | null>`wa_read::float8 / nullif(wa_delivered, 0)`.as('read_rate'),
      sql<number | null>`email_opened::float8 / nullif(email_delivered, 0)`.as('open_rate'),
      sql<number | null>`email_clicked::float8 / nullif(email_delivered, 0)`.as('click_rate')
    ])
    .executeTakeFirstOrThrow()

  const byStatus = db.selectFrom('messages')
    .where(where)
    .select(['status', sql<string>`count(*)`.as('n')])
    .groupBy('status')
    .orderBy(sql`count(*)`, 'desc')
    .orderBy('status')
    .execute()

  const failures = db.selectFrom('messages')
    .where(where)
    .where(failed)
    .select(['error_code', sql<string>`count(*)`.as('n')])
    .groupBy('error_code')
    .orderBy(sql`count(*)`, 'desc')
    .orderBy('error_code')
    .limit(TOP_ERROR_CODES)
    .execute()

  const fallbacks = db.selectFrom('fallbacks')
    .innerJoin('messages', 'messages.sid', 'fallbacks.original_sid')
    .where(where)
    .select(['fallbacks.state', 'fallbacks.reason', sql<string>`count(*)`.as('n')])
    .groupBy(['fallbacks.state', 'fallbacks.reason'])
    .orderBy('fallbacks.state')
    .orderBy('fallbacks.reason')
    .execute()

  const [t, s, f, fb] = await Promise.all([totals, byStatus, failures, fallbacks])
  // Milliseconds are precision enough, and keep float noise (87.99999999999999) out of the API.
  const latency = t.latency === null ? null : t.latency.map((v) => Math.round(Number(v) * 1000) / 1000)
  return {
    total: Number(t.total),
    byStatus: s.map((r) => ({ status: r.status, count: Number(r.n) })),
    delivery: ratio(t.delivered, Number(t.delivered) + Number(t.failed), t.delivery_rate),
    read: ratio(t.wa_read, t.wa_delivered, t.read_rate),
    open: ratio(t.email_opened, t.email_delivered, t.open_rate),
    click: ratio(t.email_clicked, t.email_delivered, t.click_rate),
    failuresByErrorCode: f.map((r) => ({ errorCode: r.error_code, count: Number(r.n) })),
    fallbacks: fb.map((r) => ({ state: r.state, reason: r.reason, count: Number(r.n) })),
    deliveryTime: {
      samples: Number(t.latency_samples),
      medianS: latency?.[0] ?? null,
      p95S: latency?.[1] ?? null
    }
  }
}
