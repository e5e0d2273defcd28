/**
 * `GET /health`: liveness plus a 1 s `SELECT 1` against the database. No auth.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { sql, type Kysely } from 'kysely'
import type { Database } from '../db/database.ts'
import { ErrorBody } from './schemas.ts'

/** How long the database probe may take, in ms. */
export const HEALTH_DB_TIMEOUT_MS = 1000

const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  database: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  version: Type.String(),
  uptime_s: Type.Number({ description: 'Seconds since the process started' })
})

async function databaseAnswers (db: Kysely<Database>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), HEALTH_DB_TIMEOUT_MS) })
  try {
    return await Promise.race([sql`select 1`.execute(db).then(() => true, () => false), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export const healthRoutes: FastifyPluginAsyncTypebox<{ db: Kysely<Database>, version: string }> = async (app, { db, version }) => {
  app.get('/health', {
    // 503 is a Health body (database down), or an Error body when load shedding answered first.
    schema: { summary: 'Liveness and database reachability', response: { 200: Health, 503: Type.Union([Health, ErrorBody]) } }
  }, async (_request, reply) => {
    const ok = await databaseAnswers(db)
    const body = {
      status: ok ? 'ok' as const : 'unavailable' as const,
      database: ok ? 'ok' as const : 'unavailable' as const,
      version,
      uptime_s: Math.round(process.uptime())
    }
    if (!ok) reply.header('retry-after', '5')
    return await reply.code(ok ? 200 : 503).send(body)
  })
}
