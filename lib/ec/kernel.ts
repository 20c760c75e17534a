// The one hot loop of erasure coding, behind an interface so a WebAssembly kernel and a plain
// TypeScript one are interchangeable (and cross-checked by the tests): apply a small GF(2^8)
// matrix to equal-length byte buffers, dst_i = Σ_j m[i][j]·src_j byte by byte. Encoding applies
// the parity rows of the encoding matrix to the data strips; decoding applies rows of an
// inverted sub-matrix to the strips at hand. The kernel also moves bytes between the object
// layout and the strips (split/join), the other per-byte work of the codec.
import assert from 'node:assert/strict'
import { GF_MUL_TABLE, GF_SIZE } from './gf256.js'
import type { GfMatrix } from './matrix.js'

export interface GfKernel {
  readonly name: string
  /** dsts[i] = Σ_j m[i][j]·srcs[j]; every buffer has the same length; dsts are overwritten. */
  apply(m: GfMatrix, srcs: readonly Uint8Array[], dsts: readonly Uint8Array[]): void
  /**
   * Object layout → strips: unit i of `object` (units of `unitBytes`) goes to strip i mod n at
   * unit ⌊i/n⌋, n = strips.length. With n·unitBytes = 512 that is Sheepdog's stripe layout.
   */
  split(object: Uint8Array, strips: readonly Uint8Array[], unitBytes: number): void
  /** The inverse of split. */
  join(strips: readonly Uint8Array[], object: Uint8Array, unitBytes: number): void
  /** split into `strips`, then apply m to them into `outs`: encoding in one pass over memory. */
  splitApply(object: Uint8Array, strips: readonly Uint8Array[], unitBytes: number, m: GfMatrix, outs: readonly Uint8Array[]): void
}

/** Asserts the shapes split and join rely on. */
export function checkLayoutArgs(object: Uint8Array, strips: readonly Uint8Array[], unitBytes: number): void {
  assert.ok(unitBytes > 0 && object.length % (unitBytes * strips.length) === 0)
  for (const s of strips) assert.equal(s.length, object.length / strips.length)
}

function moveUnits(object: Uint8Array, strips: readonly Uint8Array[], unit: number, toStrips: boolean): void {
  checkLayoutArgs(object, strips, unit)
  const n = strips.length
  for (let k = 0, at = 0; at < object.length; k++)
    for (let j = 0; j < n; j++, at += unit) {
      if (toStrips) strips[j]!.set(object.subarray(at, at + unit), k * unit)
      else object.set(strips[j]!.subarray(k * unit, (k + 1) * unit), at)
    }
}

/** Asserts the shapes every kernel relies on; returns the common buffer length. */
export function checkApplyArgs(m: GfMatrix, srcs: readonly Uint8Array[], dsts: readonly Uint8Array[]): number {
  assert.equal(srcs.length, m.cols)
  assert.equal(dsts.length, m.rows)
  const len = srcs[0]?.length ?? 0
  for (const b of [...srcs, ...dsts]) assert.equal(b.length, len)
  return len
}

/** Byte-at-a-time with the 64 KiB product table: the reference the WASM kernel is checked by. */
export const tsKernel: GfKernel = {
  name: 'typescript',
  apply(m, srcs, dsts) {
    const len = checkApplyArgs(m, srcs, dsts)
    for (let r = 0; r < m.rows; r++) {
      const dst = dsts[r]!
      dst.fill(0)
      for (let c = 0; c < m.cols; c++) {
        const coef = m.cells[r * m.cols + c]!
        if (coef === 0) continue
        const base = coef * GF_SIZE
        const src = srcs[c]!
        for (let i = 0; i < len; i++) dst[i]! ^= GF_MUL_TABLE[base + src[i]!]!
      }
    }
  },
  split: (object, strips, unit) => moveUnits(object, strips, unit, true),
  join: (strips, object, unit) => moveUnits(object, strips, unit, false),
  splitApply(object, strips, unit, m, outs) {
    this.split(object, strips, unit)
    this.apply(m, strips, outs)
  },
}
