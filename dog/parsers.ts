// dog's argument parsers (spec cli-and-formats §2.3): sizes, redundancy levels, snapshot
// selectors, data-object indexes, object ids, block size shifts, ports and daemon addresses,
// with the original's error texts. The original reads numbers with strtol/strtoull/atoi, so
// the C-style readers here keep their leniency (leading space, trailing text ignored).

import { isIP } from 'node:net'

import { SD_EC_MAX_STRIP, SD_MAX_COPIES } from '../lib/proto.js'
import { type OptionServices, type Redundancy, type SnapshotSelector, UsageError } from './cli.js'

// ---------------------------------------------------------------------------
// C-style numbers

const LONG_MAX = (1n << 63n) - 1n
const LONG_MIN = -(1n << 63n)

/** C strtol(text, &end, base) over 64 bits; undefined when no digits were read. Trailing text is ignored. */
export function parseCLong(text: string, base: 10 | 16): bigint | undefined {
  const digitClass = base === 16 ? '[0-9a-fA-F]' : '[0-9]'
  const prefix = base === 16 ? '(?:0[xX](?=[0-9a-fA-F]))?' : ''
  const match = new RegExp(`^\\s*([-+]?)${prefix}(${digitClass}+)`).exec(text)
  if (match === null) return undefined
  let value = BigInt(`${base === 16 ? '0x' : ''}${match[2]}`)
  if (match[1] === '-') value = -value
  return value > LONG_MAX ? LONG_MAX : value < LONG_MIN ? LONG_MIN : value
}

/** C atoi(): the leading integer, 0 when there is none. */
function parseCInt(text: string): number {
  const value = parseCLong(text, 10)
  return value === undefined ? 0 : Number(BigInt.asIntN(32, value))
}

// ---------------------------------------------------------------------------
// Sizes

const SIZE_SUFFIX_POWERS: Readonly<Record<string, number>> = {
  '': 0,
  B: 0,
  b: 0,
  K: 1,
  k: 1,
  M: 2,
  m: 2,
  G: 3,
  g: 3,
  T: 4,
  t: 4,
  P: 5,
  p: 5,
}

