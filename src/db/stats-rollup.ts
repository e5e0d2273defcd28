/**
 * The statistics rollup behind `GET /v1/stats/timeseries`: messages aggregated per hour of
 * `created_at`, channel, outcome and delivery-time bucket (`stats_hourly`), and failures per hour,
 * channel and error code (`stats_hourly_errors`). A 7-day window then reads a few thousand rows
 * instead of millions of messages (docs/performance.md, "Console time series").
 *
 * Why a rollup refreshed by a job rather than kept by the recording path: a message's outcome
 * changes after it is created (late callbacks, reconciliation), so the recording path would have
 * to move counts between rows on every status change, inside its hot transaction. The job instead
 * recomputes the recent hours (`lookback`) from `messages`; the hours after the last refresh are
 * computed from `messages` when asked, so answers are never older than the current hour.
 *
 * Definitions are `src/db/stats.ts`'s: outcome delivered / failed by the message's current status
 * (`DELIVERED_STATUSES`, `FAILED_STATUSES`), pending otherwise; delivery time `delivered_at -
 * sent_at` where `delivered_at >= sent_at`, kept as a histogram over `DELIVERY_TIME_BOUNDS_S`, so
 * median and p95 are estimates (linear within a bucket). Hours and days are UTC.
 */
import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely'
import type { Channel, Database } from './database.ts'
import { DELIVERED_STATUSES, FAILED_STATUSES } from './stats.ts'

/** Upper bounds (seconds) of the delivery-time buckets; bucket i holds [bound[i-1], bound[i]), the last is open. */
export const DELIVERY_TIME_BOUNDS_S = [1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400] as const

const HOUR = 3600_000
/** Hours recomputed per transaction when a refresh has a long way to go (first run, long pause). */
const CHUNK_HOURS = 24
/** Any 64-bit number unique to this job: one refresh at a time across replicas. */
const ADVISORY_LOCK = 7_214_001

export type Outcome = 'delivered' | 'failed' | 'pending'

/** One aggregated row (rollup or live). */
export interface HourRow {
  hour: Date
  channel: Channel
  outcome: Outcome
  latency_bucket: number
  messages: number
  whatsapp_read: number
  email_opened: number
  fallbacks_sent: number
  fallbacks_recovered: number
}

export interface ErrorRow { hour: Date, channel: Channel, error_code: string, messages: number }

const list = (values: readonly string[]): RawBuilder<unknown> => sql.join(values.map((v) => sql.lit(v)))

export const floorHour = (d: Date): Date => new Date(Math.floor(d.getTime() / HOUR) * HOUR)

/** The aggregate over messages created in `[from, to)`, optionally of one channel, as rollup rows. */
function aggregateHours (from: Date, to: Date, channel?: Channel): RawBuilder<HourRow> {
  const channelFilter = channel === undefined ? sql`` : sql`and m.channel = ${channel}`
  return sql<HourRow>`
    with fb as (
      -- Few messages have a fallback: find them first, then join (never a hash of all messages).
      select f.original_sid, f.state, s.status as sms_status
      from fallbacks f
      join messages o on o.sid = f.original_sid and o.created_at >= ${from} and o.created_at < ${to}
      left join messages s on s.sid = f.fallback_sid
    )
    select date_trunc('hour', m.created_at) as hour, m.channel,
      case when m.status in (${list(DELIVERED_STATUSES)}) then 'delivered'
           when m.status in (${list(FAILED_STATUSES)}) then 'failed'
           else 'pending' end as outcome,
      case when m.delivered_at >= m.sent_at
           then width_bucket(extract(epoch from m.delivered_at - m.sent_at)::float8, ${sql.lit(`{${DELIVERY_TIME_BOUNDS_S.join(',')}}`)}::float8[])
           else -1 end::smallint as latency_bucket,
      count(*)::int as messages,
      (count(*) filter (where m.channel = 'whatsapp' and m.status = 'read'))::int as whatsapp_read,
      (count(*) filter (where m.status in ('email.delivered', 'email.complained') and m.open_count > 0))::int as email_opened,
      (count(*) filter (where fb.state = 'sent'))::int as fallbacks_sent,
      (count(*) filter (where fb.state = 'sent' and fb.sms_status in (${list(DELIVERED_STATUSES)})))::int as fallbacks_recovered
    from messages m
    left join fb on fb.original_sid = m.sid
    where m.created_at >= ${from} and m.created_at < ${to} ${channelFilter}
    group by 1, 2, 3, 4`
}

function aggregateErrors (from: Date, to: Date, channel?: Channel): RawBuilder<ErrorRow> {
  const channelFilter = channel === undefined ? sql`` : sql`and channel = ${channel}`
  return sql<ErrorRow>`
    select date_trunc('hour', created_at) as hour, channel, coalesce(error_code, '') as error_code, count(*)::int as messages
    from messages
    where created_at >= ${from} and created_at < ${to} and status in (${list(FAILED_STATUSES)}) ${channelFilter}
    group by 1, 2, 3`
}

