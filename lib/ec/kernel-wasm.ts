// The GF(2^8) kernel as WebAssembly SIMD, with no native build step: the module's bytes are
// assembled here at load and compiled synchronously. Each coefficient c is two 16-byte tables,
// c·x and c·(x<<4) for x < 16; a product of 16 source bytes is then two i8x16.swizzle lookups
// (low and high nibble) XORed together, the split-table method of isa-l's SIMD kernels.
// Buffers are copied into the module's own memory, processed there and copied out; lengths are
// padded to a whole unrolled step, whose extra bytes are never copied back.
import assert from 'node:assert/strict'
import { gfMul } from './gf256.js'
import { checkApplyArgs, checkLayoutArgs, type GfKernel, tsKernel } from './kernel.js'
import type { GfMatrix } from './matrix.js'

/** Bytes per SIMD vector. */
const VECTOR_BYTES = 16
/** Vectors handled per loop iteration (the loop body is emitted this many times). */
const UNROLL = 4
/** Bytes per loop iteration: every buffer in module memory is padded to a multiple of this. */
const STEP_BYTES = VECTOR_BYTES * UNROLL
/** Bytes of nibble tables per coefficient: 16 low-nibble products, 16 high-nibble products. */
const TABLE_BYTES = 32
const WASM_PAGE_BYTES = 65536

// --- a minimal assembler: just the opcodes the kernel uses ---
const OP = {
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Sub: 0x6b,
  simd: 0xfd,
} as const
/** Sub-opcodes after the 0xFD prefix (WebAssembly SIMD, final numbering). */
const SIMD = { v128Load: 0x00, v128Store: 0x0b, i8x16Swizzle: 0x0e, i8x16Splat: 0x0f, v128And: 0x4e, v128Xor: 0x51, i8x16ShrU: 0x6d } as const
const TYPE = { i32: 0x7f, v128: 0x7b, func: 0x60, emptyBlock: 0x40 } as const
/** log2 of the natural alignment of a v128 access, the largest alignment hint allowed. */
const V128_ALIGN_LOG2 = 4

function uleb(n: number): number[] {
  assert.ok(Number.isInteger(n) && n >= 0)
  const out: number[] = []
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

function sleb(n: number): number[] {
  assert.ok(Number.isInteger(n))
  const out: number[] = []
  for (;;) {
    const byte = n & 0x7f
    n >>= 7
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()]
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body]
}

function name(s: string): number[] {
  return vec([...s].map((ch) => [ch.charCodeAt(0)]))
}

const simd = (op: number, ...imm: number[]): number[] => [OP.simd, ...uleb(op), ...imm]
const memarg = (offset: number): number[] => [...uleb(V128_ALIGN_LOG2), ...uleb(offset)]
const get = (i: number): number[] => [OP.localGet, ...uleb(i)]
const set = (i: number): number[] => [OP.localSet, ...uleb(i)]

// copy_strided(src, srcStride, dst, dstStride, unit, count): `count` times, copy `unit` bytes
// (a multiple of 16) from src to dst, then step each by its stride. Both split and join of the
// stripe layout are this with the strides swapped.
const C_SRC = 0
const C_SRC_STRIDE = 1
const C_DST = 2
const C_DST_STRIDE = 3
const C_UNIT = 4
const C_COUNT = 5
const C_I = 6

function copyStridedBody(): number[] {
  const step = (p: number, by: number[]): number[] => [...get(p), ...by, OP.i32Add, ...set(p)]
  const code: number[] = [
    OP.block,
    TYPE.emptyBlock,
    OP.loop,
    TYPE.emptyBlock,
    ...get(C_COUNT),
    OP.i32Eqz,
    OP.brIf,
    ...uleb(1),
    OP.i32Const,
    ...sleb(0),
    ...set(C_I),
    OP.block,
    TYPE.emptyBlock,
    OP.loop,
    TYPE.emptyBlock,
    ...get(C_I),
    ...get(C_UNIT),
    OP.i32GeU,
    OP.brIf,
    ...uleb(1),
    ...get(C_DST),
    ...get(C_I),
    OP.i32Add,
    ...get(C_SRC),
    ...get(C_I),
    OP.i32Add,
    ...simd(SIMD.v128Load, ...memarg(0)),
    ...simd(SIMD.v128Store, ...memarg(0)),
    ...step(C_I, [OP.i32Const, ...sleb(VECTOR_BYTES)]),
    OP.br,
    ...uleb(0),
    OP.end,
    OP.end,
    ...step(C_SRC, get(C_SRC_STRIDE)),
    ...step(C_DST, get(C_DST_STRIDE)),
    ...get(C_COUNT),
    OP.i32Const,
    ...sleb(1),
    OP.i32Sub,
    ...set(C_COUNT),
    OP.br,
    ...uleb(0),
    OP.end,
    OP.end,
    OP.end,
  ]
  const body = [...vec([[...uleb(1), TYPE.i32]]), ...code]
  return [...uleb(body.length), ...body]
}

