// The erasure-code kernel alone, in memory: encode, decode and one-strip rebuild MB/s for 4:2
// and 8:3 over 4 MiB objects, next to a plain Buffer copy of the same bytes measured in the same
// run (the ceiling), with the WASM SIMD kernel and the TypeScript fallback. Data MB/s counts
// object bytes (what a VM writes), not strip bytes. Run with `npm run bench -- ec`.
import crypto from 'node:crypto'
import { ErasureCoder, type EcPolicy } from '../lib/ec/codec.js'
import { type GfKernel, tsKernel } from '../lib/ec/kernel.js'
import { wasmKernel } from '../lib/ec/kernel-wasm.js'

const MiB = 1024 * 1024
/** Sheepdog's default object size (block_size_shift 22). */
const OBJECT_BYTES = 4 * MiB
/** Each measure runs at least this long, so timer noise stays small. */
const MIN_MEASURE_MS = 1000
/** Untimed rounds first, so the JIT and the WASM memory have settled. */
const WARMUP_ROUNDS = 2
const POLICIES: readonly EcPolicy[] = [
  { d: 4, p: 2 },
  { d: 8, p: 3 },
]

/** MB/s of `fn`, which handles `bytes` per call. */
function rate(bytes: number, fn: () => void): number {
  for (let i = 0; i < WARMUP_ROUNDS; i++) fn()
  let rounds = 0
  const start = process.hrtime.bigint()
  let elapsedMs = 0
  while (elapsedMs < MIN_MEASURE_MS) {
    fn()
    rounds++
    elapsedMs = Number(process.hrtime.bigint() - start) / 1e6
  }
  return (bytes * rounds) / MiB / (elapsedMs / 1000)
}

function row(name: string, mbps: number, copyMbps: number): void {
  console.log(`${name.padEnd(44)}${mbps.toFixed(0).padStart(10)} MB/s${(mbps / copyMbps).toFixed(2).padStart(10)}`)
}

function benchPolicy(policy: EcPolicy, kernel: GfKernel, data: Uint8Array, copyMbps: number): void {
  const coder = new ErasureCoder(policy, kernel)
  const strips = coder.encode(data)
  const tag = `${policy.d}:${policy.p} ${kernel.name}`
  // outputs are reused, as a gateway with a buffer pool would; a fresh 4 MiB buffer per call
  // costs about as much as the arithmetic (the "new buffers" row shows how much)
  const stripsOut = coder.encode(data)
  const objectOut = new Uint8Array(data.length)
  const stripOut = new Uint8Array(strips[0]!.length)
  const all = new Map(strips.map((s, i) => [i, s] as const))
  // the worst case: P data strips lost, so P of D strips come from parity
  const degraded = new Map([...all].filter(([i]) => i >= policy.p))
  const measures: [string, () => unknown][] = [
    ['encode', () => coder.encode(data, stripsOut)],
    ['encode, new buffers', () => coder.encode(data)],
    ['decode, all data strips', () => coder.decode(all, objectOut)],
    [`decode, ${policy.p} data strips lost`, () => coder.decode(degraded, objectOut)],
    ['rebuild strip 0 (per object byte)', () => coder.rebuild(degraded, 0, stripOut)],
  ]
  for (const [what, fn] of measures) row(`${tag} ${what}`, rate(data.length, fn), copyMbps)
}

export function runEcBench(): void {
  const data = new Uint8Array(crypto.randomBytes(OBJECT_BYTES))
  const target = Buffer.allocUnsafe(OBJECT_BYTES)
  const copyMbps = rate(OBJECT_BYTES, () => target.set(data))
  console.log(`ec bench: ${OBJECT_BYTES / MiB} MiB objects, ratios against a Buffer copy of the same bytes`)
  console.log(`${'measure'.padEnd(44)}${'rate'.padStart(15)}${'vs copy'.padStart(10)}`)
  row('Buffer copy', copyMbps, copyMbps)
  for (const kernel of [wasmKernel, tsKernel]) {
    if (!kernel) {
      console.log('(no WebAssembly SIMD in this runtime)')
      continue
    }
    for (const policy of POLICIES) benchPolicy(policy, kernel, data, copyMbps)
  }
}
