/* global location, requestAnimationFrame, ResizeObserver */
// Delivery charts over a chosen window, from GET /v1/stats/timeseries: messages per bucket by
// outcome and channel (stacked bars), delivery/read/open rates, median and p95 time to delivery,
// fallbacks sent and recovered, the top error codes with their meaning, and every number in a
// table too (charts are pictures; the table is what screen readers and tests read).
import UPlot from './vendor/uplot/uPlot.esm.js'
import { get } from './api.js'
import { h, replace } from './dom.js'
import { number, percent, seconds, time, fromLocalInput, toLocalInput } from './format.js'

const HOUR = 3600_000
const DAY = 24 * HOUR
const PRESETS = {
  '24h': { label: 'Last 24 hours, hourly', bucket: 'hour', span: DAY },
  '7d-hour': { label: 'Last 7 days, hourly', bucket: 'hour', span: 7 * DAY },
  '7d': { label: 'Last 7 days, daily', bucket: 'day', span: 7 * DAY },
  '30d': { label: 'Last 30 days, daily', bucket: 'day', span: 30 * DAY }
}
const HUES = { sms: 210, mms: 275, whatsapp: 140, email: 30 }
const OUTCOME_LIGHTNESS = { delivered: 38, pending: 72, failed: 55 }
const OUTCOME_SATURATION = { delivered: 60, pending: 35, failed: 90 }

const colour = (channel, outcome) => `hsl(${outcome === 'failed' ? 0 : HUES[channel] ?? 0} ${OUTCOME_SATURATION[outcome]}% ${OUTCOME_LIGHTNESS[outcome] + (outcome === 'failed' ? (HUES[channel] ?? 0) / 20 : 0)}%)`

function field (id, label, input) {
  input.id = id
  return h('div', { class: 'field' }, h('label', { for: id }, label), input)
}

/** A uPlot chart that follows its container's width. */
function chart (title, opts, data) {
  const holder = h('div', { class: 'chart-canvas' })
  const figure = h('figure', { class: 'chart' }, h('figcaption', {}, title), holder)
  requestAnimationFrame(() => {
    const width = Math.max(280, holder.clientWidth)
    const plot = new UPlot({ width, height: 240, ...opts }, data, holder)
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(280, holder.clientWidth), height: 240 }))
    observer.observe(holder)
  })
  return figure
}

function stackedMessages (ts, xs) {
  const combos = []
  for (const b of ts.buckets) {
    for (const c of b.by_channel) {
      for (const outcome of ['delivered', 'failed', 'pending']) {
        if (c[outcome] > 0 && !combos.some((k) => k.channel === c.channel && k.outcome === outcome)) combos.push({ channel: c.channel, outcome })
      }
    }
  }
  combos.sort((a, b) => a.channel.localeCompare(b.channel) || ['delivered', 'failed', 'pending'].indexOf(a.outcome) - ['delivered', 'failed', 'pending'].indexOf(b.outcome))
  const raw = combos.map((k) => ts.buckets.map((b) => b.by_channel.find((c) => c.channel === k.channel)?.[k.outcome] ?? 0))
  // Stacking: each series is drawn as the running total up to it, tallest first, so each bar
  // segment shows through above the ones below; the legend shows the segment's own count.
  const cumulative = raw.map((_, i) => xs.map((_, j) => raw.slice(0, i + 1).reduce((sum, r) => sum + r[j], 0)))
  const order = combos.map((_, i) => i).reverse()
  const bars = UPlot.paths.bars({ size: [0.7, 60] })
  return chart('Messages by outcome and channel', {
    series: [{}, ...order.map((i) => ({
      label: `${combos[i].channel} ${combos[i].outcome}`,
      fill: colour(combos[i].channel, combos[i].outcome),
      stroke: colour(combos[i].channel, combos[i].outcome),
      paths: bars,
      points: { show: false },
      value: (_u, _v, _si, idx) => idx === null ? '–' : number(raw[i][idx])
    }))],
    axes: [{}, { label: 'messages' }],
    scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } }
  }, [xs, ...order.map((i) => cumulative[i])])
}

