// Node addresses as Sheepdog carries them: 16 bytes, IPv4 stored as 12 zero bytes followed by
// the 4 address bytes (not the ::ffff: mapped form). Parsing, printing and the default zone
// derived from an address (wire-protocol.md §7.1, §7.2); and the `[HOST:]PORT` listen addresses
// of our own options (NBD, metrics).

export const SD_ADDR_LEN = 16
const MAX_TCP_PORT = 65535

/** 127.0.0.1 → 12 zero bytes, 127, 0, 0, 1. Throws on anything but a dotted quad. */
export function addrFromIPv4(s: string): Uint8Array {
  const addr = new Uint8Array(SD_ADDR_LEN)
  if (!parseIPv4Into(s, addr, 12)) throw new Error(`invalid IPv4 address: ${s}`)
  return addr
}

/** An IPv4 or IPv6 address in text form → 16 bytes; undefined if it is neither. */
export function parseAddr(s: string): Uint8Array | undefined {
  const addr = new Uint8Array(SD_ADDR_LEN)
  if (!s.includes(':')) return parseIPv4Into(s, addr, 12) ? addr : undefined
  return parseIPv6Into(s, addr) ? addr : undefined
}

/**
 * `A.B.C.D` when bytes 0..11 are zero and byte 12 is non-zero, otherwise the IPv6 text form
 * as inet_ntop prints it (lower case, longest zero run of ≥ 2 groups as ::).
 */
export function addrToString(addr: Uint8Array): string {
  if (isIPv4(addr)) return `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`
  return ipv6ToString(addr)
}

/** The zone a node gets without -z: the last 4 address bytes as a little-endian u32. */
export function defaultZone(addr: Uint8Array): number {
  return (addr[12]! | (addr[13]! << 8) | (addr[14]! << 16) | (addr[15]! << 24)) >>> 0
}

function isIPv4(addr: Uint8Array): boolean {
  for (let i = 0; i < 12; i++) if (addr[i] !== 0) return false
  return addr[12] !== 0
}

function parseIPv4Into(s: string, out: Uint8Array, at: number): boolean {
  const parts = s.split('.')
  if (parts.length !== 4) return false
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return false
    out[at + i] = Number(p)
  }
  return true
}

function parseIPv6Into(s: string, out: Uint8Array): boolean {
  const halves = s.split('::')
  if (halves.length > 2) return false
  const groups = (h: string | undefined): string[] => (h ? h.split(':') : [])
  const head = groups(halves[0])
  const tail = groups(halves[1])
  // A trailing dotted quad stands for the last two groups.
  const words: number[] = []
  const toWords = (gs: string[], last: boolean): number[] | undefined => {
    const ws: number[] = []
    for (let i = 0; i < gs.length; i++) {
      const g = gs[i]!
      if (last && i === gs.length - 1 && g.includes('.')) {
        const v4 = new Uint8Array(4)
        if (!parseIPv4Into(g, v4, 0)) return undefined
        ws.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        ws.push(parseInt(g, 16))
      } else {
        return undefined
      }
    }
    return ws
  }
  const headWords = toWords(head, halves.length === 1)
  const tailWords = toWords(tail, true)
  if (!headWords || !tailWords) return false
  if (halves.length === 1) {
    if (headWords.length !== 8) return false
    words.push(...headWords)
  } else {
    const fill = 8 - headWords.length - tailWords.length
    if (fill < 1) return false
    words.push(...headWords, ...new Array<number>(fill).fill(0), ...tailWords)
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i]! >> 8
    out[2 * i + 1] = words[i]! & 0xff
  }
  return true
}

// inet_ntop (glibc) for AF_INET6.
function ipv6ToString(addr: Uint8Array): string {
  const words: number[] = []
  for (let i = 0; i < 8; i++) words.push((addr[2 * i]! << 8) | addr[2 * i + 1]!)
  let bestBase = -1
  let bestLen = 0
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) {
      bestBase = i
      bestLen = j - i
    }
    i = j
  }
  if (bestLen < 2) bestBase = -1
  let s = ''
  for (let i = 0; i < 8; i++) {
    if (i === bestBase) {
      s += ':'
      i += bestLen - 1
      if (i === 7) s += ':'
      continue
    }
    if (i > 0) s += ':'
    // ::a.b.c.d and ::ffff:a.b.c.d keep the embedded IPv4 in dotted form.
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      s += `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`
      break
    }
    s += words[i]!.toString(16)
  }
  return s
}

export interface ListenAddress {
  host?: string
  port: number
}

/** `PORT`, `HOST:PORT` or `[IPV6]:PORT` (HOST an IP address) → the listen address; undefined when invalid. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d+)$/.exec(text)
  if (!m) return undefined
  const port = Number(m[3])
  if (port < 1 || port > MAX_TCP_PORT) return undefined
  const host = m[1] ?? m[2]
  if (host !== undefined && !parseAddr(host)) return undefined
  return host === undefined ? { port } : { host, port }
}
