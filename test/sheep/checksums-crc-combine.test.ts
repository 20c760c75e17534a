// CRC-32 combination (sheep/store/crc32-combine.ts), which the checksum layer uses to verify a
// read with one zlib.crc32 call: crc(A‖B) computed from crc(A), crc(B) and len(B) must equal
// zlib.crc32 of the concatenation, for random lengths (0 included) and for the 4 KiB block; and
// firstBadBlock, which checks a read that way, finds exactly what a check block by block finds.
import crypto from 'node:crypto'
import zlib from 'node:zlib'
import t from 'tap'
import { BlockCombiner, crc32Combine } from '../../sheep/store/crc32-combine.js'
import { CSUM_BLOCK_BYTES, type ChecksumTable, firstBadBlock, tableOf } from '../../sheep/store/checksums.js'

const crc = (b: Uint8Array) => zlib.crc32(b) >>> 0

t.test('crc32Combine equals the CRC of the concatenation, random lengths', async (t) => {
  const lengths = [0, 1, 2, 3, 7, 255, 256, 4095, 4096, 4097, 65536, 1_000_003]
  for (let i = 0; i < 40; i++) lengths.push(crypto.randomInt(0, 20_000))
  for (const lenA of [0, 1, 13, 4096]) {
    for (const lenB of lengths) {
      const a = crypto.randomBytes(lenA)
      const b = crypto.randomBytes(lenB)
      const combined = crc32Combine(crc(a), crc(b), lenB)
      if (combined !== crc(Buffer.concat([a, b]))) t.fail(`lengths ${lenA} + ${lenB}`)
    }
  }
  t.pass('every pair matched')
})

t.test('the block combiner equals zlib over concatenated 4 KiB blocks', async (t) => {
  const combiner = new BlockCombiner(CSUM_BLOCK_BYTES)
  const blocks = 64
  const data = crypto.randomBytes(blocks * CSUM_BLOCK_BYTES)
  let acc = 0
  for (let b = 0; b < blocks; b++) {
    const block = data.subarray(b * CSUM_BLOCK_BYTES, (b + 1) * CSUM_BLOCK_BYTES)
    acc = combiner.combine(acc, crc(block))
    t.equal(acc, crc(data.subarray(0, (b + 1) * CSUM_BLOCK_BYTES)), `after block ${b}`)
  }
  t.equal(combiner.combine(0, 0x12345678), 0x12345678, 'nothing before: the block CRC itself')
  t.equal(combiner.combine(0xdeadbeef, 0), crc32Combine(0xdeadbeef, 0, CSUM_BLOCK_BYTES), 'the table equals the general shift')
  const zeros = Buffer.alloc(CSUM_BLOCK_BYTES)
  t.equal(combiner.combine(crc(zeros), crc(zeros)), crc(Buffer.alloc(2 * CSUM_BLOCK_BYTES)), 'zero blocks')
})

t.test('a block combiner of another size agrees with the general combine', async (t) => {
  for (const size of [1, 512, 1000, 65536]) {
    const combiner = new BlockCombiner(size)
    for (let i = 0; i < 20; i++) {
      const a = crypto.randomInt(0, 2 ** 32)
      const b = crypto.randomInt(0, 2 ** 32)
      if (combiner.combine(a, b) !== crc32Combine(a, b, size)) t.fail(`size ${size}: ${a} ${b}`)
    }
  }
  t.pass('all agreed')
})

/** The first bad block found one block at a time, as the layer did before the combine. */
function firstBadBlockSlow(table: ChecksumTable, data: Buffer, firstBlock: number): number {
  for (let i = 0; i * CSUM_BLOCK_BYTES < data.length; i++) {
    const b = firstBlock + i
    if (b >= table.crcs.length) break
    const start = b * CSUM_BLOCK_BYTES
    const length = Math.min(CSUM_BLOCK_BYTES, table.size - start, data.length - i * CSUM_BLOCK_BYTES)
    if (length < Math.min(CSUM_BLOCK_BYTES, table.size - start)) break
    if (crc(data.subarray(i * CSUM_BLOCK_BYTES, i * CSUM_BLOCK_BYTES + length)) !== table.crcs[b]) return b
  }
  return -1
}

t.test('firstBadBlock (one CRC over the span) finds what a per-block check finds', async (t) => {
  for (const size of [CSUM_BLOCK_BYTES, 5 * CSUM_BLOCK_BYTES, 5 * CSUM_BLOCK_BYTES + 100, 4 * 1024 * 1024 + 4664, 1]) {
    const object = crypto.randomBytes(size)
    const table = tableOf(size, 0, object)
    const blocks = table.crcs.length
    for (let round = 0; round < 30; round++) {
      const first = crypto.randomInt(0, blocks)
      // whole blocks from `first`, sometimes past the object's end (zeros there), sometimes short
      let length = crypto.randomInt(1, blocks - first + 3) * CSUM_BLOCK_BYTES
      if (round % 5 === 4) length -= crypto.randomInt(1, CSUM_BLOCK_BYTES)
      const data = Buffer.alloc(length)
      object.copy(data, 0, first * CSUM_BLOCK_BYTES, Math.min(size, first * CSUM_BLOCK_BYTES + length))
      t.equal(firstBadBlock(table, data, first), firstBadBlockSlow(table, data, first), `size ${size}, read of ${length} from block ${first}`)
      const flips = crypto.randomInt(1, 3)
      for (let f = 0; f < flips; f++) (data[crypto.randomInt(0, length)] as number) ^= 1 << crypto.randomInt(0, 8)
      t.equal(firstBadBlock(table, data, first), firstBadBlockSlow(table, data, first), `size ${size}, flipped read of ${length} from block ${first}`)
    }
  }
})
