/**
 * Subscription signing secrets: generated as Standard Webhooks secrets (`whsec_` + base64 of 32
 * random bytes) and kept encrypted at rest with AES-256-GCM under a key from configuration
 * (`WEBHOOK_SECRETS_KEY`). The ciphertext names the key that made it, so keys rotate: list the new
 * key first and keep the old one until every secret was re-issued (`rotate-secret`). The
 * subscription id is the GCM additional data, so a ciphertext copied onto another row fails.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import type { SecretsKey } from '../config/webhooks-out.ts'

/** A new signing secret, `whsec_` + base64 of 32 random bytes (https://www.standardwebhooks.com). */
export function generateSigningSecret (): string {
  return `whsec_${randomBytes(32).toString('base64')}`
}

/**
 * Encrypts `secret` for subscription `subscriptionId` with the first key.
 * @returns `v1.<key id>.<iv>.<ciphertext+tag>` (base64url parts).
 */
export function encryptSecret (keys: readonly SecretsKey[], subscriptionId: string, secret: string): string {
  const { id, key } = keys[0]
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(subscriptionId))
  const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final(), cipher.getAuthTag()])
  return `v1.${id}.${iv.toString('base64url')}.${body.toString('base64url')}`
}

/**
 * Decrypts what `encryptSecret` produced.
 * @throws {Error} when the key that encrypted it is not configured any more, or the text was altered
 *   (the message never contains the secret).
 */
export function decryptSecret (keys: readonly SecretsKey[], subscriptionId: string, stored: string): string {
  const [version, keyId, iv, body] = stored.split('.')
  const key = keys.find((k) => k.id === keyId)
  if (version !== 'v1' || key === undefined || iv === undefined || body === undefined) {
    throw new Error(`signing secret of subscription ${subscriptionId} was encrypted with key ${keyId ?? '?'}, which WEBHOOK_SECRETS_KEY no longer lists`)
  }
  const data = Buffer.from(body, 'base64url')
  const decipher = createDecipheriv('aes-256-gcm', key.key, Buffer.from(iv, 'base64url'))
  decipher.setAAD(Buffer.from(subscriptionId))
  decipher.setAuthTag(data.subarray(data.length - 16))
  return Buffer.concat([decipher.update(data.subarray(0, data.length - 16)), decipher.final()]).toString('utf8')
}
