// CRC-32 combination for the checksum layer (checksums.ts, docs/integrity.md): the CRC of A‖B
// from crc(A), crc(B) and the length of B, without reading A or B again. Reads are verified
// with ONE zlib.crc32 call over the whole buffer, compared with the CRCs of its 4 KiB blocks
// folded together here: one native call over a large buffer runs faster than one call per
// block, and the fold costs a few table lookups per block.
//
// The algebra is zlib's own (crc32_combine in zlib's crc32.c): CRC-32 is linear over GF(2), so
// crc(A‖B) = shift(crc(A), len(B)) ⊕ crc(B), where shift multiplies by x^(8·len(B)) modulo the
// CRC polynomial (reflected bit order, as zlib stores CRCs). zlib's pre- and post-conditioning
// (the register starts at and ends XORed with 0xffffffff) cancel out in that formula. The shift
// by the fixed block size is a linear map on 32 bits: it is tabled once as 4 tables of 256
// entries (one per byte of the CRC), so shifting a CRC by a block is 4 lookups and 3 XORs.
import assert from 'node:assert'

/** CRC-32 (IEEE 802.3, zlib's) polynomial, reflected. */
const POLY = 0xedb88320
/** x^0 in the reflected representation (the top bit). */
const X0 = 0x80000000
/** x^1. */
const X1 = 0x40000000

/** a · b modulo the polynomial (both reflected polynomials of degree < 32). */
function multModP(a: number, b: number): number {
  let m = X0
  let p = 0
  let bb = b >>> 0
  for (;;) {
    if ((a & m) !== 0) {
      p ^= bb
      if ((a & (m - 1)) === 0) break
    }
    m >>>= 1
    bb = bb & 1 ? (bb >>> 1) ^ POLY : bb >>> 1
  }
  return p >>> 0
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N = (() => {
  const table = new Uint32Array(32)
  let p = X1
  for (let k = 0; k < 32; k++) {
    table[k] = p
    p = multModP(p, p)
  }
  return table
})()

/** x^(8·bytes) modulo the polynomial: the operator that appends `bytes` zero bytes to a CRC. */
function zerosOperator(bytes: number): number {
  assert(Number.isSafeInteger(bytes) && bytes >= 0, `not a length: ${bytes}`)
  let p = X0
  // x^(8n) = x^(n·2^3): walk the bits of n from X2N[3] on
  let n = bytes
  for (let k = 3; n > 0; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 1) p = multModP(X2N[k % 32] as number, p)
  }
  return p
}

/** crc(A‖B) from crc(A), crc(B) and len(B) (any length; for whole blocks crc32ShiftBlock is faster). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(zerosOperator(lengthB), crcA >>> 0) ^ crcB) >>> 0
}

/** The 4 byte tables of the shift by `bytes` zero bytes: table k maps byte k of a CRC to its image. */
export function shiftTables(bytes: number): Uint32Array[] {
  const op = zerosOperator(bytes)
  return [0, 8, 16, 24].map((bit) => {
    const table = new Uint32Array(256)
    for (let v = 0; v < 256; v++) table[v] = multModP(op, (v << bit) >>> 0)
    return table
  })
}

/** A combiner for blocks of one fixed size: crc(A‖B) for len(B) = `blockBytes` in 4 lookups. */
export class BlockCombiner {
  private readonly t0: Uint32Array
  private readonly t1: Uint32Array
  private readonly t2: Uint32Array
  private readonly t3: Uint32Array

  constructor(readonly blockBytes: number) {
    const [t0, t1, t2, t3] = shiftTables(blockBytes)
    assert(t0 && t1 && t2 && t3)
    this.t0 = t0
    this.t1 = t1
    this.t2 = t2
    this.t3 = t3
  }

  /** crc(A‖B) where B is one whole block. */
  combine(crcA: number, crcB: number): number {
    const a = crcA >>> 0
    return (
      ((this.t0[a & 0xff] as number) ^
        (this.t1[(a >>> 8) & 0xff] as number) ^
        (this.t2[(a >>> 16) & 0xff] as number) ^
        (this.t3[a >>> 24] as number) ^
        crcB) >>>
      0
    )
  }
}
