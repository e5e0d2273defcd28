import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/config.ts'
import { formatDuration, parseDuration } from '../src/config/duration.ts'
import { testEnv } from './helpers/app.ts'

t.test('parseDuration reads 90s, 30m, 2h, 3d and plain seconds', async (t) => {
  t.equal(parseDuration('90s'), 90_000)
  t.equal(parseDuration('30m'), 1_800_000)
  t.equal(parseDuration('2h'), 7_200_000)
  t.equal(parseDuration('3d'), 259_200_000)
  t.equal(parseDuration('300'), 300_000, 'a plain number is seconds')
  t.equal(parseDuration(' 5M '), 300_000)
  for (const bad of ['', 'm', '5 minutes', '1.5h', '-5m', '2w', '10ms', 'abc']) t.equal(parseDuration(bad), undefined, bad)
  t.equal(formatDuration(300_000), '5m')
  t.equal(formatDuration(90_000), '90s')
})

t.test('loadConfig: reconciliation and retention defaults', async (t) => {
  const config = loadConfig(testEnv())
  t.same(config.reconcile, {
    intervalMs: 300_000,
    afterMs: 1_800_000,
    batch: 100,
    maxAgeMs: 259_200_000,
    resendApiKey: undefined,
    resendApiBaseUrl: 'https://api.resend.com',
    resendApiBaseUrlOverridden: false
  })
  t.same(config.retention, { days: 90, intervalMs: 3_600_000 })
  t.equal(config.scheduleCheckIntervalS, 30)
  t.equal(loadConfig(testEnv({ RECONCILE_INTERVAL: '0', RETENTION_DAYS: '0' })).reconcile.intervalMs, 0, '0 turns the schedule off')
  t.equal(loadConfig(testEnv({ RESEND_API_BASE_URL: 'http://127.0.0.1:4011/' })).reconcile.resendApiBaseUrl, 'http://127.0.0.1:4011')
})

t.test('loadConfig: an invalid interval is a ConfigError naming the variable', async (t) => {
  try {
    loadConfig(testEnv({ RECONCILE_INTERVAL: 'often', RECONCILE_AFTER: '5 minutes', RECONCILE_MAX_AGE: '3w', RETENTION_INTERVAL: '-1h', SCHEDULE_CHECK_INTERVAL: '2m' }))
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    const problems = (err as ConfigError).problems.join('\n')
    for (const name of ['RECONCILE_INTERVAL', 'RECONCILE_AFTER', 'RECONCILE_MAX_AGE', 'RETENTION_INTERVAL']) {
      t.match(problems, new RegExp(`${name} must be a duration such as 90s, 30m, 2h or 3d`), name)
    }
    t.match(problems, /SCHEDULE_CHECK_INTERVAL must be between 1s and 45s/)
  }
  t.throws(() => loadConfig(testEnv({ RECONCILE_INTERVAL: '30s' })), { message: /RECONCILE_INTERVAL must be between 1m and 1d \(or 0 to turn it off\)/ }, 'pg-boss schedules have minute resolution')
  t.throws(() => loadConfig(testEnv({ RECONCILE_AFTER: '2d', RECONCILE_MAX_AGE: '1d' })), { message: /RECONCILE_MAX_AGE must be longer than RECONCILE_AFTER/ })
  t.throws(() => loadConfig(testEnv({ RECONCILE_BATCH: '0', RETENTION_DAYS: 'ninety' })), { message: /RECONCILE_BATCH.*\n.*RETENTION_DAYS|RETENTION_DAYS.*\n.*RECONCILE_BATCH/ })
})
