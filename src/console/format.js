// Formatting for people: local times with UTC on hover, masked phone numbers and addresses that
// the user may reveal one at a time, grouped numbers, percentages.
import { h } from './dom.js'

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' })
const numberFormat = new Intl.NumberFormat()

/** A <time> in local time, with the UTC instant as its title. */
export function time (iso) {
  if (iso === null || iso === undefined) return h('span', { class: 'muted' }, '–')
  const d = new Date(iso)
  return h('time', { datetime: iso, title: `UTC ${d.toISOString().replace('T', ' ').replace('Z', '')}` }, dateTime.format(d))
}

export function number (n) {
  return n === null || n === undefined ? '–' : numberFormat.format(n)
}

export function percent (rate) {
  return rate === null || rate === undefined ? '–' : `${(rate * 100).toFixed(1)} %`
}

export function seconds (s) {
  if (s === null || s === undefined) return '–'
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`
}

/** `+14155550100` → `+141•••••00`; `ada@example.com` → `a••@example.com`. */
export function maskAddress (value) {
  if (value === null || value === undefined || value === '') return '–'
  const at = value.indexOf('@')
  if (at > 0) return `${value[0]}${'•'.repeat(Math.max(2, at - 1))}${value.slice(at)}`
  if (value.length <= 6) return '•'.repeat(value.length)
  return `${value.slice(0, 4)}${'•'.repeat(value.length - 6)}${value.slice(-2)}`
}

/** A masked address with a button that reveals (and hides) it. */
export function masked (value) {
  if (value === null || value === undefined || value === '') return h('span', { class: 'muted' }, '–')
  const text = h('span', { class: 'address' }, maskAddress(value))
  const button = h('button', { type: 'button', class: 'reveal', 'aria-pressed': 'false', 'aria-label': 'Reveal recipient' }, 'show')
  button.addEventListener('click', (e) => {
    e.stopPropagation()
    const shown = button.getAttribute('aria-pressed') === 'true'
    text.textContent = shown ? maskAddress(value) : value
    button.setAttribute('aria-pressed', String(!shown))
    button.textContent = shown ? 'show' : 'hide'
    button.setAttribute('aria-label', shown ? 'Reveal recipient' : 'Hide recipient')
  })
  return h('span', { class: 'masked' }, text, ' ', button)
}

const DELIVERED = new Set(['delivered', 'read', 'email.delivered', 'email.complained'])
const FAILED = new Set(['undelivered', 'failed', 'email.bounced', 'email.failed', 'email.suppressed'])

/** A status as a badge coloured by outcome (text carries the meaning, colour only helps). */
export function status (value) {
  const outcome = DELIVERED.has(value) ? 'delivered' : FAILED.has(value) ? 'failed' : 'pending'
  return h('span', { class: `badge ${outcome}` }, value ?? 'none')
}

/** An ISO instant from a `datetime-local` input's value (local time), or undefined. */
export function fromLocalInput (value) {
  return value === '' ? undefined : new Date(value).toISOString()
}

/** A `datetime-local` value (local time, minutes) for a Date. */
export function toLocalInput (d) {
  const pad = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
}
