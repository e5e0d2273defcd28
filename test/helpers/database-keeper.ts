/**
 * Owns the test server of one tap run (see database-source.ts). Started detached by
 * database-before.ts with tap's pid as its argument: starts the server, migrates a template
 * database, publishes both in `.tap/test-database-<tap pid>.json`, then waits. It cleans up (drops
 * the template on a shared server, stops the container or the embedded PostgreSQL, removes the
 * file) on SIGTERM (database-after.ts) or as soon as tap is gone, so an interrupted run leaves
 * nothing behind.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { openDatabase } from '../../src/db/connect.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { runStateFile, startTestServer, uniqueName, withDatabase, type RunState } from './database-source.ts'

const tapPid = Number(process.argv[2])
const stateFile = runStateFile(tapPid)
const server = await startTestServer()
const template = uniqueName('tidings_template')

async function admin (sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: server.url })
  await client.connect()
  try { await client.query(sql) } finally { await client.end() }
}

let stopping = false
async function stop (): Promise<void> {
  if (stopping) return
  stopping = true
  rmSync(stateFile, { force: true })
  if (server.source === 'url') await admin(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).catch(() => {})
  await server.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', () => { stop().catch(() => process.exit(1)) })
process.on('SIGINT', () => { stop().catch(() => process.exit(1)) })
setInterval(() => {
  try { process.kill(tapPid, 0) } catch { stop().catch(() => process.exit(1)) }
}, 500)

try {
  await admin(`CREATE DATABASE ${template}`)
  const handle = await openDatabase({ databaseUrl: withDatabase(server.url, template) })
  try { await migrateToLatest(handle.db) } finally { await handle.close() }
  const state: RunState = { source: server.source, description: server.description, url: server.url, template, keeperPid: process.pid }
  mkdirSync(path.dirname(stateFile), { recursive: true })
  // Written whole, then renamed: a test file never reads half a file.
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(state))
  renameSync(`${stateFile}.tmp`, stateFile)
} catch (err) {
  console.error(err)
  await stop()
}