const SIZE_PATTERN = /^\s*\+?((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([BbKkMmGgTtPp]?)$/

/**
 * A size argument: a decimal number (fractions and exponents allowed) with at
 * most one suffix letter B/b K/k M/m G/g T/t P/p (×1, ×2^10 … ×2^50),
 * truncated to whole bytes. Undefined when invalid or ≥ 2^64.
 */
export function parseSize(text: string): bigint | undefined {
  const match = SIZE_PATTERN.exec(text)
  if (match === null) return undefined
  let size = Number.parseFloat(match[1] as string)
  const power = SIZE_SUFFIX_POWERS[match[2] as string] ?? 0
  for (let step = 0; step < power; step++) size *= 1024
  if (!Number.isFinite(size) || size >= 2 ** 64) return undefined
  return BigInt(Math.trunc(size))
}

/** The stderr lines for an invalid size argument. */
export function invalidSizeMessages(text: string): string[] {
  return [`Invalid size '${text}'`, 'You may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.']
}

/** parseSize for a handler: an invalid size throws UsageError with the spec's two stderr lines. */
export function requireSize(text: string): bigint {
  const size = parseSize(text)
  if (size === undefined) throw new UsageError(...invalidSizeMessages(text))
  return size
}

// ---------------------------------------------------------------------------
// Redundancy

/** The data strip counts the original accepts for erasure coding. */
const ERASURE_DATA_STRIPS = new Set([2, 4, 8, 16])
/** Parity strips must stay below SD_EC_MAX_STRIP, as in the original's parse_copy. */
const ERASURE_MAX_PARITY_STRIPS = SD_EC_MAX_STRIP - 1

/** `N` (1..31 full copies) or `D:P` (D ∈ {2,4,8,16}, 1 ≤ P ≤ 15); undefined when invalid. */
export function parseRedundancy(text: string): Redundancy | undefined {
  const match = /^(\d+)(?::(\d+))?$/.exec(text)
  if (match === null) return undefined
  const first = Number(match[1])
  if (match[2] === undefined) {
    return first >= 1 && first <= SD_MAX_COPIES ? { copies: first, copyPolicy: 0 } : undefined
  }
  const parity = Number(match[2])
  if (!ERASURE_DATA_STRIPS.has(first) || parity < 1 || parity > ERASURE_MAX_PARITY_STRIPS) return undefined
  return { copies: first + parity, copyPolicy: ((first / 2) << 4) + parity, dataStrips: first, parityStrips: parity }
}

/** The stderr lines for an invalid -c value (then exit 1). */
export function invalidRedundancyMessages(text: string): string[] {
  return [
    `Invalid parameter ${text}`,
    'To create replicated vdi, set -c x',
    `  x(1 to ${SD_MAX_COPIES})   - number of replicated copies`,
    'To create erasure coded vdi, set -c x:y',
    '  x(2,4,8,16)  - number of data strips',
    '  y(1 to 15)   - number of parity strips',
  ]
}

/** The redundancy as `vdi list` / `cluster info` print it: `N` or `D:P`. */
export function formatRedundancy(copies: number, copyPolicy: number): string {
  if (copyPolicy === 0) return String(copies)
  const dataStrips = (copyPolicy >> 4) * 2
  const parityStrips = copyPolicy & 0x0f
  return `${dataStrips}:${parityStrips}`
}

// ---------------------------------------------------------------------------
// Snapshot selectors

/**
 * `-s` / `-F`: text that is wholly a decimal integer is a snapshot id,
 * anything else a tag. Undefined for an id that is not in 1..2^32−1.
 */
export function parseSnapshotSelector(text: string): SnapshotSelector | undefined {
  if (!/^\s*[-+]?\d+$/.test(text)) return { tag: text }
  const snapid = Number(text.trim())
  return snapid >= 1 && snapid <= 0xffffffff ? { snapid } : undefined
}

/** The snapshot id a selector names, 0 for a tag or none (as sent in requests). */
export function snapshotIdOf(selector: SnapshotSelector | undefined): number {
  return selector !== undefined && 'snapid' in selector ? selector.snapid : 0
}

/** The tag a selector names, '' for an id or none. */
export function snapshotTagOf(selector: SnapshotSelector | undefined): string {
  return selector !== undefined && 'tag' in selector ? selector.tag : ''
}

// ---------------------------------------------------------------------------
// Indexes and object ids

/**
 * `-i`: decimal, or hexadecimal after a leading `0x` (strtol: leading space
 * and sign accepted, trailing text ignored). Undefined when there are no digits.
 */
export function parseIndex(text: string): bigint | undefined {
  const value = text.startsWith('0x') ? parseCLong(text, 16) : parseCLong(text, 10)
  return value === undefined ? undefined : BigInt.asUintN(64, value)
}

/** `-o`: an object id in hex, `0x` optional (strtoull). Undefined when there are no digits. */
export function parseOid(text: string): bigint | undefined {
  const match = /^\s*([-+]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)/.exec(text)
  if (match === null) return undefined
  let value = BigInt(`0x${match[2]}`)
  if (value >= 1n << 64n) value = (1n << 64n) - 1n
  return match[1] === '-' ? BigInt.asUintN(64, -value) : value
}

// ---------------------------------------------------------------------------
// Block size shift

export const MIN_BLOCK_SIZE_SHIFT = 20
export const MAX_BLOCK_SIZE_SHIFT = 31

/** `-z`: the number as atoi() reads it (range checked by blockSizeShiftProblem). */
export function parseBlockSizeShift(text: string): number {
  return parseCInt(text)
}

/** The stderr line for a block_size_shift outside 20..31, else undefined. */
export function blockSizeShiftProblem(shift: number): string | undefined {
  if (shift > MAX_BLOCK_SIZE_SHIFT || shift < 0) {
    return 'Object Size is limited to 2^31. Please set shift bit lower than 31'
  }
  if (shift < MIN_BLOCK_SIZE_SHIFT) {
    return 'Object Size is larger than 2^20. Please set shift bit larger than 20'
  }
  return undefined
}

// ---------------------------------------------------------------------------
// The daemon's port and address (-p, -a and their environment variables)

/** A port in 1..65535 written in decimal digits only; undefined otherwise. */
export function parsePort(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined
  const port = Number(text)
  return port >= 1 && port <= 65535 ? port : undefined
}

/** Numeric forms the resolver would take (inet_aton: `1.2.3`, `0x7f.1`) but that are no IP address. */
const NUMERIC_NON_ADDRESS = /^(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+))*\.?$/i

/** An IPv4/IPv6 literal as is, or a resolvable host name's address (IPv4 preferred). */
export async function resolveDaemonAddress(text: string, services: OptionServices): Promise<string | undefined> {
  if (isIP(text) !== 0) return text
  if (text === '' || /\s/.test(text) || NUMERIC_NON_ADDRESS.test(text)) return undefined
  return services.resolveHost(text)
}
