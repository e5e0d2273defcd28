/**
 * Fewer round trips to PostgreSQL for the statements Kysely sends one at a time.
 *
 * Kysely's pg driver sends every statement as its own `client.query(text, values)` and waits for
 * its answer, so a transaction of three statements costs five round trips (BEGIN, three statements,
 * COMMIT). On the development machine a round trip to PostgreSQL on the same host costs the server
 * process more CPU than the work it carries (docs/performance.md: socket writes were the largest
 * item of the recording path's profile). `marksStatements` patches each pool client so that:
 * - a statement marked `preparedStatement(name)` runs as a named prepared statement (parsed and
 *   planned once per connection);
 * - `begin`, and a statement marked `sentWithNext()` inside a transaction, are held and sent in
 *   front of the transaction's next statement, in the same write and under the same Sync
 *   (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-PIPELINING): the
 *   server runs them in order and skips the rest if one fails. A transaction of three statements
 *   whose last one is marked then costs three round trips.
 *
 * What a held statement changes for its caller: its promise resolves at once with no rows and no
 * row count; if it fails, the next statement of the transaction rejects with its error (and,
 * for COMMIT, nothing is committed). Only mark statements whose result is not needed and that
 * return no rows. A transaction that ends before anything reached the server (BEGIN still held)
 * sends nothing at all.
 */
import { createRequire } from 'node:module'
import { sql, type RawBuilder } from 'kysely'
import pg from 'pg'

// pg's own conversion of parameter values (Date, arrays, Buffer, objects) to the wire format.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (value: unknown) => unknown }

/** Start of SQL that should run as a named prepared statement: see `preparedStatement`. */
const PREPARED_MARK = '/* prepared:'
/** Start of SQL that may travel with the transaction's next statement: see `sentWithNext`. */
const WITH_NEXT_MARK = '/* with next */'

/**
 * Marks a fixed SQL text to run as a named prepared statement on every pool connection: put the
 * result first in a Kysely `sql` template (`sql\`${preparedStatement('upsert_messages')} insert …\``).
 * PostgreSQL then parses and plans it once per connection instead of on every call (for the
 * recording statements that was about a fifth of their database time, docs/performance.md).
 *
 * Only for statements whose text never changes and whose result columns are listed (not `*`): a
 * prepared `select *` fails with "cached plan must not change result type" on connections that
 * prepared it before a migration added a column. Behind PgBouncer in transaction mode, set its
 * `max_prepared_statements`.
 * @param name - unique per statement text: `[a-z_]+`.
 * @returns the raw SQL comment that carries the name.
 * @throws Error when `name` is not `[a-z_]+`.
 */
export function preparedStatement (name: string): RawBuilder<unknown> {
  if (!/^[a-z_]+$/.test(name)) throw new Error(`prepared statement name must be [a-z_]+: ${name}`)
  return sql.raw(`${PREPARED_MARK}${name} */`)
}

/**
 * Marks a statement to be sent with the transaction's next statement (often COMMIT) instead of on
 * its own: put the result first in a Kysely `sql` template. Inside a transaction its `execute()`
 * resolves at once with no rows and no row count, and an error it raises rejects the next
 * statement instead (see the module comment). Outside a transaction it runs as usual. Only for
 * statements that return no rows and whose result the caller does not read.
 * @returns the raw SQL comment that marks it.
 */
export function sentWithNext (): RawBuilder<unknown> {
  return sql.raw(WITH_NEXT_MARK)
}

/** A statement held back to go with the next one. */
interface Held { text: string, values: readonly unknown[] }

type QueryCallback = (err: Error | null, result: pg.QueryResult | pg.QueryResult[]) => void

/**
 * A statement sent behind held ones, as one extended-protocol pipeline ending in a single Sync:
 * Parse/Bind/Execute for each held statement, then the statement itself (Parse if not yet
 * prepared, Bind, Describe, Execute, Sync). Its result is the last of the results.
 *
 * pg's client marks `activeQuery.name` as prepared on every ParseComplete, and the held statements'
 * ParseCompletes arrive first, so the name is hidden until they have completed; if one of them
 * fails, the statement was never parsed and is unmarked, so the next use parses it again.
 */
