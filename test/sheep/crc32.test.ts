// The checksum layer's CRC-32 (sheep/store/crc32.ts, native/crc32): the native kernel must give
// zlib.crc32's value for every length, alignment and starting CRC — both of its folding loops
// (AVX-512 and SSE), whichever the CPU has — and its block form the CRC of every block; where
// the CPU has carry-less multiplication the kernel must be the one in use (built by npm ci), or
// the layer silently runs several times slower. Also: tables of writes at any offset equal the
// block-by-block reference.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import zlib from 'node:zlib'
import t from 'tap'
import { addonFile } from '../../lib/native-addon.js'
import { CSUM_BLOCK_BYTES, tableOf } from '../../sheep/store/checksums.js'
import { CRC32_KERNEL, crc32, crc32Blocks, zlibCrc32, zlibCrc32Blocks } from '../../sheep/store/crc32.js'

const ADDON = addonFile('crc32', 'sheepdog_crc32')
const cpuFlags =
  fs
    .readFileSync('/proc/cpuinfo', 'utf8')
    .match(/^flags\s*:(.*)$/m)?.[1]
    ?.split(/\s+/) ?? []

const hasPclmul = cpuFlags.includes('pclmulqdq') && process.arch === 'x64'

t.test('the native kernel is in use where the CPU has carry-less multiplication', { skip: hasPclmul ? false : 'no PCLMULQDQ here' }, async (t) => {
  t.ok(fs.existsSync(ADDON), `${ADDON} was built`)
  t.not(CRC32_KERNEL, 'zlib', `kernel: ${CRC32_KERNEL}`)
})

/** Random buffers of many lengths (around every loop's bounds), at every alignment, with starting CRCs. */
function cases(): Array<{ data: Buffer; prev: number }> {
  const lengths = [0, 1, 3, 15, 16, 17, 63, 64, 65, 127, 128, 255, 256, 257, 319, 320, 511, 512, 4095, 4096, 4097, 65536, 1_048_576 + 13]
  for (let i = 0; i < 200; i++) lengths.push(crypto.randomInt(0, 20_000))
  return lengths.map((length, i) => {
    const skew = i % 16
    return { data: crypto.randomBytes(length + skew).subarray(skew), prev: i % 3 === 0 ? 0 : crypto.randomInt(0, 2 ** 32) }
  })
}

t.test('crc32 equals zlib.crc32 for every length, alignment and starting CRC', async (t) => {
  let bad = 0
  for (const { data, prev } of cases()) if (crc32(data, prev) !== zlib.crc32(data, prev) >>> 0) bad++
  t.equal(bad, 0, `no mismatch (${CRC32_KERNEL})`)
  t.equal(zlibCrc32(Buffer.from('123456789')), 0xcbf43926, 'the check value of CRC-32')
  t.equal(crc32(Buffer.from('123456789')), 0xcbf43926, 'and the kernel')
})

t.test('the SSE folding loop, where the AVX-512 one is the default', { skip: fs.existsSync(ADDON) ? false : 'the addon was not built' }, async (t) => {
  // the choice is made when the addon loads: another process, told to leave AVX-512 aside
  const script = `
    const a = require(${JSON.stringify(ADDON)}); const zlib = require('node:zlib'); const crypto = require('node:crypto')
    let bad = 0
    for (let i = 0; i < 400; i++) {
      const n = i < 100 ? i * 7 : crypto.randomInt(0, 70000), skew = i % 16, prev = i % 2 ? crypto.randomInt(0, 2 ** 32) : 0
      const d = crypto.randomBytes(n + skew).subarray(skew)
      if (a.crc32(d, prev) !== zlib.crc32(d, prev) >>> 0) bad++
    }
    console.log(JSON.stringify({ bad, wide: a.wide, accelerated: a.accelerated }))`
  const run = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_OPTIONS: '', SHEEPDOG_CRC32_NO_AVX512: '1' }, encoding: 'utf8' })
  t.equal(run.status, 0, run.stderr)
  const got = JSON.parse(run.stdout) as { bad: number; wide: boolean; accelerated: boolean }
  t.equal(got.wide, false, 'AVX-512 left aside')
  t.equal(got.bad, 0, `no mismatch (accelerated: ${got.accelerated})`)
})

t.test('crc32Blocks: the CRC of every block, the last one short', async (t) => {
  for (const length of [0, 1, 4095, 4096, 4097, 3 * 4096, 10 * 4096 + 100, 1_048_576]) {
    const data = crypto.randomBytes(length + 3).subarray(3)
    const blocks = Math.ceil(length / CSUM_BLOCK_BYTES)
    const got = new Uint32Array(blocks + 2).fill(7)
    const want = new Uint32Array(blocks + 2).fill(7)
    crc32Blocks(data, CSUM_BLOCK_BYTES, got, 1)
    zlibCrc32Blocks(data, CSUM_BLOCK_BYTES, want, 1)
    t.same([...got], [...want], `${length} bytes, written from index 1, neighbours untouched`)
  }
  if (CRC32_KERNEL !== 'zlib') {
    t.throws(() => crc32Blocks(Buffer.alloc(8192), CSUM_BLOCK_BYTES, new Uint32Array(1), 0), /too short/, 'an out array too short is refused')
    t.throws(() => crc32Blocks(Buffer.alloc(8192), 0, new Uint32Array(4), 0), /positive/, 'a block size of 0 is refused')
  }
})

t.test('tableOf: writes at any offset give the block-by-block CRCs', async (t) => {
  const size = 64 * 1024 + 1000
  const zeros = Buffer.alloc(size)
  for (const [offset, length] of [
    [0, size],
    [0, 4096],
    [100, 9000],
    [4096, 8192],
    [5000, 10],
    [size - 3000, 3000],
    [60_000, size - 60_000],
  ] as const) {
    const data = crypto.randomBytes(length)
    const table = tableOf(size, offset, data)
    const whole = Buffer.from(zeros)
    data.copy(whole, offset)
    const want = new Uint32Array(table.crcs.length)
    zlibCrc32Blocks(whole, CSUM_BLOCK_BYTES, want, 0)
    t.same([...table.crcs], [...want], `${length} bytes at ${offset}`)
  }
})
