// Consistent hashing: the vnode ring built from a node list, zone-aware replica selection and
// the AUTO_VNODES rule that sizes each node's share by its space (wire-protocol.md §10.2–10.4).
// Vnode hashes are kept as sorted uint32 hi/lo pairs so a lookup is a binary search with no
// BigInt arithmetic.

import { sdHashInto, sdHashNextInto, sdHashOidInto } from './hash.js'
import { SD_DEFAULT_VNODES, SD_MAX_COPIES } from './proto.js'

/** What the ring needs of a node; the 80-byte sd_node decoded by lib/structs fits it. */
export interface RingNode {
  /** 16 bytes; IPv4 as 12 zero bytes + 4 address bytes. */
  addr: Uint8Array
  port: number
  /** 0 = gateway-only node, no share of the ring. */
  nrVnodes: number
  zone: number
  /** Store capacity in bytes (0 for gateways). */
  space: bigint
}

// The first 18 bytes of node_id: addr[16] ‖ port (u16 LE).
function nodeIdKey(addr: Uint8Array, port: number): Uint8Array {
  const key = new Uint8Array(18)
  key.set(addr.subarray(0, 16))
  key[16] = port & 0xff
  key[17] = (port >>> 8) & 0xff
  return key
}

/** h0 of a node: sd_hash(addr ‖ port LE). Its vnodes are sd_hash_next(h0), then onwards. */
export function nodeIdHash(node: { addr: Uint8Array; port: number }): bigint {
  const out = new Uint32Array(2)
  sdHashInto(nodeIdKey(node.addr, node.port), out)
  return (BigInt(out[0]!) << 32n) | BigInt(out[1]!)
}

/** Distinct zones among nodes with vnodes, counted up to SD_MAX_COPIES. */
export function countZones(nodes: readonly RingNode[]): number {
  const zones = new Set<number>()
  for (const n of nodes) {
    if (n.nrVnodes <= 0) continue
    zones.add(n.zone)
    if (zones.size >= SD_MAX_COPIES) break
  }
  return zones.size
}

export class HashRing<N extends RingNode = RingNode> {
  readonly nodes: readonly N[]
  /** Distinct zones among nodes with nrVnodes > 0 (stops at SD_MAX_COPIES). */
  readonly nrZones: number
  // Vnode i, in ascending unsigned 64-bit hash order: hash = hashHi[i]·2^32 + hashLo[i].
  private readonly hashHi: Uint32Array
  private readonly hashLo: Uint32Array
  private readonly owner: Uint32Array // index into nodes
  private readonly ownerZone: Uint32Array
  private readonly scratch = new Uint32Array(2)

  constructor(nodes: readonly N[]) {
    this.nodes = nodes
    this.nrZones = countZones(nodes)
    let total = 0
    for (const n of nodes) total += Math.max(0, n.nrVnodes)
    const hi = new Uint32Array(total)
    const lo = new Uint32Array(total)
    const own = new Uint32Array(total)
    const h = new Uint32Array(2)
    let v = 0
    nodes.forEach((n, idx) => {
      if (n.nrVnodes <= 0) return
      sdHashInto(nodeIdKey(n.addr, n.port), h)
      for (let k = 0; k < n.nrVnodes; k++, v++) {
        sdHashNextInto(h[0]!, h[1]!, h)
        hi[v] = h[0]!
        lo[v] = h[1]!
        own[v] = idx
      }
    })
    const order = new Uint32Array(total)
    for (let i = 0; i < total; i++) order[i] = i
    order.sort((a, b) => hi[a]! - hi[b]! || lo[a]! - lo[b]!)
    this.hashHi = new Uint32Array(total)
    this.hashLo = new Uint32Array(total)
    this.owner = new Uint32Array(total)
    this.ownerZone = new Uint32Array(total)
    for (let i = 0; i < total; i++) {
      const j = order[i]!
      this.hashHi[i] = hi[j]!
      this.hashLo[i] = lo[j]!
      this.owner[i] = own[j]!
      this.ownerZone[i] = nodes[own[j]!]!.zone >>> 0
    }
  }

  /** True when no node has vnodes: nothing can be placed. */
  get isEmpty(): boolean {
    return this.hashHi.length === 0
  }

  get nrVnodes(): number {
    return this.hashHi.length
  }

  /**
   * The nodes holding oid's replicas, replica (EC strip) index order: min(copies, nrZones)
   * nodes in distinct zones, starting at the first vnode with hash ≥ sd_hash_oid(oid).
   */
  replicasFor(oid: bigint, copies: number): N[] {
    const n = Math.min(copies, this.nrZones)
    const len = this.hashHi.length
    if (n <= 0 || len === 0) return []
    const h = this.scratch
    sdHashOidInto(Number((oid >> 32n) & 0xffffffffn), Number(oid & 0xffffffffn), h)
    const start = this.lowerBound(h[0]!, h[1]!) % len
    const result: N[] = [this.nodes[this.owner[start]!]!]
    const zones: number[] = [this.ownerZone[start]!]
    for (let pos = (start + 1) % len; result.length < n; pos = (pos + 1) % len) {
      if (pos === start) throw new Error('ring: not enough zones for the replicas')
      const zone = this.ownerZone[pos]!
      if (zones.includes(zone)) continue
      zones.push(zone)
      result.push(this.nodes[this.owner[pos]!]!)
    }
    return result
  }

  // Index of the first vnode with hash ≥ (hi, lo); the vnode count if there is none.
  private lowerBound(hi: number, lo: number): number {
    let a = 0
    let b = this.hashHi.length
    while (a < b) {
      const m = (a + b) >>> 1
      const mh = this.hashHi[m]!
      if (mh < hi || (mh === hi && this.hashLo[m]! < lo)) a = m + 1
      else b = m
    }
    return a
  }
}

// (float)v for a u64, rounded once as C does. Above 2^53 the bits below the top 53 are folded
// into a sticky bit so the double → float32 step cannot round twice.
function u64ToFloat32(v: bigint): number {
  if (v < 1n << 53n) return Math.fround(Number(v))
  const shift = BigInt(v.toString(2).length - 53)
  let top = v >> shift
  if ((v & ((1n << shift) - 1n)) !== 0n) top |= 1n
  return Math.fround(Number(top) * 2 ** Number(shift))
}

// rintf: round to nearest, ties to even.
function roundHalfEven(x: number): number {
  const f = Math.floor(x)
  const d = x - f
  if (d < 0.5) return f
  if (d > 0.5) return f + 1
  return f % 2 === 0 ? f : f + 1
}

/**
 * AUTO_VNODES: each node's vnode count from its space. avg = Σ space / count over nodes with
 * space > 0 (integer division); V = rintf(128 × (float)space / (float)avg) in float32
 * arithmetic; space 0 → 0. Results are clamped to the u16 nr_vnodes field.
 */
export function autoVnodes(nodes: readonly { space: bigint }[]): number[] {
  let sum = 0n
  let count = 0n
  for (const n of nodes) {
    if (n.space > 0n) {
      sum += n.space
      count++
    }
  }
  if (count === 0n) return nodes.map(() => 0)
  const avg = u64ToFloat32(sum / count)
  return nodes.map((n) => {
    if (n.space <= 0n) return 0
    const factor = Math.fround(u64ToFloat32(n.space) / avg)
    const v = roundHalfEven(Math.fround(SD_DEFAULT_VNODES * factor))
    return Math.min(v, 0xffff)
  })
}
