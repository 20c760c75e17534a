// Who may send admin ops (`sheep --admin-from`): the Sheepdog protocol has no authentication, so
// anyone who reaches port 7000 could format the cluster. With the option, the ops the op table
// marks `admin` (format, shutdown, kill, recover, delete, alter-copy...) are accepted only on the
// unix socket and from the listed networks; without it every client may send them, as in the
// original. Our own addition (issue 16, "Access"); the check is in server.ts.
import net from 'node:net'

/** The widest prefix of each address family: a single address is a network of this prefix. */
const PREFIX_BITS_MAX: Readonly<Record<'ipv4' | 'ipv6', number>> = { ipv4: 32, ipv6: 128 }

/** The networks admin ops are accepted from, as the option gave them (for the log). */
export interface AdminNetworks {
  /** The option's text, normalised: `net/prefix` entries joined by commas. */
  text: string
  list: net.BlockList
}

/**
 * Parses `NET[/PREFIX][,NET[/PREFIX]...]` (IPv4 or IPv6; a bare address is the one address):
 * the networks, or why the text is not a list of networks.
 */
export function parseAdminNetworks(text: string): AdminNetworks | string {
  const list = new net.BlockList()
  const entries: string[] = []
  for (const part of text.split(',')) {
    const entry = part.trim()
    if (entry === '') continue
    const slash = entry.indexOf('/')
    const address = slash < 0 ? entry : entry.slice(0, slash)
    const version = net.isIP(address)
    if (version === 0) return `Invalid network '${entry}': not an IP address`
    const family = version === 4 ? 'ipv4' : 'ipv6'
    const prefixText = slash < 0 ? String(PREFIX_BITS_MAX[family]) : entry.slice(slash + 1)
    const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : -1
    if (prefix < 0 || prefix > PREFIX_BITS_MAX[family]) return `Invalid network '${entry}': prefix length must be 0..${PREFIX_BITS_MAX[family]}`
    list.addSubnet(address, prefix, family)
    entries.push(`${address}/${prefix}`)
  }
  if (entries.length === 0) return 'Invalid admin networks: none given'
  return { text: entries.join(','), list }
}

/**
 * True when a TCP connection from `remoteAddress` may send admin ops (the unix socket always
 * may: only local users with access to the socket file reach it; the server does not ask). An
 * IPv4 client seen on a dual-stack listener (`::ffff:a.b.c.d`) matches the IPv4 networks; a
 * connection whose address is unknown (closed already) may not.
 */
export function adminAllowed(networks: AdminNetworks | undefined, remoteAddress: string): boolean {
  if (networks === undefined) return true
  const version = net.isIP(remoteAddress)
  if (version === 0) return false
  return networks.list.check(remoteAddress, version === 4 ? 'ipv4' : 'ipv6')
}
