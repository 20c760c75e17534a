// Sheepdog's erasure code on whole buffers: an object (or any run of whole stripes of it) ↔
// its D data strips and P parity strips, laid out as the original's gateway lays them out
// (sheep/gateway.c, wire-protocol.md §11.4). The object is cut into 512-byte stripes; stripe k
// is split into D strips of 512/D bytes, and strip j of stripe k lands at offset k·512/D of
// strip j's buffer. Parity strip d+i holds Σ_j enc[d+i][j]·strip_j for every byte position, so
// the code can run on whole strip buffers at once. Decoding takes any D strips with their
// indexes; rebuilding recomputes one named strip (data or parity) from any D others.
import assert from 'node:assert/strict'
import { SD_EC_MAX_STRIP, SD_MAX_COPIES } from '../proto.js'
import { type GfKernel, tsKernel } from './kernel.js'
import { wasmKernel } from './kernel-wasm.js'
import { encodingMatrix, type GfMatrix, matrixInvert, matrixMultiply, matrixRows, pickRows } from './matrix.js'

/** The stripe unit: one sector, "to make VMs happy" (SD_EC_DATA_STRIPE_SIZE). */
export const SD_EC_DATA_STRIPE_SIZE = 512
/** The data strip counts dog accepts (parse_copy in the original's dog/common.c). */
export const EC_DATA_STRIP_COUNTS: readonly number[] = [2, 4, 8, 16]
/** Parity strips: at least one, fewer than SD_EC_MAX_STRIP (it must fit in 4 bits). */
export const EC_MIN_PARITY_STRIPS = 1
export const EC_MAX_PARITY_STRIPS = SD_EC_MAX_STRIP - 1

// The largest policy, 16:15, is exactly the most copies an object may have.
assert.equal(Math.max(...EC_DATA_STRIP_COUNTS) + EC_MAX_PARITY_STRIPS, SD_MAX_COPIES)

export interface EcPolicy {
  /** Data strips D. */
  readonly d: number
  /** Parity strips P. */
  readonly p: number
}

export function isValidEcPolicy({ d, p }: EcPolicy): boolean {
  return EC_DATA_STRIP_COUNTS.includes(d) && Number.isInteger(p) && p >= EC_MIN_PARITY_STRIPS && p <= EC_MAX_PARITY_STRIPS
}

/** The copy_policy byte of a policy: D/2 in the high nibble (16 would not fit), P in the low. */
export function ecCopyPolicy(policy: EcPolicy): number {
  assert.ok(isValidEcPolicy(policy))
  return ((policy.d / 2) << 4) | policy.p
}

/** The policy a non-zero copy_policy byte stands for (ec_policy_to_dp in include/fec.h). */
export function ecPolicyOf(copyPolicy: number): EcPolicy {
  const policy = { d: (copyPolicy >> 4) * 2, p: copyPolicy & 0x0f }
  assert.ok(isValidEcPolicy(policy), `invalid copy policy ${copyPolicy}`)
  return policy
}

/** The kernel in use: WebAssembly SIMD where the runtime has it. */
export const defaultKernel: GfKernel = wasmKernel ?? tsKernel

export class ErasureCoder {
  readonly d: number
  readonly p: number
  /** Bytes of one strip per stripe: 512 / D. */
  readonly stripUnitBytes: number
  /** The (D+P)×D encoding matrix. */
  readonly matrix: GfMatrix
  private readonly parityRows: GfMatrix
  /** Reused room for strips decode rebuilds on the way to the object (fresh buffers cost as much as the arithmetic). */
  private scratch = new Uint8Array(0)

  constructor(
    policy: EcPolicy,
    private readonly kernel: GfKernel = defaultKernel,
  ) {
    assert.ok(isValidEcPolicy(policy), `invalid erasure code ${policy.d}:${policy.p}`)
    this.d = policy.d
    this.p = policy.p
    this.stripUnitBytes = SD_EC_DATA_STRIPE_SIZE / this.d
    this.matrix = encodingMatrix(this.d, this.p)
    this.parityRows = matrixRows(this.matrix, this.d, this.d + this.p)
  }

