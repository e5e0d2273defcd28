import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/config.ts'
import { testEnv } from './helpers/app.ts'

t.test('database fault and isolation settings: defaults', async (t) => {
  const c = loadConfig(testEnv({ DATABASE_POOL_MAX: '10' }))
  t.same(c.resilience, { databaseStartupTimeoutMs: 120_000, databaseReadPoolMax: 4, statsMaxConcurrent: 2, statsMaxWaitMs: 2000, metricsDatabaseCacheMs: 5000 })
  t.equal(loadConfig(testEnv({ DATABASE_POOL_MAX: '1' })).resilience.databaseReadPoolMax, 2, 'at least 2 read connections')
  t.equal(loadConfig(testEnv({ DATABASE_STARTUP_TIMEOUT: '0' })).resilience.databaseStartupTimeoutMs, 0, '0 waits forever')
})

function problemsOf (env: Record<string, string>): string[] {
  try {
    loadConfig(testEnv(env))
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

t.test('database fault and isolation settings: a bad value names its variable', async (t) => {
  t.match(problemsOf({ DATABASE_STARTUP_TIMEOUT: 'soon' }), [/^DATABASE_STARTUP_TIMEOUT must be a duration/])
  t.match(problemsOf({ METRICS_DATABASE_CACHE: '0' }), [/^METRICS_DATABASE_CACHE must be between 1s and 5m/])
  t.match(problemsOf({ DATABASE_READ_POOL_MAX: '0' }), [/^DATABASE_READ_POOL_MAX/])
})
