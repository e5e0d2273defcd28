// The console's only way to the server: the documented /v1 API and the session routes, with the
// session cookie (same origin). A 401 from /v1 means the session ended: the app shows the login.

export class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

let onUnauthorized = () => {}
/** Called when a /v1 request answers 401 (session expired or ended). */
export function setUnauthorizedHandler (fn) { onUnauthorized = fn }

async function request (method, url, body) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(url, init)
  } catch {
    throw new ApiError(0, 'network', 'Tidings cannot be reached; check the connection and retry.')
  }
  if (res.status === 204) return null
  const data = await res.json().catch(() => null)
  if (!res.ok) {
    if (res.status === 401 && url.startsWith('/v1/')) onUnauthorized()
    throw new ApiError(res.status, data?.code ?? 'error', data?.message ?? `HTTP ${res.status}`)
  }
  return data
}

/** GET a /v1 path with query parameters (undefined and empty values left out). */
export function get (path, query = {}) {
  const qs = new URLSearchParams()
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') qs.set(k, v)
  const s = qs.toString()
  return request('GET', `/v1${path}${s === '' ? '' : `?${s}`}`)
}

export const session = {
  current: () => request('GET', '/console/session'),
  login: (apiKey) => request('POST', '/console/session', { api_key: apiKey }),
  logout: () => request('DELETE', '/console/session')
}
