/* global EventSource */
// Live feed: status events as they commit (GET /v1/stream, Server-Sent Events; the EventSource
// sends the session cookie), newest first, filtered by channel and status in the page, with
// pause/resume. EventSource reconnects on its own with Last-Event-ID, so nothing is missed.
import { h, replace } from './dom.js'
import { masked, status, time } from './format.js'

/** Events kept in the page (newest); older ones fall off. */
const KEEP = 500
const CHANNELS = ['sms', 'mms', 'whatsapp', 'email']
const OUTCOMES = { delivered: ['delivered', 'read', 'email.delivered', 'email.complained'], failed: ['undelivered', 'failed', 'email.bounced', 'email.failed', 'email.suppressed'] }

export function renderFeed (container) {
  const events = []
  /** While paused: the events shown when the user paused; new ones wait in `events`. */
  let frozen = null
  let unseen = 0

  const channel = h('select', { id: 'feed-channel' }, h('option', { value: '' }, 'All channels'), CHANNELS.map((c) => h('option', { value: c }, c)))
  const statusFilter = h('select', { id: 'feed-status' },
    h('option', { value: '' }, 'All statuses'),
    h('option', { value: 'delivered' }, 'Delivered or read'),
    h('option', { value: 'failed' }, 'Failed'),
    h('option', { value: 'other' }, 'In flight'))
  const pauseButton = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause')
  const connection = h('span', { class: 'connection', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting' }, 'Connecting…')
  const body = h('tbody', {})
  const table = h('table', { class: 'feed' },
    h('caption', { class: 'sr-only' }, 'Status events, newest first'),
    h('thead', {}, h('tr', {}, ['Received', 'Channel', 'Recipient', 'Status', 'Error', 'Message'].map((c) => h('th', { scope: 'col' }, c)))),
    body)
  const empty = h('p', { class: 'muted' }, 'Waiting for status events…')

  const visible = (e) => {
    if (channel.value !== '' && e.channel !== channel.value) return false
    const f = statusFilter.value
    if (f === 'delivered' || f === 'failed') return OUTCOMES[f].includes(e.status)
    if (f === 'other') return !OUTCOMES.delivered.includes(e.status) && !OUTCOMES.failed.includes(e.status)
    return true
  }
  const row = (e) => h('tr', { 'data-sid': e.sid },
    h('td', {}, time(e.received_at)),
    h('td', {}, e.channel),
    h('td', {}, masked(e.to)),
    h('td', {}, status(e.status), e.source === 'webhook' ? null : h('span', { class: 'source' }, ` via ${e.source}`)),
    h('td', {}, e.error_code === null ? '' : h('span', { class: 'error-code' }, e.error_code, e.error_meaning === null || e.error_meaning === undefined ? null : h('span', { class: 'meaning' }, ` ${e.error_meaning}`))),
    h('td', {}, h('a', { href: `#/message/${encodeURIComponent(e.sid)}` }, e.sid)))
  const render = () => {
    const shown = (frozen ?? events).filter(visible)
    replace(body, shown.map(row))
    empty.hidden = shown.length > 0
    pauseLabel()
  }
  const pauseLabel = () => {
    pauseButton.textContent = frozen !== null ? (unseen > 0 ? `Resume (${unseen} new)` : 'Resume') : 'Pause'
  }
  channel.addEventListener('change', render)
  statusFilter.addEventListener('change', render)
  pauseButton.addEventListener('click', () => {
    frozen = frozen === null ? events.slice() : null
    pauseButton.setAttribute('aria-pressed', String(frozen !== null))
    unseen = 0
    render()
  })

  const source = new EventSource('/v1/stream')
  source.addEventListener('open', () => { connection.textContent = 'Live'; connection.dataset.state = 'live' })
  source.addEventListener('error', () => { connection.textContent = 'Reconnecting…'; connection.dataset.state = 'reconnecting' })
  source.addEventListener('status', (message) => {
    const e = JSON.parse(message.data)
    events.unshift(e)
    if (events.length > KEEP) events.length = KEEP
    if (frozen === null) render()
    else { unseen++; pauseLabel() }
  })

  replace(container,
    h('h1', {}, 'Live feed'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'feed-channel' }, 'Channel'), channel,
      h('label', { for: 'feed-status' }, 'Status'), statusFilter,
      pauseButton, connection),
    h('div', { class: 'table-wrap' }, table),
    empty)
  render()
  return () => source.close()
}
