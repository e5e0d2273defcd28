import { readFileSync } from 'node:fs'
import t from 'tap'
import { buildFallbackApp } from './helpers/fallback.ts'

t.test('docs/grafana-dashboard.json only queries metrics that Tidings exports', async (t) => {
  const dashboard = JSON.parse(readFileSync(new URL('../docs/grafana-dashboard.json', import.meta.url), 'utf8')) as { panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
  const { app } = await buildFallbackApp(t)
  const exported = new Set([...(await app.inject({ method: 'GET', url: '/metrics' })).body.matchAll(/^# TYPE (\S+) (\w+)/gm)].flatMap(([, name, type]) =>
    type === 'histogram' ? [`${name}_bucket`, `${name}_count`, `${name}_sum`] : [name]))
  const missing: string[] = []
  for (const panel of dashboard.panels) {
    for (const target of panel.targets) {
      for (const [name] of target.expr.matchAll(/\btidings_[a-z0-9_]+/g)) if (!exported.has(name)) missing.push(`${panel.title}: ${name}`)
    }
  }
  t.same(missing, [], 'every queried metric exists')
  t.ok(dashboard.panels.length >= 10)
})
