/**
 * The outbound-webhook part of `npm run demo`: a receiver on loopback subscribes (before the demo
 * replays its callbacks) to every change, verifies every request with the `standardwebhooks`
 * library, and at the end prints what arrived. Self-contained: `scripts/demo.ts` spreads
 * `webhooksDemoEnv()` into its configuration, calls `startWebhooksDemo` once Tidings listens, and
 * `report` at the end.
 */
import { randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import { ARROW, request } from './demo-http.ts'

/** Configuration for the demo: outbound webhooks on, loopback allowed, quick polling. */
export function webhooksDemoEnv (): Record<string, string> {
  return {
    WEBHOOK_SECRETS_KEY: randomBytes(32).toString('base64'),
    WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32',
    WEBHOOK_POLL_INTERVAL: '1s'
  }
}

interface Received { id: string, verified: boolean, type: string, sid: string, status: string, sequence: number }

/**
 * Starts the receiver and subscribes it through `POST /v1/subscriptions`.
 * @param print - prints a line saying so.
 * @returns `report(print)`, which waits for the deliveries to settle, prints them, closes the
 *   receiver, and resolves with the number of problems (unverified requests, nothing received).
 */
export async function startWebhooksDemo (address: string, apiKey: string, print: (line: string) => void): Promise<{ report: (print: (line: string) => void) => Promise<number> }> {
  const received: Received[] = []
  // Known once subscribed; requests cannot arrive before that.
  const signer: { webhook?: Webhook } = {}
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      let verified = false
      try { signer.webhook?.verify(body, req.headers as Record<string, string>); verified = true } catch {}
      const p = JSON.parse(body) as { type: string, data: { message_sid: string, status?: string, sequence: number, fallback?: { state: string }, engagement?: { kind: string } } }
      received.push({ id: String(req.headers['webhook-id']), verified, type: p.type, sid: p.data.message_sid, status: p.data.status ?? p.data.fallback?.state ?? p.data.engagement?.kind ?? '', sequence: p.data.sequence })
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tidings`
  // Right after start-up load shedding may answer 503 for a moment: `request` waits it out.
  const res = await request<{ id: string, secret: string }>(`${address}/v1/subscriptions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url, description: 'npm run demo', event_types: ['message.status', 'message.final', 'message.fallback', 'email.engagement'] })
  })
  if (res.status !== 201) throw new Error(`POST /v1/subscriptions answered ${res.summary}`)
  signer.webhook = new Webhook(res.body.secret)
  print(`a receiver at ${url} subscribed to every change (subscription ${res.body.id}); it verifies each request with standardwebhooks`)

  return {
    async report (print) {
      // Settle: wait until nothing new arrived for a second (at most 15 s).
      const deadline = Date.now() + 15_000
      let last = -1
      while (Date.now() < deadline && received.length !== last) {
        last = received.length
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
      server.closeAllConnections()
      server.close()
      const unverified = received.filter((r) => !r.verified).length
      const byType = new Map<string, number>()
      for (const r of received) byType.set(r.type, (byType.get(r.type) ?? 0) + 1)
      print(`the subscribed receiver got ${received.length} deliveries (${[...byType].map(([k, v]) => `${v} ${k}`).join(', ')}), ${received.length - unverified} with a verified signature:`)
      const bySid = new Map<string, Received[]>()
      for (const r of received) bySid.set(r.sid, [...(bySid.get(r.sid) ?? []), r])
      for (const [sid, list] of bySid) {
        // Status changes in their sequence, then the fallback's and engagement's own (another sequence).
        const group = (r: Received): number => r.type.startsWith('message.status') || r.type === 'message.final' ? 0 : 1
        const changes = list.sort((a, b) => group(a) - group(b) || a.sequence - b.sequence).map((r) => `${r.type === 'message.status' ? '' : `${r.type}:`}${r.status}${r.verified ? '' : ' ✘unverified'}`)
        print(`  ${sid.slice(0, 10)}…  ${changes.join(` ${ARROW} `)}`)
      }
      const problems = unverified + (received.length === 0 ? 1 : 0)
      print(problems === 0 ? '✔ every delivery verified with standardwebhooks' : `✘ ${unverified} unverified deliveries${received.length === 0 ? ', none received' : ''}`)
      return problems
    }
  }
}
