/**
 * The contract, served: `GET /openapi.yaml` (the file as committed) and a browsable `/docs`
 * (Swagger UI over the same file). No auth: the contract is not a secret.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url))

export async function docsRoutes (app: FastifyInstance): Promise<void> {
  const spec = readFileSync(OPENAPI_PATH, 'utf8')
  app.get('/openapi.yaml', async (_request, reply) => await reply.type('application/yaml; charset=utf-8').send(spec))
  await app.register(swagger, { mode: 'static', specification: { path: OPENAPI_PATH, baseDir: '' } })
  await app.register(swaggerUi, { routePrefix: '/docs' })
}