// dot(tables, srcs, count, stride, dst, len): dst = Σ_j c_j·src_j for the `count` sources at
// srcs + j·stride, coefficient j's nibble tables at tables + 32·j; len and stride are multiples
// of STEP_BYTES. One pass over the sources with the sums in registers, instead of a
// read-modify-write of dst per source.
const D_TABLES = 0
const D_SRCS = 1
const D_COUNT = 2
const D_STRIDE = 3
const D_DST = 4
const D_LEN = 5
const D_I = 6
const D_J = 7
const D_TP = 8
const D_SP = 9
const D_LO = 10
const D_HI = 11
const D_MASK = 12
const D_V = 13
const D_ACC = 14 // UNROLL accumulators from here

function dotBody(): number[] {
  const step = (p: number, by: number[]): number[] => [...get(p), ...by, OP.i32Add, ...set(p)]
  const zero = [OP.i32Const, ...sleb(0), ...simd(SIMD.i8x16Splat)]
  const code: number[] = [OP.i32Const, ...sleb(0x0f), ...simd(SIMD.i8x16Splat), ...set(D_MASK)]
  code.push(OP.block, TYPE.emptyBlock, OP.loop, TYPE.emptyBlock)
  code.push(...get(D_I), ...get(D_LEN), OP.i32GeU, OP.brIf, ...uleb(1))
  for (let k = 0; k < UNROLL; k++) code.push(...zero, ...set(D_ACC + k))
  code.push(...get(D_COUNT), ...set(D_J), ...get(D_TABLES), ...set(D_TP))
  code.push(...get(D_SRCS), ...get(D_I), OP.i32Add, ...set(D_SP))
  code.push(OP.block, TYPE.emptyBlock, OP.loop, TYPE.emptyBlock)
  code.push(...get(D_J), OP.i32Eqz, OP.brIf, ...uleb(1))
  code.push(...get(D_TP), ...simd(SIMD.v128Load, ...memarg(0)), ...set(D_LO))
  code.push(...get(D_TP), ...simd(SIMD.v128Load, ...memarg(VECTOR_BYTES)), ...set(D_HI))
  for (let k = 0; k < UNROLL; k++)
    code.push(
      ...get(D_ACC + k),
      ...get(D_LO),
      ...get(D_SP),
      ...simd(SIMD.v128Load, ...memarg(k * VECTOR_BYTES)),
      OP.localTee,
      ...uleb(D_V),
      ...get(D_MASK),
      ...simd(SIMD.v128And),
      ...simd(SIMD.i8x16Swizzle),
      ...get(D_HI),
      ...get(D_V),
      OP.i32Const,
      ...sleb(4),
      ...simd(SIMD.i8x16ShrU),
      ...simd(SIMD.i8x16Swizzle),
      ...simd(SIMD.v128Xor),
      ...simd(SIMD.v128Xor),
      ...set(D_ACC + k),
    )
  code.push(...step(D_TP, [OP.i32Const, ...sleb(TABLE_BYTES)]), ...step(D_SP, get(D_STRIDE)))
  code.push(...get(D_J), OP.i32Const, ...sleb(1), OP.i32Sub, ...set(D_J))
  code.push(OP.br, ...uleb(0), OP.end, OP.end)
  for (let k = 0; k < UNROLL; k++) code.push(...get(D_DST), ...get(D_I), OP.i32Add, ...get(D_ACC + k), ...simd(SIMD.v128Store, ...memarg(k * VECTOR_BYTES)))
  code.push(...step(D_I, [OP.i32Const, ...sleb(STEP_BYTES)]))
  code.push(OP.br, ...uleb(0), OP.end, OP.end, OP.end)
  const body = [
    ...vec([
      [...uleb(4), TYPE.i32],
      [...uleb(4 + UNROLL), TYPE.v128],
    ]),
    ...code,
  ]
  return [...uleb(body.length), ...body]
}

/**
 * The module: one memory (exported), `copy_strided` and `dot`, both of type (i32 ×6) → ().
 */
export function kernelModuleBytes(): Uint8Array<ArrayBuffer> {
  const funcType = (params: number): number[] => [TYPE.func, ...vec(Array.from({ length: params }, () => [TYPE.i32])), ...vec([])]
  const EXPORT_FUNC = 0x00
  const EXPORT_MEMORY = 0x02
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec([funcType(6)])),
    ...section(3, vec([uleb(0), uleb(0)])),
    ...section(5, vec([[0x00, ...uleb(1)]])),
    ...section(
      7,
      vec([
        [...name('memory'), EXPORT_MEMORY, ...uleb(0)],
        [...name('copy_strided'), EXPORT_FUNC, ...uleb(0)],
        [...name('dot'), EXPORT_FUNC, ...uleb(1)],
      ]),
    ),
    ...section(10, vec([copyStridedBody(), dotBody()])),
  ])
}

