// FNV-1a 64 and the hashes Sheepdog builds on it: sd_hash, sd_hash_next, sd_hash_oid (ring
// placement), sd_hash_vdi (VDI name → starting vid) and the attribute id (wire-protocol.md
// §9.1, §10.1, §12.9). The arithmetic runs on two uint32 halves so the hot path never touches
// BigInt; bigint appears only at the API boundary.

import { SD_MAX_VDI_ATTR_KEY_LEN, SD_MAX_VDI_LEN, SD_MAX_VDI_TAG_LEN } from './proto.js'

export const FNV1A_64_INIT = 0xcbf29ce484222325n
const INIT_HI = 0xcbf29ce4
const INIT_LO = 0x84222325
// FNV_64_PRIME = 0x100000001b3 = 2^40 + 0x1b3
const PRIME_LOW = 0x1b3
const TWO_32 = 4294967296

// The running state of the 64-bit hash; the internal steps below update it in place.
let hashHi = 0
let hashLo = 0

// h ^= b; h *= FNV_64_PRIME (mod 2^64). With h = hi·2^32 + lo:
// h·(2^40 + 0x1b3) ≡ lo·0x1b3 + (hi·0x1b3 + lo·2^8)·2^32  (mod 2^64).
// lo·0x1b3 < 2^41, so it is exact in a double.
function mixByte(b: number): void {
  const lo = (hashLo ^ b) >>> 0
  const low = lo * PRIME_LOW
  hashLo = low >>> 0
  hashHi = (Math.imul(hashHi, PRIME_LOW) + ((low / TWO_32) | 0) + (lo << 8)) >>> 0
}

function mixBytes(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) mixByte(bytes[i]!)
}

// FNV1A_U64: the 8 little-endian bytes of v = vHi·2^32 + vLo.
function mixU64(vHi: number, vLo: number): void {
  mixByte(vLo & 0xff)
  mixByte((vLo >>> 8) & 0xff)
  mixByte((vLo >>> 16) & 0xff)
  mixByte(vLo >>> 24)
  mixByte(vHi & 0xff)
  mixByte((vHi >>> 8) & 0xff)
  mixByte((vHi >>> 16) & 0xff)
  mixByte(vHi >>> 24)
}

// sd_hash_next applied to the current state: h = FNV1A_U64(h, h).
function mixSelf(): void {
  mixU64(hashHi, hashLo)
}

function setState(v: bigint): void {
  hashHi = Number((v >> 32n) & 0xffffffffn)
  hashLo = Number(v & 0xffffffffn)
}

function stateAsBigint(): bigint {
  return (BigInt(hashHi) << 32n) | BigInt(hashLo)
}

function writeOut(out: Uint32Array): void {
  out[0] = hashHi
  out[1] = hashLo
}

const encoder = new TextEncoder()

function toBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === 'string' ? encoder.encode(s) : s
}

/** FNV1A(bytes, basis): 64-bit FNV-1a over bytes. */
export function fnv1a64(bytes: Uint8Array, basis: bigint = FNV1A_64_INIT): bigint {
  setState(basis)
  mixBytes(bytes)
  return stateAsBigint()
}

/** FNV1A_U64(v, basis): FNV-1a over the 8 little-endian bytes of v. */
export function fnv1a64U64(v: bigint, basis: bigint): bigint {
  setState(basis)
  mixU64(Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn))
  return stateAsBigint()
}

/** sd_hash(bytes) = FNV1A_U64(h, h) with h = FNV1A(bytes, basis). */
export function sdHash(bytes: Uint8Array): bigint {
  hashHi = INIT_HI
  hashLo = INIT_LO
  mixBytes(bytes)
  mixSelf()
  return stateAsBigint()
}

/** sd_hash_next(h) = FNV1A_U64(h, h): the next vnode hash after h. */
export function sdHashNext(h: bigint): bigint {
  setState(h)
  mixSelf()
  return stateAsBigint()
}

/** sd_hash_oid(oid): where an object sits on the ring (= sd_hash of the 8-byte LE oid). */
export function sdHashOid(oid: bigint): bigint {
  const out = new Uint32Array(2)
  sdHashOidInto(Number((oid >> 32n) & 0xffffffffn), Number(oid & 0xffffffffn), out)
  return (BigInt(out[0]!) << 32n) | BigInt(out[1]!)
}

// Allocation-free forms for the ring. A 64-bit value is a pair: out[0] = high 32 bits,
// out[1] = low 32 bits (both unsigned).

/** sd_hash(bytes) written to out as [hi, lo]. */
export function sdHashInto(bytes: Uint8Array, out: Uint32Array): void {
  hashHi = INIT_HI
  hashLo = INIT_LO
  mixBytes(bytes)
  mixSelf()
  writeOut(out)
}

/** sd_hash_next of (hi, lo) written to out as [hi, lo]. */
export function sdHashNextInto(hi: number, lo: number, out: Uint32Array): void {
  hashHi = hi >>> 0
  hashLo = lo >>> 0
  mixSelf()
  writeOut(out)
}

/** sd_hash_oid of the oid (oidHi, oidLo) written to out as [hi, lo]. */
export function sdHashOidInto(oidHi: number, oidLo: number, out: Uint32Array): void {
  hashHi = INIT_HI
  hashLo = INIT_LO
  mixU64(oidHi >>> 0, oidLo >>> 0)
  mixSelf()
  writeOut(out)
}

/**
 * sd_hash_vdi(name): FNV-1a 64 of the name bytes (no NUL) & 0xFFFFFF, the vid where the
 * search for the name starts. It can be 0 (e.g. "01909709"); vid 0 is never used, so callers
 * treat 0 as 1 (wire-protocol.md §9.1, §9.3).
 */
export function sdHashVdi(name: string | Uint8Array): number {
  hashHi = INIT_HI
  hashLo = INIT_LO
  mixBytes(toBytes(name))
  return hashLo & 0xffffff
}

// The bytes of s NUL-padded (or cut) to a fixed field of len bytes. A raw field taken from a
// payload (exactly len bytes) is hashed as it is, padding included.
function fixedField(s: string | Uint8Array, len: number): Uint8Array {
  const bytes = toBytes(s)
  if (bytes.length === len) return bytes
  const field = new Uint8Array(len)
  field.set(bytes.subarray(0, Math.min(bytes.length, len)))
  return field
}

/**
 * The first attribute id probed for (name, tag, snapId, key): FNV-1a 64 over name[256] ‖
 * tag[256] ‖ snap_id (u32 LE) ‖ key[256], the full NUL-padded fields, & 0xFFFFFFFF
 * (wire-protocol.md §12.9). Collisions are resolved by the caller (attr_id + 1 mod 2^32).
 */
export function sdHashAttrId(name: string | Uint8Array, tag: string | Uint8Array, snapId: number, key: string | Uint8Array): number {
  hashHi = INIT_HI
  hashLo = INIT_LO
  mixBytes(fixedField(name, SD_MAX_VDI_LEN))
  mixBytes(fixedField(tag, SD_MAX_VDI_TAG_LEN))
  mixByte(snapId & 0xff)
  mixByte((snapId >>> 8) & 0xff)
  mixByte((snapId >>> 16) & 0xff)
  mixByte(snapId >>> 24)
  mixBytes(fixedField(key, SD_MAX_VDI_ATTR_KEY_LEN))
  return hashLo
}
