// Webhooks: the logged-in key's outbound webhook subscriptions and their recent deliveries,
// read-only (GET /v1/subscriptions, GET /v1/subscriptions/:id/deliveries?limit=20; shapes in
// openapi.yaml, "Subscription" and "Delivery"). A server without outbound webhooks answers 404
// (or 501 when they are not configured), and the page says so.
import { get } from './api.js'
import { h, replace } from './dom.js'
import { number, time } from './format.js'

const isTime = (k) => /(_at|_until|_since)$/.test(k)
const cell = (k, v) => v === null || v === undefined
  ? '–'
  : isTime(k) && typeof v === 'string'
    ? time(v)
    : Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? JSON.stringify(v) : typeof v === 'number' ? number(v) : String(v)

/** A table of whatever fields the rows have (the subscription API is another team's; no field is assumed but `id`). */
function table (caption, rows, columns) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.replace(/_/g, ' '))))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', {}, cell(c, r[c]))))))))
}

const columnsOf = (rows, preferred) => {
  // Never the signing secret; the delivery payload is the whole event, too big for a cell.
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !/secret|payload/i.test(k))
  return [...preferred.filter((k) => keys.includes(k)), ...keys.filter((k) => !preferred.includes(k))].slice(0, 9)
}

export function renderWebhooks (container) {
  replace(container, h('h1', {}, 'Webhooks'), h('p', { role: 'status' }, 'Loading…'))
  get('/subscriptions').then(async (page) => {
    const subs = page.data ?? []
    const sections = await Promise.all(subs.map(async (s) => {
      let deliveries
      try {
        const d = await get(`/subscriptions/${encodeURIComponent(s.id)}/deliveries`, { limit: 20 })
        const rows = d.data ?? []
        deliveries = rows.length === 0
          ? h('p', { class: 'muted' }, 'No deliveries yet.')
          : table('Recent deliveries', rows, columnsOf(rows, ['created_at', 'event_type', 'state', 'attempts', 'last_status_code', 'last_error', 'last_attempt_at', 'next_attempt_at', 'delivered_at']))
      } catch (err) {
        deliveries = h('p', { class: 'error' }, err.message)
      }
      return h('section', { class: 'subscription' },
        h('h2', {}, s.url ?? s.id),
        table('Subscription', [s], columnsOf([s], ['url', 'enabled', 'disabled_reason', 'failing_since', 'event_types', 'channels', 'statuses', 'description', 'created_at'])),
        deliveries)
    }))
    replace(container, h('h1', {}, 'Webhooks'),
      h('p', {}, 'Outbound webhook subscriptions of this API key, read-only. Change them with the API and an API key.'),
      subs.length === 0 ? h('p', { class: 'muted' }, 'This key has no subscriptions.') : sections)
  }).catch((err) => {
    const absent = err.status === 404 || err.status === 501
    replace(container, h('h1', {}, 'Webhooks'), h('p', { class: absent ? 'muted' : 'error', role: 'status' },
      absent ? `Webhooks are not available on this Tidings (${err.status === 404 ? 'no outbound webhooks' : err.message}).` : err.message))
  })
}
