// The message page: current status and timestamps (GET /v1/messages/:sid), the fallback link both
// ways, the timeline with each event's raw provider parameters collapsed, email engagement, and
// the reconciliation history (events recorded with source "reconcile") (GET …/events).
import { get } from './api.js'
import { h, replace } from './dom.js'
import { masked, number, status, time } from './format.js'

const link = (sid) => h('a', { href: `#/message/${encodeURIComponent(sid)}` }, sid)

function dl (pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))
}

function fallbackSection (m) {
  const items = []
  if (m.fallback_of !== null) items.push(h('p', { class: 'fallback-link' }, 'This SMS is the fallback of WhatsApp message ', link(m.fallback_of), '.'))
  const f = m.fallback
  if (f !== null) {
    items.push(h('p', { class: 'fallback-link' },
      `SMS fallback: ${f.state}${f.reason === null ? '' : ` (${f.reason})`}`,
      f.sid === null ? '.' : [' — ', link(f.sid), ' is ', status(f.status)]),
    dl([['Triggered by error', f.trigger_error_code ?? '–'], ['Attempts', number(f.attempts)], ['Last error', f.error_code === null ? '–' : `${f.error_code} ${f.error_message ?? ''}`], ['Created', time(f.created_at)], ['Updated', time(f.updated_at)]]))
  }
  if (items.length === 0) items.push(h('p', { class: 'muted' }, m.channel === 'whatsapp' ? `No fallback${m.fallback_enabled ? '' : ' (disabled for this message)'}.` : 'No fallback.'))
  return h('section', { 'aria-labelledby': 'fallback-title' }, h('h2', { id: 'fallback-title' }, 'Fallback'), items)
}

function eventItem (e) {
  return h('li', { class: 'event' },
    h('div', { class: 'event-head' }, status(e.status), ' ', time(e.received_at), ' ', h('span', { class: 'source' }, e.source),
      e.error_code === null ? null : h('span', { class: 'error-code' }, ` error ${e.error_code}${e.error_message === null ? '' : ` — ${e.error_message}`}`)),
    e.carrier_at === null ? null : h('div', { class: 'muted' }, 'Carrier receipt ', time(e.carrier_at)),
    h('details', {}, h('summary', {}, 'Provider parameters'), h('pre', {}, JSON.stringify(e.params, null, 2))))
}

export function renderMessage (container, sid) {
  replace(container, h('h1', {}, 'Message'), h('p', { role: 'status' }, 'Loading…'))
  Promise.all([get(`/messages/${encodeURIComponent(sid)}`), get(`/messages/${encodeURIComponent(sid)}/events`)]).then(([m, ev]) => {
    const reconciled = ev.data.filter((e) => e.source === 'reconcile')
    const engagement = m.engagement === null
      ? null
      : h('section', { 'aria-labelledby': 'engagement-title' },
        h('h2', { id: 'engagement-title' }, 'Email engagement'),
        dl([['Opens', number(m.engagement.open_count)], ['First opened', time(m.engagement.first_opened_at)], ['Clicks', number(m.engagement.click_count)], ['First clicked', time(m.engagement.first_clicked_at)]]),
        ev.engagement.length === 0
          ? h('p', { class: 'muted' }, 'No opens or clicks recorded.')
          : h('ul', { class: 'engagement' }, ev.engagement.map((x) => h('li', {}, `${x.kind} `, time(x.occurred_at), x.link === null ? null : [' ', h('span', { class: 'link' }, x.link)]))))
    replace(container,
      h('h1', {}, 'Message ', h('code', {}, m.sid)),
      h('section', { 'aria-labelledby': 'status-title' },
        h('h2', { id: 'status-title' }, 'Status'),
        dl([
          ['Status', status(m.status)],
          ['Error', m.error_code === null ? '–' : `${m.error_code}${m.error_message === null ? '' : ` — ${m.error_message}`}`],
          ['Channel', `${m.channel} (${m.provider})`],
          ['To', masked(m.to)],
          ['From', masked(m.from)],
          ['External id', m.external_id ?? '–'],
          ['Subject', m.subject ?? undefined],
          ['Created', time(m.created_at)],
          ['Sent', time(m.sent_at)],
          ['Delivered', time(m.delivered_at)],
          ['Read', m.channel === 'whatsapp' ? time(m.read_at) : undefined],
          ['Failed', time(m.failed_at)],
          ['Updated', time(m.updated_at)]
        ])),
      fallbackSection(m),
      h('section', { 'aria-labelledby': 'timeline-title' },
        h('h2', { id: 'timeline-title' }, 'Timeline'),
        ev.data.length === 0 ? h('p', { class: 'muted' }, 'No events yet.') : h('ol', { class: 'timeline' }, ev.data.map(eventItem))),
      engagement,
      h('section', { 'aria-labelledby': 'reconcile-title' },
        h('h2', { id: 'reconcile-title' }, 'Reconciliation history'),
        reconciled.length === 0
          ? h('p', { class: 'muted' }, 'Never reconciled: every status came from the provider\'s callbacks or the API.')
          : h('ol', { class: 'timeline' }, reconciled.map(eventItem))))
  }).catch((err) => {
    replace(container, h('h1', {}, 'Message'), h('p', { class: 'error', role: 'alert' }, err.status === 404 ? `No message with SID ${sid}.` : err.message))
  })
}
