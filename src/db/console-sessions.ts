/**
 * Console sessions (`console_sessions`): a browser exchanges an API key once for a random token
 * sent back as an HttpOnly cookie. Only the token's SHA-256 is stored, with the name and SHA-256
 * of the key it was made from, so a session ends when its key is rotated out of `API_KEYS`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { ApiKey } from '../config/config.ts'
import type { Database } from './database.ts'

const sha256 = (value: string): Buffer => createHash('sha256').update(value).digest()

/**
 * Creates a session for `key` that expires after `ttlMs`, and deletes expired sessions.
 * @returns the token for the cookie (32 random bytes, base64url) and its expiry.
 */
export async function createSession (db: Kysely<Database>, key: ApiKey, ttlMs: number): Promise<{ token: string, expiresAt: Date }> {
  const token = randomBytes(32).toString('base64url')
  const expiresAt = new Date(Date.now() + ttlMs)
  await db.deleteFrom('console_sessions').where('expires_at', '<', new Date()).execute()
  await db.insertInto('console_sessions')
    .values({ token_hash: sha256(token), api_key_name: key.name, api_key_hash: key.hash, expires_at: expiresAt })
    .execute()
  return { token, expiresAt }
}

/**
 * The session of `token` when it exists, has not expired and its key is still configured.
 * @returns the key's name and the session's expiry, or `undefined`.
 */
export async function findSession (db: Kysely<Database>, keys: readonly ApiKey[], token: string): Promise<{ apiKeyName: string, expiresAt: Date } | undefined> {
  if (token.length > 100) return undefined
  const row = await db.selectFrom('console_sessions')
    .select(['api_key_name', 'api_key_hash', 'expires_at'])
    .where('token_hash', '=', sha256(token))
    .where('expires_at', '>', new Date())
    .executeTakeFirst()
  if (row === undefined) return undefined
  const current = keys.find((k) => k.name === row.api_key_name)
  if (current === undefined || !timingSafeEqual(current.hash, row.api_key_hash)) return undefined
  return { apiKeyName: row.api_key_name, expiresAt: row.expires_at }
}

/** Deletes the session of `token` (logout); no error when there is none. */
export async function deleteSession (db: Kysely<Database>, token: string): Promise<void> {
  await db.deleteFrom('console_sessions').where('token_hash', '=', sha256(token)).execute()
}
