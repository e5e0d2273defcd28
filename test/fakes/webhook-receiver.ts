/**
 * A webhook consumer on loopback for the outbound-webhook tests: it verifies every request with the
 * `standardwebhooks` library against the secrets it is told about, records it, and answers as the
 * test's `respond` says (a status and headers, or `'hang'` to never answer).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'

export interface ReceivedWebhook {
  id: string
  timestamp: string
  signature: string
  body: string
  payload: { type: string, timestamp: string, data: Record<string, unknown> }
  /** Which of the known secrets verified it (indexes into `secrets`); empty: none did. */
  verifiedBy: number[]
  at: number
}

export type Respond = (req: ReceivedWebhook, n: number) => { status: number, headers?: Record<string, string>, delayMs?: number } | 'hang'

export interface WebhookReceiver {
  url: string
  /** Secrets to verify with (the tests push the one POST /v1/subscriptions returned). */
  secrets: string[]
  received: ReceivedWebhook[]
  /** Requests that no known secret verified. */
  unverified: () => ReceivedWebhook[]
  respond: Respond
  /** Resolves once `predicate` holds over what was received (rejects after `timeoutMs`). */
  waitUntil: (predicate: (received: ReceivedWebhook[]) => boolean, timeoutMs?: number) => Promise<void>
  close: () => Promise<void>
}

export async function startReceiver (respond: Respond = () => ({ status: 204 })): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = []
  const waiters = new Set<() => void>()
  const hanging = new Set<http.ServerResponse>()
  const receiver: WebhookReceiver = {
    url: '',
    secrets: [],
    received,
    respond,
    unverified: () => received.filter((r) => r.verifiedBy.length === 0),
    waitUntil: async (predicate, timeoutMs = 20_000) => {
      if (predicate(received)) return
      await new Promise<void>((resolve, reject) => {
        const check = (): void => { if (predicate(received)) { clearTimeout(timer); waiters.delete(check); resolve() } }
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`receiver: condition not met in ${timeoutMs} ms (${received.length} received)`)) }, timeoutMs)
        waiters.add(check)
      })
    },
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) }
      const verifiedBy: number[] = []
      receiver.secrets.forEach((secret, i) => {
        try { new Webhook(secret).verify(body, headers); verifiedBy.push(i) } catch {}
      })
      let payload: ReceivedWebhook['payload']
      try { payload = JSON.parse(body) } catch { payload = { type: '', timestamp: '', data: {} } }
      const entry: ReceivedWebhook = { id: headers['webhook-id'], timestamp: headers['webhook-timestamp'], signature: headers['webhook-signature'], body, payload, verifiedBy, at: Date.now() }
      received.push(entry)
      const answer = receiver.respond(entry, received.length)
      for (const w of [...waiters]) w()
      if (answer === 'hang') { hanging.add(res); return }
      const send = (): void => { if (!res.destroyed) { res.writeHead(answer.status, answer.headers ?? {}); res.end() } }
      if (answer.delayMs === undefined) send()
      else { hanging.add(res); setTimeout(() => { hanging.delete(res); send() }, answer.delayMs) }
    })
  })
  server.keepAliveTimeout = 1000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  return receiver
}
