/**
 * Checks real responses against `openapi.yaml`. `buildTestApp` runs every JSON response of every
 * test through `checkResponse`; the contract test checks route parity.
 */
import { readFileSync } from 'node:fs'
import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { parse } from 'yaml'
import { OPENAPI_PATH } from '../../src/routes/docs.ts'

interface Spec {
  paths: Record<string, Record<string, { responses: Record<string, { $ref?: string, content?: Record<string, { schema?: unknown }> }> }>>
  components: { responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }
}

export const spec = parse(readFileSync(OPENAPI_PATH, 'utf8')) as Spec
const ajv = new Ajv2020({ strict: false, allErrors: true })
addFormats.default(ajv)
ajv.addSchema({ ...spec, $id: 'openapi' } as object)

/** Routes served outside the contract on purpose: Swagger UI's own pages and assets, the console's files. */
export const UNDOCUMENTED = [/^\/docs(\/|$)/, /^\/console(\/(?!session$).*)?$/]

/** `/v1/messages/:sid` → `/v1/messages/{sid}` */
export function toOpenApiPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

const pointer = (parts: string[]): string => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')

/**
 * @returns `undefined` when the response matches the contract, or what is wrong.
 */
export function checkResponse (method: string, routeUrl: string, status: number, contentType: string | undefined, body: string): string | undefined {
  if (UNDOCUMENTED.some((re) => re.test(routeUrl))) return undefined
  const path = toOpenApiPath(routeUrl)
  const operation = spec.paths[path]?.[method.toLowerCase()]
  if (operation === undefined) return `${method} ${path} is not in openapi.yaml`
  let response = operation.responses[String(status)]
  if (response === undefined) return `${method} ${path} answered ${status}, which openapi.yaml does not document`
  let location = ['paths', path, method.toLowerCase(), 'responses', String(status)]
  if (response.$ref !== undefined) {
    const name = response.$ref.split('/').at(-1) as string
    response = spec.components.responses[name]
    location = ['components', 'responses', name]
  }
  if (!(contentType ?? '').startsWith('application/json')) return undefined
  if (response.content?.['application/json']?.schema === undefined) return `${method} ${path} ${status} sent JSON but openapi.yaml documents none`
  const validate = ajv.getSchema(`openapi#/${pointer([...location, 'content', 'application/json', 'schema'])}`)
  if (validate === undefined) return `no schema at ${location.join('.')}`
  let data: unknown
  try { data = JSON.parse(body) } catch { return `${method} ${path} ${status} sent invalid JSON` }
  if (validate(data) !== true) return `${method} ${path} ${status} does not match openapi.yaml: ${ajv.errorsText(validate.errors)}`
  return undefined
}
