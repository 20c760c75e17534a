// Small dense matrices over GF(2^8), row-major in a Uint8Array, and the encoding matrix of
// Sheepdog's erasure code. The construction is zfec's, as the original's lib/fec.c fec_new()
// builds it (its isa-l path feeds the same matrix to ec_init_tables, so both builds write the
// same bytes): the (d+p)×d matrix V whose row 0 is (1,0,…,0) and row r+1 column c is α^(r·c),
// multiplied on the right by the inverse of its top d×d block, so rows 0..d-1 become the
// identity (the code is systematic) and rows d..d+p-1 are the parity coefficients.
import assert from 'node:assert/strict'
import { gfInv, gfMul, gfPow } from './gf256.js'

/** A rows×cols matrix over GF(2^8). */
export interface GfMatrix {
  readonly rows: number
  readonly cols: number
  readonly cells: Uint8Array
}

export function gfMatrix(rows: number, cols: number, cells: Uint8Array = new Uint8Array(rows * cols)): GfMatrix {
  assert.equal(cells.length, rows * cols)
  return { rows, cols, cells }
}

/** Rows `from`..`to`-1 of m, as a new matrix. */
export function matrixRows(m: GfMatrix, from: number, to: number): GfMatrix {
  assert.ok(0 <= from && from <= to && to <= m.rows)
  return gfMatrix(to - from, m.cols, m.cells.slice(from * m.cols, to * m.cols))
}

/** The matrix made of the listed rows of m, in that order. */
export function pickRows(m: GfMatrix, rows: readonly number[]): GfMatrix {
  const out = gfMatrix(rows.length, m.cols)
  rows.forEach((r, i) => {
    assert.ok(r >= 0 && r < m.rows)
    out.cells.set(m.cells.subarray(r * m.cols, (r + 1) * m.cols), i * m.cols)
  })
  return out
}

export function matrixMultiply(a: GfMatrix, b: GfMatrix): GfMatrix {
  assert.equal(a.cols, b.rows)
  const out = gfMatrix(a.rows, b.cols)
  for (let r = 0; r < a.rows; r++)
    for (let c = 0; c < b.cols; c++) {
      let acc = 0
      for (let i = 0; i < a.cols; i++) acc ^= gfMul(a.cells[r * a.cols + i]!, b.cells[i * b.cols + c]!)
      out.cells[r * b.cols + c] = acc
    }
  return out
}

/**
 * The inverse of a square matrix by Gauss-Jordan elimination. Every d×d matrix made of d
 * distinct rows of an encoding matrix is invertible (the code is MDS), so a singular one is a
 * broken invariant.
 */
export function matrixInvert(m: GfMatrix): GfMatrix {
  assert.equal(m.rows, m.cols)
  const n = m.rows
  const a = m.cells.slice()
  const inv = identityMatrix(n).cells
  const swapRows = (buf: Uint8Array, r1: number, r2: number): void => {
    const tmp = buf.slice(r1 * n, (r1 + 1) * n)
    buf.copyWithin(r1 * n, r2 * n, (r2 + 1) * n)
    buf.set(tmp, r2 * n)
  }
  for (let col = 0; col < n; col++) {
    let pivot = col
    while (pivot < n && a[pivot * n + col] === 0) pivot++
    assert.ok(pivot < n, 'singular matrix')
    if (pivot !== col) {
      swapRows(a, pivot, col)
      swapRows(inv, pivot, col)
    }
    const scale = gfInv(a[col * n + col]!)
    for (let i = 0; i < n; i++) {
      a[col * n + i] = gfMul(a[col * n + i]!, scale)
      inv[col * n + i] = gfMul(inv[col * n + i]!, scale)
    }
    for (let r = 0; r < n; r++) {
      const f = a[r * n + col]!
      if (r === col || f === 0) continue
      for (let i = 0; i < n; i++) {
        a[r * n + i]! ^= gfMul(f, a[col * n + i]!)
        inv[r * n + i]! ^= gfMul(f, inv[col * n + i]!)
      }
    }
  }
  return gfMatrix(n, n, inv)
}

export function identityMatrix(n: number): GfMatrix {
  const m = gfMatrix(n, n)
  for (let i = 0; i < n; i++) m.cells[i * n + i] = 1
  return m
}

/** zfec's starting matrix: row 0 = (1,0,…,0) (the point 0), row r+1 = (α^(r·c)) for c < d. */
export function vandermondeMatrix(total: number, d: number): GfMatrix {
  const m = gfMatrix(total, d)
  m.cells[0] = 1
  for (let r = 0; r + 1 < total; r++) for (let c = 0; c < d; c++) m.cells[(r + 1) * d + c] = gfPow(r * c)
  return m
}

/** The (d+p)×d systematic encoding matrix: identity on top, parity coefficients below. */
export function encodingMatrix(d: number, p: number): GfMatrix {
  assert.ok(d >= 1 && p >= 0 && d + p <= 256)
  const v = vandermondeMatrix(d + p, d)
  const m = matrixMultiply(v, matrixInvert(matrixRows(v, 0, d)))
  // pair assertion: the top block must have become the identity
  assert.deepEqual(matrixRows(m, 0, d).cells, identityMatrix(d).cells)
  return m
}