  /** All strips: D + P. */
  get total(): number {
    return this.d + this.p
  }

  /** The length of each strip of `dataBytes` bytes of object data. */
  stripBytes(dataBytes: number): number {
    assert.ok(dataBytes % SD_EC_DATA_STRIPE_SIZE === 0, 'erasure coding works on whole stripes')
    return dataBytes / this.d
  }

  /**
   * Object bytes (whole stripes) → D+P strips, data strips first: views of one new buffer, or
   * the caller's D+P buffers of object/D bytes each.
   */
  encode(data: Uint8Array, into?: readonly Uint8Array[]): readonly Uint8Array[] {
    const stripLen = this.stripBytes(data.length)
    // one allocation for all strips, each a view of it, unless the caller brings its buffers
    const block = into ? undefined : new Uint8Array(stripLen * this.total)
    const strips = into ? [...into] : Array.from({ length: this.total }, (_, i) => block!.subarray(i * stripLen, (i + 1) * stripLen))
    assert.equal(strips.length, this.total)
    this.kernel.splitApply(data, strips.slice(0, this.d), this.stripUnitBytes, this.parityRows, strips.slice(this.d))
    return strips
  }

  /** Any D (or more) strips by index → the object bytes (into `into` when given). */
  decode(strips: ReadonlyMap<number, Uint8Array>, into?: Uint8Array): Uint8Array {
    const data: (Uint8Array | undefined)[] = Array.from({ length: this.d }, (_, j) => strips.get(j))
    const missing = data.flatMap((s, j) => (s ? [] : [j]))
    if (missing.length > 0) {
      const stripLen = strips.values().next().value!.length
      const rebuilt = this.solve(strips, missing, this.scratchStrips(missing.length, stripLen))
      missing.forEach((j, i) => {
        data[j] = rebuilt[i]
      })
    }
    const out = into ?? new Uint8Array(data[0]!.length * this.d)
    this.kernel.join(data as Uint8Array[], out, this.stripUnitBytes)
    return out
  }

  /** Recomputes strip `index` (data or parity) from any D other strips. */
  rebuild(strips: ReadonlyMap<number, Uint8Array>, index: number, into?: Uint8Array): Uint8Array {
    assert.ok(index >= 0 && index < this.total)
    return this.solve(strips, [index], into && [into])[0]!
  }

  /**
   * Strips `wanted` from the first D available strips in index order (the original also takes
   * them in numeric order): with B the encoding rows of those strips, data = B⁻¹·available, so
   * strip w = enc[w]·B⁻¹·available.
   */
  private solve(strips: ReadonlyMap<number, Uint8Array>, wanted: readonly number[], into?: readonly Uint8Array[]): readonly Uint8Array[] {
    const have = [...strips.keys()]
      .filter((i) => i >= 0 && i < this.total)
      .sort((a, b) => a - b)
      .slice(0, this.d)
    assert.equal(have.length, this.d, `need ${this.d} strips to decode, have ${have.length}`)
    const inputs = have.map((i) => strips.get(i)!)
    const inverse = matrixInvert(pickRows(this.matrix, have))
    const rows = matrixMultiply(pickRows(this.matrix, wanted), inverse)
    const outs = into ?? wanted.map(() => new Uint8Array(inputs[0]!.length))
    this.kernel.apply(rows, inputs, outs)
    return outs
  }

  /** n strip buffers of len bytes in the reused scratch room; valid until the next call. */
  private scratchStrips(n: number, len: number): Uint8Array[] {
    if (this.scratch.length < n * len) this.scratch = new Uint8Array(n * len)
    return Array.from({ length: n }, (_, i) => this.scratch.subarray(i * len, (i + 1) * len))
  }
}

/** One coder per policy on the default kernel, built on first use (its matrix is reused). */
const coders = new Map<number, ErasureCoder>()

export function erasureCoder(policy: EcPolicy): ErasureCoder {
  const key = ecCopyPolicy(policy)
  let coder = coders.get(key)
  if (!coder) {
    coder = new ErasureCoder(policy)
    coders.set(key, coder)
  }
  return coder
}