function summaryTiles (s) {
  const tile = (label, value, detail) => h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label), h('span', { class: 'tile-value' }, value), detail === undefined ? null : h('span', { class: 'tile-detail' }, detail))
  return h('div', { class: 'tiles' },
    tile('Messages', number(s.total), `${number(s.delivered)} delivered · ${number(s.failed)} failed · ${number(s.pending)} in flight`),
    tile('Delivery rate', percent(s.delivery_rate.rate), `${number(s.delivery_rate.numerator)} of ${number(s.delivery_rate.denominator)} with an outcome`),
    tile('WhatsApp read rate', percent(s.read_rate.rate)),
    tile('Email open rate', percent(s.open_rate.rate)),
    tile('Time to delivery', `${seconds(s.delivery_time_s.median)} median`, `p95 ${seconds(s.delivery_time_s.p95)} · ${number(s.delivery_time_s.samples)} samples`),
    tile('SMS fallbacks', `${number(s.fallbacks.sent)} sent`, `${number(s.fallbacks.recovered)} recovered (delivered)`))
}

function bucketTable (ts) {
  const label = (iso) => ts.bucket === 'day' ? h('time', { datetime: iso, title: `UTC day ${iso.slice(0, 10)}` }, iso.slice(0, 10)) : time(iso)
  return h('div', { class: 'table-wrap' }, h('table', { class: 'buckets' },
    h('caption', {}, `Per ${ts.bucket}${ts.bucket === 'day' ? ' (UTC days)' : ''}`),
    h('thead', {}, h('tr', {}, ['Start', 'Total', 'Delivered', 'Failed', 'In flight', 'By channel', 'Delivery rate', 'Median', 'p95', 'Fallbacks sent', 'Recovered'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, ts.buckets.filter((b) => b.total > 0).map((b) => h('tr', { 'data-start': b.start },
      h('th', { scope: 'row' }, label(b.start)),
      h('td', { 'data-col': 'total' }, number(b.total)),
      h('td', { 'data-col': 'delivered' }, number(b.delivered)),
      h('td', { 'data-col': 'failed' }, number(b.failed)),
      h('td', { 'data-col': 'pending' }, number(b.pending)),
      h('td', {}, b.by_channel.map((c) => `${c.channel} ${c.delivered}/${c.failed}/${c.pending}`).join(', ')),
      h('td', {}, percent(b.delivery_rate)),
      h('td', {}, seconds(b.delivery_time_s.median)),
      h('td', {}, seconds(b.delivery_time_s.p95)),
      h('td', {}, number(b.fallbacks_sent)),
      h('td', {}, number(b.fallbacks_recovered)))))))
}

export function renderCharts (container, _arg, params) {
  const preset = h('select', {}, Object.entries(PRESETS).map(([k, p]) => h('option', { value: k }, p.label)), h('option', { value: 'custom' }, 'Custom window'))
  const bucket = h('select', {}, h('option', { value: 'hour' }, 'Hour'), h('option', { value: 'day' }, 'Day (UTC)'))
  const since = h('input', { type: 'datetime-local' })
  const until = h('input', { type: 'datetime-local' })
  const channel = h('select', {}, h('option', { value: '' }, 'All'), ['sms', 'mms', 'whatsapp', 'email'].map((c) => h('option', { value: c }, c)))
  const custom = h('div', { class: 'custom-window' }, field('c-bucket', 'Bucket', bucket), field('c-since', 'From', since), field('c-until', 'Until', until))
  const form = h('form', { class: 'chart-controls', 'aria-label': 'Chart window' },
    field('c-window', 'Window', preset), custom, field('c-channel', 'Channel', channel),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')))
  const status = h('p', { class: 'form-status', role: 'status', 'aria-live': 'polite' })
  const output = h('div', { class: 'charts' })

  preset.value = params.has('since') ? 'custom' : (params.get('window') ?? '7d')
  channel.value = params.get('channel') ?? ''
  bucket.value = params.get('bucket') ?? 'day'
  if (params.has('since')) since.value = toLocalInput(new Date(params.get('since')))
  if (params.has('until')) until.value = toLocalInput(new Date(params.get('until')))
  const syncCustom = () => { custom.hidden = preset.value !== 'custom' }
  preset.addEventListener('change', syncCustom)
  syncCustom()

  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const q = new URLSearchParams()
    if (preset.value === 'custom') {
      q.set('bucket', bucket.value)
      const s = fromLocalInput(since.value); if (s !== undefined) q.set('since', s)
      const u = fromLocalInput(until.value); if (u !== undefined) q.set('until', u)
    } else q.set('window', preset.value)
    if (channel.value !== '') q.set('channel', channel.value)
    location.hash = `#/charts?${q}`
  })

  const query = { channel: params.get('channel') ?? undefined }
  if (params.has('since')) Object.assign(query, { bucket: params.get('bucket') ?? 'day', since: params.get('since'), until: params.get('until') ?? undefined })
  else {
    const p = PRESETS[params.get('window') ?? '7d'] ?? PRESETS['7d']
    Object.assign(query, { bucket: p.bucket, since: new Date(Date.now() - p.span).toISOString() })
  }

  replace(container, h('h1', {}, 'Delivery charts'), form, status, output)
  status.textContent = 'Loading…'
  get('/stats/timeseries', query).then((ts) => {
    status.textContent = `${ts.bucket === 'day' ? 'Daily (UTC days)' : 'Hourly'} from ${new Date(ts.since).toLocaleString()} to ${new Date(ts.until).toLocaleString()}${ts.channel === null ? '' : `, ${ts.channel} only`}.`
    const xs = ts.buckets.map((b) => Date.parse(b.start) / 1000)
    const line = (label, stroke, values, dash) => ({ label, stroke, width: 2, dash, spanGaps: true, value: (_u, v) => v === null || v === undefined ? '–' : values(v) })
    const errors = ts.summary.top_error_codes
    replace(output,
      summaryTiles(ts.summary),
      h('div', { class: 'chart-grid' },
        stackedMessages(ts, xs),
        chart('Delivery, read and open rates', {
          series: [{}, line('delivery', 'hsl(210 60% 40%)', (v) => `${v.toFixed(1)} %`), line('WhatsApp read', 'hsl(140 60% 35%)', (v) => `${v.toFixed(1)} %`, [6, 3]), line('email open', 'hsl(30 80% 45%)', (v) => `${v.toFixed(1)} %`, [2, 3])],
          axes: [{}, { label: '%' }],
          scales: { y: { range: [0, 100] } }
        }, [xs, ...['delivery_rate', 'read_rate', 'open_rate'].map((k) => ts.buckets.map((b) => b[k] === null ? null : b[k] * 100))]),
        chart('Time to delivery (seconds)', {
          series: [{}, line('median', 'hsl(210 60% 40%)', (v) => seconds(v)), line('p95', 'hsl(0 70% 45%)', (v) => seconds(v), [6, 3])],
          axes: [{}, { label: 'seconds' }]
        }, [xs, ts.buckets.map((b) => b.delivery_time_s.median), ts.buckets.map((b) => b.delivery_time_s.p95)]),
        chart('SMS fallbacks', {
          series: [{}, line('sent', 'hsl(275 50% 45%)', (v) => number(v)), line('recovered (delivered)', 'hsl(140 60% 35%)', (v) => number(v), [6, 3])],
          axes: [{}, { label: 'messages' }],
          scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } }
        }, [xs, ts.buckets.map((b) => b.fallbacks_sent), ts.buckets.map((b) => b.fallbacks_recovered)])),
      h('section', { 'aria-labelledby': 'errors-title' },
        h('h2', { id: 'errors-title' }, 'Top error codes'),
        errors.length === 0
          ? h('p', { class: 'muted' }, 'No failures in this window.')
          : h('table', { class: 'errors' },
            h('thead', {}, h('tr', {}, ['Code', 'Meaning', 'Failed messages'].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', {}, errors.map((e) => h('tr', {}, h('td', {}, e.error_code ?? '(none)'), h('td', {}, e.meaning ?? '–'), h('td', {}, number(e.count))))))),
      h('section', { 'aria-labelledby': 'buckets-title' }, h('h2', { id: 'buckets-title' }, 'Numbers'), bucketTable(ts)))
  }).catch((err) => {
    status.textContent = err.message
    status.classList.add('error')
  })
}
