/**
 * The safe horizon of an identity column: the highest id below which every id is final (its row
 * committed, or never will be). Shared by the live stream (`./event-hub.ts`, over `message_events`)
 * and the outbound-webhook dispatcher (`src/delivery/dispatcher.ts`, over `message_events` and
 * `webhook_outbox`).
 *
 * Why: ids are taken from a sequence when a row is inserted, but transactions commit in any order,
 * so a reader that simply asks for `id > last` can pass over an id whose transaction commits later.
 * `advance` reads the sequence's last value L, then takes a fresh transaction id X of its own
 * (`pg_current_xact_id()`). Every transaction that took an id <= L took its xid earlier (with its
 * first write before the insert that drew the id: the message upsert for `message_events`, the
 * changed row for the trigger-written `webhook_outbox`), so its xid is < X; once the oldest running
 * xid is >= X (`pg_snapshot_xmin(pg_current_snapshot()) >= X`), every id <= L is committed or never
 * will be. (A snapshot's xmax is not enough: it is "latest completed + 1", and a running
 * transaction can hold a higher xid.)
 *
 * The rule needs the xid before the id: a table whose only write is the insert that draws the id
 * (so the xid comes after `nextval`) must not be read this way; give it a trigger-written log.
 * `advance` must run outside any transaction of the caller's (each call takes a fresh xid).
 */
import { sql, type Kysely } from 'kysely'

export class Horizon {
  readonly #table: string
  readonly #column: string
  /** Candidate horizons waiting for the transactions of their snapshot to end. */
  #pending: Array<{ lastId: bigint, xid: bigint }> = []

  /**
   * @param table - a table with an identity (or serial) column.
   * @param column - that column (default `id`).
   */
  constructor (table: string, column = 'id') {
    this.#table = table
    this.#column = column
  }

  /** True while a candidate waits for older transactions to end (poll again soon). */
  get waiting (): boolean { return this.#pending.length > 0 }

  /** Forgets every candidate (a reader that stopped reading starts again from a fresh one). */
  reset (): void { this.#pending = [] }

  /**
   * Records a candidate horizon and returns the highest one now safe, or null when none is yet.
   * Two queries, neither in a transaction of the caller's.
   */
  async advance (db: Kysely<any>): Promise<bigint | null> {
    // First the sequence, then our own xid: see the module comment for why the order matters.
    const seq = await sql<{ last: string | null }>`
      select pg_sequence_last_value(pg_get_serial_sequence(${this.#table}, ${this.#column})::regclass)::text as last`.execute(db)
    const now = await sql<{ xid: string, xmin: string }>`
      select pg_current_xact_id()::text as xid, pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(db)
    const lastId = BigInt(seq.rows[0]?.last ?? '0')
    const xid = BigInt(now.rows[0].xid)
    const xmin = BigInt(now.rows[0].xmin)
    const newest = this.#pending.at(-1)
    if (newest === undefined || newest.lastId !== lastId) this.#pending.push({ lastId, xid })
    let safe: bigint | null = null
    while (this.#pending.length > 0 && this.#pending[0].xid <= xmin) {
      safe = this.#pending.shift()?.lastId ?? safe
    }
    return safe
  }
}