interface KernelExports {
  memory: WebAssembly.Memory
  dot: (tables: number, srcs: number, count: number, stride: number, dst: number, len: number) => void
  copy_strided: (src: number, srcStride: number, dst: number, dstStride: number, unit: number, count: number) => void
}

function padded(len: number): number {
  return Math.ceil(len / STEP_BYTES) * STEP_BYTES
}

/** The two nibble tables of coefficient c, at `at` in memory. */
function writeTables(mem: Uint8Array, at: number, c: number): void {
  for (let x = 0; x < 16; x++) {
    mem[at + x] = gfMul(c, x)
    mem[at + 16 + x] = gfMul(c, x << 4)
  }
}

function makeKernel(ex: KernelExports): GfKernel {
  /** Module memory of at least `need` bytes (growing it detaches earlier views). */
  const memory = (need: number): Uint8Array => {
    const have = ex.memory.buffer.byteLength
    if (need > have) ex.memory.grow(Math.ceil((need - have) / WASM_PAGE_BYTES))
    return new Uint8Array(ex.memory.buffer)
  }
  /** Object at 0, strips after it; each strip j copied unit by unit in the direction asked. */
  const moveUnits = (object: Uint8Array, strips: readonly Uint8Array[], unit: number, toStrips: boolean): void => {
    checkLayoutArgs(object, strips, unit)
    if (unit % VECTOR_BYTES !== 0) {
      if (toStrips) tsKernel.split(object, strips, unit)
      else tsKernel.join(strips, object, unit)
      return
    }
    const n = strips.length
    const stripLen = object.length / n
    const stripsAt = padded(object.length)
    const mem = memory(stripsAt + n * stripLen)
    if (toStrips) mem.set(object, 0)
    for (let j = 0; j < n; j++) {
      const at = stripsAt + j * stripLen
      if (toStrips) {
        ex.copy_strided(j * unit, n * unit, at, unit, unit, stripLen / unit)
        strips[j]!.set(mem.subarray(at, at + stripLen))
      } else {
        mem.set(strips[j]!, at)
        ex.copy_strided(at, unit, j * unit, n * unit, unit, stripLen / unit)
      }
    }
    if (!toStrips) object.set(mem.subarray(0, object.length))
  }
  /** m·(the srcs already at srcAt, `stride` apart) into outs; tables and results after them. */
  const applyInMemory = (m: GfMatrix, srcAt: number, stride: number, outs: readonly Uint8Array[], len: number): void => {
    const tablesAt = padded(srcAt + stride * m.cols)
    const dstAt = tablesAt + padded(m.cells.length * TABLE_BYTES)
    const mem = memory(dstAt + stride * m.rows)
    for (let i = 0; i < m.cells.length; i++) writeTables(mem, tablesAt + i * TABLE_BYTES, m.cells[i]!)
    for (let r = 0; r < m.rows; r++) {
      const dst = dstAt + r * stride
      ex.dot(tablesAt + r * m.cols * TABLE_BYTES, srcAt, m.cols, stride, dst, stride)
      outs[r]!.set(mem.subarray(dst, dst + len))
    }
  }
  return {
    name: 'wasm-simd',
    apply(m: GfMatrix, srcs: readonly Uint8Array[], dsts: readonly Uint8Array[]): void {
      const len = checkApplyArgs(m, srcs, dsts)
      if (len === 0) return
      const stride = padded(len)
      const mem = memory(stride * m.cols)
      for (let j = 0; j < srcs.length; j++) mem.set(srcs[j]!, j * stride)
      applyInMemory(m, 0, stride, dsts, len)
    },
    split: (object, strips, unit) => moveUnits(object, strips, unit, true),
    join: (strips, object, unit) => moveUnits(object, strips, unit, false),
    splitApply(object, strips, unit, m, outs) {
      // the strips split in module memory stay there as the sources of the matrix
      this.split(object, strips, unit)
      const len = strips[0]?.length ?? 0
      if (len === 0 || unit % VECTOR_BYTES !== 0 || len % STEP_BYTES !== 0) {
        this.apply(m, strips, outs)
        return
      }
      checkApplyArgs(m, strips, outs)
      applyInMemory(m, padded(object.length), len, outs, len)
    },
  }
}

/** The WASM kernel, or undefined where this runtime has no WebAssembly SIMD. */
export const wasmKernel: GfKernel | undefined = (() => {
  const bytes = kernelModuleBytes()
  if (!WebAssembly.validate(bytes)) return undefined
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {})
  return makeKernel(instance.exports as unknown as KernelExports)
})()