class AfterHeld extends pg.Query {
  constructor (held: readonly Held[], config: pg.QueryConfig, callback: QueryCallback) {
    super({ ...config, queryMode: 'extended', callback } as unknown as pg.QueryConfig)
    const name = (this as unknown as { name?: string }).name
    let heldLeft = held.length
    let submitting = false
    Object.defineProperty(this, 'name', { get: () => submitting || heldLeft === 0 ? name : undefined, configurable: true })
    const self = this as unknown as {
      submit: (connection: PgConnection) => Error | null
      handleCommandComplete: (msg: unknown, connection: PgConnection) => void
      handleError: (err: Error, connection: PgConnection) => void
    }
    const submit = self.submit.bind(this)
    const commandComplete = self.handleCommandComplete.bind(this)
    const handleError = self.handleError.bind(this)
    self.submit = (connection) => {
      let values: unknown[][]
      try {
        values = held.map((h) => h.values.map((v) => prepareValue(v)))
      } catch (err) {
        return err as Error // pg answers the query with it; nothing was written
      }
      connection.stream.cork()
      submitting = true
      try {
        held.forEach((h, i) => {
          connection.parse({ text: h.text, name: '', types: [] })
          connection.bind({ portal: '', statement: '', values: values[i] })
          connection.execute({ portal: '', rows: 0 })
        })
        return submit(connection)
      } finally {
        submitting = false
        connection.stream.uncork()
      }
    }
    self.handleCommandComplete = (msg, connection) => {
      if (heldLeft > 0) heldLeft--
      commandComplete(msg, connection)
    }
    self.handleError = (err, connection) => {
      // A held statement failed: the server skipped the rest, this statement's Parse included.
      if (heldLeft > 0 && name !== undefined) delete connection.submittedNamedStatements[name]
      handleError(err, connection)
    }
  }
}

/** The parts of pg's (untyped) Connection used here. */
interface PgConnection {
  stream: { cork: () => void, uncork: () => void }
  submittedNamedStatements: Record<string, string>
  parse: (msg: { text: string, name: string, types: unknown[] }) => void
  bind: (msg: { portal: string, statement: string, values: unknown[] }) => void
  execute: (msg: { portal: string, rows: number }) => void
}

function emptyResult (command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, rows: [], fields: [] }
}

/**
 * Patches `client.query` for the marks above (see the module comment). Kysely calls
 * `client.query(text, values)`; any other call shape passes through untouched.
 */
export function marksStatements (client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  let held: Held[] = []
  let inTransaction = false
  client.query = ((text: unknown, ...rest: unknown[]) => {
    if (typeof text !== 'string' || rest.length > 1 || typeof rest[0] === 'function') return query(text, ...rest)
    const values = (rest[0] ?? []) as unknown[]
    if (text === 'begin' && !inTransaction) {
      inTransaction = true
      held = [{ text, values }]
      return Promise.resolve(emptyResult('BEGIN'))
    }
    if (text === 'commit' || text === 'rollback') {
      inTransaction = false
      // BEGIN never reached the server: there is nothing to end (a rollback also drops held writes).
      const unsent = held.length > 0 && held[0].text === 'begin' && (text === 'rollback' || held.length === 1)
      if (unsent || text === 'rollback') {
        held = []
        if (unsent) return Promise.resolve(emptyResult(text.toUpperCase()))
      }
    } else if (inTransaction && text.startsWith(WITH_NEXT_MARK)) {
      held.push({ text, values })
      return Promise.resolve(emptyResult(''))
    }
    const config: pg.QueryConfig = text.startsWith(PREPARED_MARK)
      ? { name: 'tidings_' + text.slice(PREPARED_MARK.length, text.indexOf(' */')), text, values }
      : { text, values }
    if (held.length === 0) return config.name === undefined ? query(text, values) : query(config)
    const before = held
    held = []
    const afterHeld = async (first: readonly Held[], last: pg.QueryConfig): Promise<pg.QueryResult> => await new Promise((resolve, reject) => {
      query(new AfterHeld(first, last, (err, result) => {
        if (err !== null) reject(err)
        else resolve(Array.isArray(result) ? result[result.length - 1] : result)
      }))
    })
    // Several statements in one text (no parameters) need the simple protocol, which cannot share
    // a pipeline: the held statements go first, on their own.
    if (values.length === 0 && text.includes(';')) {
      const last = before[before.length - 1]
      return afterHeld(before.slice(0, -1), { text: last.text, values: [...last.values] }).then(() => query(text, values))
    }
    return afterHeld(before, config)
  }) as typeof client.query
}
