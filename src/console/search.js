/* global location */
// Search: by SID (opens the message), or by recipient, external_id, status, channel and time
// range through GET /v1/messages, one keyset page at a time ("More" follows next_cursor). The
// filters live in the URL hash, so a search can be bookmarked and the back button works.
import { get } from './api.js'
import { h, replace } from './dom.js'
import { fromLocalInput, masked, status, time, toLocalInput } from './format.js'

const PAGE = 25

function field (id, label, input, hint) {
  input.id = id
  input.name = id.replace(/^q-/, '')
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint === undefined ? null : h('small', {}, hint))
}

export function renderSearch (container, _arg, params) {
  const sid = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'SM…' })
  const to = h('input', { type: 'text', autocomplete: 'off', placeholder: '+14155550100' })
  const externalId = h('input', { type: 'text', autocomplete: 'off' })
  const statusInput = h('input', { type: 'text', autocomplete: 'off', placeholder: 'delivered', list: 'q-statuses' })
  const statuses = h('datalist', { id: 'q-statuses' }, ['queued', 'sent', 'delivered', 'read', 'undelivered', 'failed', 'email.sent', 'email.delivered', 'email.bounced'].map((s) => h('option', { value: s })))
  const channel = h('select', {}, h('option', { value: '' }, 'Any'), ['sms', 'mms', 'whatsapp', 'email'].map((c) => h('option', { value: c }, c)))
  const since = h('input', { type: 'datetime-local' })
  const until = h('input', { type: 'datetime-local' })
  const values = { sid, to, external_id: externalId, status: statusInput, channel }
  for (const [k, input] of Object.entries(values)) input.value = params.get(k) ?? ''
  if (params.has('since')) since.value = toLocalInput(new Date(params.get('since')))
  if (params.has('until')) until.value = toLocalInput(new Date(params.get('until')))

  const message = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite' })
  const body = h('tbody', {})
  const more = h('button', { type: 'button', hidden: true }, 'More')
  const results = h('table', { class: 'results' },
    h('caption', { class: 'sr-only' }, 'Messages, newest first'),
    h('thead', {}, h('tr', {}, ['Created', 'Channel', 'Recipient', 'Status', 'Error', 'External id', 'Message'].map((c) => h('th', { scope: 'col' }, c)))),
    body)

  const form = h('form', { class: 'search', role: 'search', 'aria-label': 'Search messages' },
    field('q-sid', 'SID', sid, 'Opens the message'),
    field('q-to', 'Recipient', to, 'E.164, with or without whatsapp:'),
    field('q-external_id', 'External id', externalId),
    field('q-status', 'Status', statusInput),
    field('q-channel', 'Channel', channel),
    field('q-since', 'Created from', since),
    field('q-until', 'Created before', until),
    statuses,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')))

  form.addEventListener('submit', (e) => {
    e.preventDefault()
    if (sid.value.trim() !== '') { location.hash = `#/message/${encodeURIComponent(sid.value.trim())}`; return }
    const q = new URLSearchParams()
    for (const [k, input] of Object.entries(values)) if (k !== 'sid' && input.value.trim() !== '') q.set(k, input.value.trim())
    const s = fromLocalInput(since.value); if (s !== undefined) q.set('since', s)
    const u = fromLocalInput(until.value); if (u !== undefined) q.set('until', u)
    q.set('run', '1')
    location.hash = `#/search?${q}`
  })

  let cursor = null
  const load = async (first) => {
    message.textContent = 'Searching…'
    message.classList.remove('error')
    try {
      const page = await get('/messages', {
        to: params.get('to') ?? undefined,
        external_id: params.get('external_id') ?? undefined,
        status: params.get('status') ?? undefined,
        channel: params.get('channel') ?? undefined,
        since: params.get('since') ?? undefined,
        until: params.get('until') ?? undefined,
        limit: PAGE,
        cursor: first ? undefined : cursor
      })
      if (first) replace(body)
      body.append(...page.data.map((m) => h('tr', {},
        h('td', {}, time(m.created_at)),
        h('td', {}, m.channel),
        h('td', {}, masked(m.to)),
        h('td', {}, status(m.status)),
        h('td', {}, m.error_code ?? ''),
        h('td', {}, m.external_id ?? ''),
        h('td', {}, h('a', { href: `#/message/${encodeURIComponent(m.sid)}` }, m.sid)))))
      cursor = page.next_cursor
      more.hidden = cursor === null
      const n = body.children.length
      message.textContent = n === 0 ? 'No messages match.' : `${n} message${n === 1 ? '' : 's'}${cursor === null ? '' : ' so far'}.`
    } catch (err) {
      message.textContent = err.message
      message.classList.add('error')
    }
  }
  more.addEventListener('click', () => load(false))

  replace(container, h('h1', {}, 'Search'), form, message, h('div', { class: 'table-wrap' }, results), more)
  if (params.has('run')) load(true)
  else results.hidden = true
}
