import { Validator } from '@seriousme/openapi-schema-validator'
import t from 'tap'
import { OPENAPI_PATH } from '../src/routes/docs.ts'
import { buildTestApp } from './helpers/app.ts'
import { UNDOCUMENTED, checkResponse, spec, toOpenApiPath } from './helpers/contract.ts'

t.test('openapi.yaml and the Fastify routes describe the same API', async (t) => {
  const { app } = await buildTestApp(t)
  await app.ready()
  const served = new Set(app.routeList
    .filter((r) => !UNDOCUMENTED.some((re) => re.test(r.url)))
    .map((r) => `${r.method} ${toOpenApiPath(r.url)}`))
  const documented = new Set(Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)))
  t.same([...served].filter((r) => !documented.has(r)), [], 'every route is documented')
  t.same([...documented].filter((r) => !served.has(r)), [], 'every documented route exists')
  t.ok(served.size >= 6)
})

t.test('the response check catches a response outside the contract', async (t) => {
  t.equal(checkResponse('GET', '/health', 200, 'application/json', JSON.stringify({ status: 'ok', database: 'ok', version: '1', uptime_s: 1 })), undefined)
  t.match(checkResponse('GET', '/health', 200, 'application/json', JSON.stringify({ status: 'fine' })), /does not match/)
  t.match(checkResponse('GET', '/health', 418, 'application/json', '{}'), /does not document/)
  t.match(checkResponse('GET', '/v1/nowhere', 200, 'application/json', '{}'), /not in openapi.yaml/)
  t.match(checkResponse('GET', '/v1/messages/:sid', 404, 'application/json', JSON.stringify({ code: 'made_up', message: 'x' })), /does not match/)
})

t.test('GET /openapi.yaml and /docs serve the contract', async (t) => {
  const { app } = await buildTestApp(t)
  const yaml = await app.inject({ method: 'GET', url: '/openapi.yaml' })
  t.equal(yaml.statusCode, 200)
  t.match(yaml.headers['content-type'], /yaml/)
  t.match(yaml.body, /^openapi: 3\.1/)
  const docs = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(docs.statusCode, 200)
  t.match(docs.body, /swagger/i)
})

t.test('openapi.yaml is a valid OpenAPI 3.1 document', async (t) => {
  const validator = new Validator()
  const result = await validator.validate(OPENAPI_PATH)
  t.ok(result.valid, JSON.stringify(result.errors ?? [], null, 2).slice(0, 2000))
  t.equal(validator.version, '3.1')
})
