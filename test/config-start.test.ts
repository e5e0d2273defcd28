/**
 * Configuration that starts (issue 10): every value the schema accepts starts the service, and
 * `.env.example` runs once its placeholder credentials are replaced, never before.
 */
import { readFileSync } from 'node:fs'
import { parseEnv } from 'node:util'
import t from 'tap'
import { buildApp } from '../src/app.ts'
import { ConfigError, EnvSchema, loadConfig } from '../src/config/config.ts'
import { testEnv } from './helpers/app.ts'
import { createTestDatabase } from './helpers/database.ts'

/** Every bounded number of the schema at its minimum or its maximum. */
function extremes (which: 'minimum' | 'maximum'): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, schema] of Object.entries(EnvSchema.properties) as Array<[string, { type?: string, minimum?: number, maximum?: number }]>) {
    if (schema.type !== 'integer' && schema.type !== 'number') continue
    const value = schema[which]
    if (value !== undefined) env[name] = String(value)
  }
  return env
}

t.test('every number in the schema is bounded (so its extremes can be tried below)', async (t) => {
  for (const [name, schema] of Object.entries(EnvSchema.properties) as Array<[string, { type?: string, maximum?: number }]>) {
    if (schema.type === 'integer' || schema.type === 'number') t.not(schema.maximum, undefined, `${name} has a maximum`)
  }
})

for (const which of ['maximum', 'minimum'] as const) {
  t.test(`the service starts (job queue and schedules included) with every bound at its ${which}`, async (t) => {
    const { db, url } = await createTestDatabase(t)
    const env = testEnv({
      ...extremes(which),
      PORT: '3000',
      // Durations at their documented bounds.
      ...(which === 'maximum'
        ? { RECONCILE_INTERVAL: '1d', RECONCILE_AFTER: '30d', RECONCILE_MAX_AGE: '365d', RETENTION_INTERVAL: '7d', SCHEDULE_CHECK_INTERVAL: '45s' }
        : { RECONCILE_INTERVAL: '1m', RECONCILE_AFTER: '1s', RECONCILE_MAX_AGE: '1m', RETENTION_INTERVAL: '1m', SCHEDULE_CHECK_INTERVAL: '1s' }),
      MAX_HEAP_USED_BYTES: undefined
    })
    const config = loadConfig(env)
    const app = await buildApp(config, { db, jobQueue: { connectionString: url } })
    t.teardown(async () => { await app.close() })
    await app.ready()
    t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  })
}

t.test('placeholders from .env.example are refused with a message naming each variable', async (t) => {
  const example = parseEnv(readFileSync(new URL('../.env.example', import.meta.url), 'utf8'))
  const placeholders = {
    TWILIO_ACCOUNT_SID: 'ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
    TWILIO_AUTH_TOKEN: 'your_auth_token',
    API_KEYS: 'billing:k_change_me_0123456789abcdef',
    METRICS_TOKEN: 'change_me_metrics_token'
  }
  const err = (() => { try { loadConfig({ ...example, ...placeholders }) } catch (e) { return e } })()
  t.ok(err instanceof ConfigError)
  for (const name of Object.keys(placeholders)) {
    t.ok((err as ConfigError).problems.some((p) => p.startsWith(name) && p.includes('placeholder')), name)
  }
  t.notMatch((err as Error).message, /your_auth_token|k_change_me/, 'the values themselves are not echoed')
})

t.test('.env.example starts once only the real credentials are filled in, and signs locally', async (t) => {
  const example = parseEnv(readFileSync(new URL('../.env.example', import.meta.url), 'utf8'))
  t.throws(() => loadConfig({ ...example }), ConfigError, 'not as it is: its credentials are placeholders')
  const config = loadConfig({
    ...example,
    TWILIO_ACCOUNT_SID: 'AC' + '0123456789abcdef'.repeat(2),
    TWILIO_AUTH_TOKEN: '0123456789abcdef0123456789abcdef',
    API_KEYS: 'billing:k_live_2f9c1e7a4b6d8e0f'
  })
  t.equal(config.publicBaseUrl, `http://localhost:${config.port}`, 'no placeholder PUBLIC_BASE_URL: local callbacks verify')
})
