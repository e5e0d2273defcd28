/**
 * `GET /health`: liveness plus a 1 s `SELECT 1` against the database. No auth. When the database
 * does not answer, the 503 body says why (`reason`, in words that name no host or credential) and
 * since when (`database_unavailable_since`, the first failed probe of this outage).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { sql, type Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { unavailableReason } from '../db/wait-for-database.ts'
import { ErrorBody } from './schemas.ts'

/** How long the database probe may take, in ms. */
export const HEALTH_DB_TIMEOUT_MS = 1000

const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  database: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  version: Type.String(),
  uptime_s: Type.Number({ description: 'Seconds since the process started' }),
  reason: Type.Optional(Type.String({ description: 'Why the database is unavailable, e.g. "connection refused", "no answer within 1000 ms"' })),
  database_unavailable_since: Type.Optional(Type.String({ format: 'date-time', description: 'First failed probe of this outage' }))
})

/** `undefined` when the database answered, else why not. */
async function databaseProblem (db: Kysely<Database>): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<string>((resolve) => { timer = setTimeout(() => resolve(`no answer within ${HEALTH_DB_TIMEOUT_MS} ms`), HEALTH_DB_TIMEOUT_MS) })
  try {
    return await Promise.race([sql`select 1`.execute(db).then(() => undefined, (err: unknown) => unavailableReason(err)), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export const healthRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database>, version: string }> = async (app, { db, version }) => {
  let downSince: Date | undefined
  app.get('/health', {
    // 503 is a Health body (database down), or an Error body when load shedding answered first.
    schema: { summary: 'Liveness and database reachability', response: { 200: Health, 503: Type.Union([Health, ErrorBody]) } }
  }, async (_request, reply) => {
    const problem = await databaseProblem(db)
    const ok = problem === undefined
    if (ok) downSince = undefined
    else downSince ??= new Date()
    const body = {
      status: ok ? 'ok' as const : 'unavailable' as const,
      database: ok ? 'ok' as const : 'unavailable' as const,
      version,
      uptime_s: Math.round(process.uptime()),
      ...(ok ? {} : { reason: problem, database_unavailable_since: downSince?.toISOString() })
    }
    if (!ok) reply.header('retry-after', '5')
    return await reply.code(ok ? 200 : 503).send(body)
  })
}
