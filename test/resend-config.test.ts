import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/config.ts'
import { testEnv } from './helpers/app.ts'
import { RESEND_SECOND_SECRET, RESEND_SECRET } from './helpers/resend.ts'

const problemsOf = (env: Record<string, string | undefined>): string[] => {
  try {
    loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: undefined, ...env }))
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

t.test('config: the Resend webhook is on iff RESEND_WEBHOOK_SECRET is set', async (t) => {
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: undefined })).resendWebhookSecrets, [], 'off by default')
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: '' })).resendWebhookSecrets, [], 'an empty value is unset')
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: RESEND_SECRET })).resendWebhookSecrets, [RESEND_SECRET])
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: `${RESEND_SECRET},${RESEND_SECOND_SECRET}` })).resendWebhookSecrets, [RESEND_SECRET, RESEND_SECOND_SECRET], 'comma-separated')
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: ` ${RESEND_SECRET}  ${RESEND_SECOND_SECRET} ` })).resendWebhookSecrets, [RESEND_SECRET, RESEND_SECOND_SECRET], 'space-separated')
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: RESEND_SECRET, RESEND_ENABLED: 'false' })).resendWebhookSecrets, [], 'RESEND_ENABLED=false turns it off')
  t.same(loadConfig(testEnv({ RESEND_WEBHOOK_SECRET: RESEND_SECRET, RESEND_ENABLED: 'true' })).resendWebhookSecrets, [RESEND_SECRET])
})

t.test('config: start-up fails when the Resend webhook is enabled without a secret', async (t) => {
  const problems = problemsOf({ RESEND_ENABLED: 'true' })
  t.equal(problems.length, 1)
  t.match(problems[0], /RESEND_ENABLED is true but RESEND_WEBHOOK_SECRET is not set/)
  t.match(problemsOf({ RESEND_ENABLED: 'true', RESEND_WEBHOOK_SECRET: ' , ' })[0], /RESEND_WEBHOOK_SECRET is not set/)
})

t.test('config: a malformed secret is named by position, never quoted', async (t) => {
  const leaked = 're_live_api_key_123456'
  const problems = problemsOf({ RESEND_WEBHOOK_SECRET: `${RESEND_SECRET},${leaked},whsec_abc` })
  t.equal(problems.length, 2)
  t.match(problems[0], /RESEND_WEBHOOK_SECRET entry 2 is not a Resend signing secret/)
  t.match(problems[1], /entry 3/, 'bad base64 padding')
  t.notMatch(problems.join('\n'), leaked)
  t.match(problemsOf({ RESEND_ENABLED: 'maybe' })[0], /RESEND_ENABLED/)
})