async function rollHours (trx: Transaction<Database>, from: Date, to: Date): Promise<void> {
  await trx.deleteFrom('stats_hourly').where('hour', '>=', from).where('hour', '<', to).execute()
  await trx.deleteFrom('stats_hourly_errors').where('hour', '>=', from).where('hour', '<', to).execute()
  await sql`insert into stats_hourly (hour, channel, outcome, latency_bucket, messages, whatsapp_read, email_opened, fallbacks_sent, fallbacks_recovered)
    ${aggregateHours(from, to)}`.execute(trx)
  await sql`insert into stats_hourly_errors (hour, channel, error_code, messages) ${aggregateErrors(from, to)}`.execute(trx)
}

/**
 * Recomputes the rollup's recent hours: from `lookbackMs` before now (or from where the last
 * refresh stopped, or from the oldest message on the first run) up to the start of the current
 * hour, a day per transaction. Only one replica refreshes at a time (advisory lock); the others
 * return at once.
 * @returns the hours recomputed (0 when another replica holds the lock).
 */
export async function refreshStatsRollup (db: Kysely<Database>, opts: { lookbackMs: number, now?: Date }): Promise<number> {
  const now = opts.now ?? new Date()
  const to = floorHour(now)
  let hours = 0
  let from: Date | undefined
  for (;;) {
    const done = await db.transaction().execute(async (trx) => {
      const locked = await sql<{ ok: boolean }>`select pg_try_advisory_xact_lock(${ADVISORY_LOCK}) as ok`.execute(trx)
      if (locked.rows[0]?.ok !== true) return true
      if (from === undefined) {
        const state = await trx.selectFrom('stats_rollup_state').select('rolled_until').executeTakeFirst()
        const lookbackStart = floorHour(new Date(now.getTime() - opts.lookbackMs))
        let start: Date | null = state?.rolled_until ?? null
        if (start === null) {
          const oldest = await trx.selectFrom('messages').select(sql<Date | null>`min(created_at)`.as('t')).executeTakeFirst()
          start = oldest?.t == null ? to : floorHour(oldest.t)
        }
        from = start < lookbackStart ? start : lookbackStart
      }
      const chunkEnd = new Date(Math.min(from.getTime() + CHUNK_HOURS * HOUR, to.getTime()))
      if (from < chunkEnd) {
        await rollHours(trx, from, chunkEnd)
        hours += (chunkEnd.getTime() - from.getTime()) / HOUR
      }
      from = chunkEnd
      const finished = chunkEnd.getTime() >= to.getTime()
      // rolled_until only moves forward once every hour before it is in the rollup.
      if (finished) await trx.updateTable('stats_rollup_state').set({ rolled_until: to, refreshed_at: now }).execute()
      return finished
    })
    if (done) return hours
  }
}

export interface TimeseriesRows {
  hours: HourRow[]
  errors: ErrorRow[]
  /** When the rollup was last refreshed; `null`: never (everything was computed from messages). */
  refreshedAt: Date | null
}

/**
 * The hourly rows of `[since, until)` (whole hours): from the rollup before its `rolled_until`,
 * computed from `messages` after it.
 */
export async function readTimeseriesRows (db: Kysely<Database>, since: Date, until: Date, channel?: Channel): Promise<TimeseriesRows> {
  const state = await db.selectFrom('stats_rollup_state').select(['rolled_until', 'refreshed_at']).executeTakeFirst()
  const rolledUntil = state?.rolled_until ?? since
  const split = new Date(Math.min(Math.max(rolledUntil.getTime(), since.getTime()), until.getTime()))
  const rolled = async <T extends 'stats_hourly' | 'stats_hourly_errors'>(table: T) => {
    if (split <= since) return []
    let q = db.selectFrom(table as 'stats_hourly').selectAll().where('hour', '>=', since).where('hour', '<', split)
    if (channel !== undefined) q = q.where('channel', '=', channel)
    return await q.execute()
  }
  const live = split < until
  const [hours, errors, liveHours, liveErrors] = await Promise.all([
    rolled('stats_hourly'),
    rolled('stats_hourly_errors') as unknown as Promise<ErrorRow[]>,
    live ? aggregateHours(split, until, channel).execute(db).then((r) => r.rows) : [],
    live ? aggregateErrors(split, until, channel).execute(db).then((r) => r.rows) : []
  ])
  return { hours: [...hours, ...liveHours] as HourRow[], errors: [...errors, ...liveErrors], refreshedAt: state?.refreshed_at ?? null }
}
