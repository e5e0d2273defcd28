import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kysely } from 'kysely'
import { FileMigrationProvider, Migrator, type MigrationResult } from 'kysely/migration'

/** The repository's `migrations/` folder. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url))

/**
 * Runs every pending migration in `migrations/` (Kysely takes a lock, so concurrent replicas
 * starting together migrate once).
 * @returns the migrations that ran, in order.
 * @throws the migration's error, after Kysely rolled that migration back.
 */
export async function migrateToLatest (db: Kysely<any>): Promise<MigrationResult[]> {
  const migrator = new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR })
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error !== undefined) throw error
  return results ?? []
}
