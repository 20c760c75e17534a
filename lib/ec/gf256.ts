// Arithmetic in GF(2^8) as Sheepdog's erasure code uses it (lib/fec.c of the original, and
// isa-l's base code, agree): primitive polynomial x^8+x^4+x^3+x^2+1 (0x11D) with α = x = 2
// (wire-protocol.md §11.4). Addition is XOR; multiplication goes through log/exp tables built
// once at load, plus a full 64 KiB product table for the byte-at-a-time fallback kernel.
import assert from 'node:assert/strict'

/** The field polynomial, bit 8 included. */
export const GF_POLYNOMIAL = 0x11d
/** Number of field elements. */
export const GF_SIZE = 256
/** Order of the multiplicative group: α^GF_ORDER = 1. */
export const GF_ORDER = 255

/** gfExp[i] = α^i for 0 ≤ i < 2·GF_ORDER, doubled so a sum of two logs needs no modulo. */
const gfExp = new Uint8Array(2 * GF_ORDER)
/** gfLog[x] = i with α^i = x, for x ≠ 0 (gfLog[0] is unused). */
const gfLog = new Uint8Array(GF_SIZE)

{
  let x = 1
  for (let i = 0; i < GF_ORDER; i++) {
    gfExp[i] = x
    gfExp[i + GF_ORDER] = x
    gfLog[x] = i
    x <<= 1
    if (x & GF_SIZE) x ^= GF_POLYNOMIAL
  }
  // α generates the whole group only if the polynomial is primitive: x came back to 1
  assert.equal(x, 1)
}

/** α^n for any n ≥ 0. */
export function gfPow(n: number): number {
  assert.ok(Number.isInteger(n) && n >= 0)
  return gfExp[n % GF_ORDER]!
}

export function gfMul(a: number, b: number): number {
  if (a === 0 || b === 0) return 0
  return gfExp[gfLog[a]! + gfLog[b]!]!
}

export function gfInv(a: number): number {
  assert.ok(a !== 0, 'zero has no inverse')
  return gfExp[GF_ORDER - gfLog[a]!]!
}

/** GF_MUL_TABLE[c * 256 + x] = c·x: the row of a coefficient is a 256-byte lookup table. */
export const GF_MUL_TABLE: Uint8Array = (() => {
  const table = new Uint8Array(GF_SIZE * GF_SIZE)
  for (let c = 1; c < GF_SIZE; c++) for (let x = 1; x < GF_SIZE; x++) table[c * GF_SIZE + x] = gfExp[gfLog[c]! + gfLog[x]!]!
  return table
})()

/** The 256-byte product table of one coefficient (a view, not a copy). */
export function gfMulRow(c: number): Uint8Array {
  return GF_MUL_TABLE.subarray(c * GF_SIZE, (c + 1) * GF_SIZE)
}
