/**
 * SSRF guard for outbound webhooks: a delivery may reach only public unicast addresses, unless
 * `WEBHOOK_ALLOWED_TARGETS` lets a network or a host through. The check runs on the address the
 * socket connects to (the HTTP client's `connect.lookup`, `./http-client.ts`), so a host name that
 * resolves to a public address when checked and to an internal one a moment later (DNS rebinding)
 * gains nothing: the connection goes to the address that was checked.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import ipaddr from 'ipaddr.js'
import type { WebhooksOutConfig } from '../config/webhooks-out.ts'

type Policy = Pick<WebhooksOutConfig, 'allowedNetworks' | 'allowedHosts'>

/** Why an address is refused: its ipaddr.js range (`loopback`, `private`, `linkLocal`, …), or null when allowed. */
export function refusedRange (policy: Policy, address: string): string | null {
  if (!ipaddr.isValid(address)) return 'invalid'
  // IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it is.
  const ip = ipaddr.process(address)
  for (const [net, bits] of policy.allowedNetworks) {
    if (net.kind() === ip.kind() && ip.match(net, bits)) return null
  }
  const range = ip.range()
  return range === 'unicast' ? null : range
}

/** True when `host` (a name, not an address) is listed in `WEBHOOK_ALLOWED_TARGETS`. */
export function isAllowedHost (policy: Policy, host: string): boolean {
  return policy.allowedHosts.includes(host.toLowerCase())
}

/** A URL's host without IPv6 brackets. */
export function hostOf (url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1')
}

/**
 * Checks a subscription URL when it is created or changed: a well-formed `https://` URL (or
 * `http://` to an allowed host or network), without credentials, and not an IP literal outside the
 * public range. Host names are checked again at every delivery, after resolution.
 * @returns a message saying what to fix, or null.
 */
export function urlProblem (policy: Policy, raw: string): string | null {
  let url: URL
  try { url = new URL(raw) } catch { return 'url must be an absolute https:// URL' }
  const host = hostOf(url)
  const literal = ipaddr.isValid(host)
  const allowed = literal ? isExplicitlyAllowed(policy, host) : isAllowedHost(policy, host)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && allowed)) return 'url must use https:// (plain http only to a target listed in WEBHOOK_ALLOWED_TARGETS)'
  if (url.username !== '' || url.password !== '') return 'url must not carry a user name or password'
  if (literal) {
    const range = refusedRange(policy, host)
    if (range !== null) return `url points at a ${range} address, which webhooks may not reach (an operator can allow it with WEBHOOK_ALLOWED_TARGETS)`
  }
  return null
}

function isExplicitlyAllowed (policy: Policy, address: string): boolean {
  const ip = ipaddr.process(address)
  return policy.allowedNetworks.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits))
}

/** Raised (as a connection error) when a delivery's target resolves only to refused addresses. */
export class TargetRefusedError extends Error {
  readonly code = 'ETARGETREFUSED'
  constructor (message: string) {
    super(message)
    this.name = 'TargetRefusedError'
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/**
 * A `lookup` for `net.connect`/`tls.connect` that resolves `hostname` and passes on only the
 * addresses the policy allows (all of them for an allowed host name); none left: `TargetRefusedError`.
 */
export function guardedLookup (policy: Policy) {
  return (hostname: string, options: { all?: boolean, family?: number | string }, callback: LookupCallback): void => {
    dnsLookup(hostname, { all: true, family: typeof options.family === 'number' ? options.family : 0 }, (err, addresses) => {
      if (err !== null) { callback(err, []); return }
      const trusted = isAllowedHost(policy, hostname)
      const refused: string[] = []
      const ok = addresses.filter((a) => {
        const range = trusted ? null : refusedRange(policy, a.address)
        if (range !== null) refused.push(`${a.address} (${range})`)
        return range === null
      })
      if (ok.length === 0) {
        callback(new TargetRefusedError(`target refused: ${hostname} resolves to ${refused.join(', ')}, which webhooks may not reach`), [])
        return
      }
      if (options.all === true) callback(null, ok)
      else callback(null, ok[0].address, ok[0].family)
    })
  }
}
