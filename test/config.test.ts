import t from 'tap'
import { ConfigError, loadConfig } from '../src/config/config.ts'
import { ACCOUNT_SID, testEnv } from './helpers/app.ts'

t.test('loadConfig applies defaults', async (t) => {
  const config = loadConfig({ TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: 'tok' })
  t.equal(config.port, 3000)
  t.equal(config.host, '0.0.0.0')
  t.equal(config.logLevel, 'info')
  t.equal(config.databaseUrl, undefined, 'no DATABASE_URL: the embedded PostgreSQL')
  t.equal(config.dataDir, './data')
  t.equal(config.publicBaseUrl, 'http://localhost:3000')
  t.equal(config.migrateOnStart, true)
  t.same(config.apiKeys, [])
})

t.test('loadConfig refuses to start without a Twilio token: signature checks cannot be off', async (t) => {
  t.throws(() => loadConfig({}), { name: 'ConfigError', message: /no Twilio auth token configured/ })
})

t.test('loadConfig lists every invalid variable in one error', async (t) => {
  try {
    loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud', DATABASE_URL: 'mysql://x', PUBLIC_BASE_URL: 'hooks.example.com', API_KEYS: 'nocolon', TWILIO_AUTH_TOKENS: 'XX123:abc' })
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    const problems = (err as ConfigError).problems.join('\n')
    for (const name of ['PORT', 'LOG_LEVEL', 'DATABASE_URL', 'PUBLIC_BASE_URL']) t.match(problems, name)
    t.equal((err as ConfigError).problems.length >= 4, true)
  }
  try {
    loadConfig({ API_KEYS: 'nocolon,short:abc', TWILIO_AUTH_TOKENS: 'XX123:abc,' + ACCOUNT_SID + ':' })
    t.fail('should throw')
  } catch (err) {
    const problems = (err as ConfigError).problems
    t.match(problems.join('\n'), /API_KEYS entry 1/)
    t.match(problems.join('\n'), /API_KEYS entry 2 \(short\) needs a key of at least 16/)
    t.match(problems.join('\n'), /TWILIO_AUTH_TOKENS entry 1 must start with an AccountSid/)
    t.match(problems.join('\n'), /TWILIO_AUTH_TOKENS entry 2 .* has no token/)
    t.notMatch(problems.join('\n'), /abc/, 'no secret is echoed')
  }
})

t.test('loadConfig groups tokens by account, keeping rotation order, and hashes API keys', async (t) => {
  const config = loadConfig(testEnv({ TWILIO_AUTH_TOKENS: `${ACCOUNT_SID}:new_token,AC${'b'.repeat(32)}:sub` }))
  t.same(config.twilioAuthTokens.get(ACCOUNT_SID), ['test_auth_token_primary_0001', 'new_token'])
  t.same(config.twilioAuthTokens.get(`AC${'b'.repeat(32)}`), ['sub'])
  t.same(config.apiKeys.map((k) => k.name), ['billing', 'crm'])
  t.notMatch(JSON.stringify(config.apiKeys), /k_test/, 'keys are not kept in clear')
  t.equal(loadConfig(testEnv({ PUBLIC_BASE_URL: 'https://hooks.example.com/tidings/' })).publicBaseUrl, 'https://hooks.example.com/tidings')
})
