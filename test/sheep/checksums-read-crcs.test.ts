// Reads that checksum what they read (sheep/store/crc32.ts preadCrc32Blocks, file-store.ts):
// the native read gives the same bytes as a plain read and the CRC of each block of them, for
// any offset and length, short files (zeros past the end) and subarrays of a table; it answers
// -errno rather than throw; and firstBadBlock, given those CRCs, finds exactly what a check
// block by block finds.
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'
import t from 'tap'
import { CSUM_BLOCK_BYTES, type ChecksumTable, firstBadBlock, tableOf } from '../../sheep/store/checksums.js'
import { crc32Blocks, preadCrc32Blocks } from '../../sheep/store/crc32.js'

const crc = (b: Uint8Array) => zlib.crc32(b) >>> 0

/** The CRC of each block of `data` (the last may be short), block by block with zlib. */
function blockCrcsOf(data: Uint8Array, blockBytes: number): number[] {
  const out: number[] = []
  for (let at = 0; at < data.length; at += blockBytes) out.push(crc(data.subarray(at, at + blockBytes)))
  return out
}

t.test(
  'preadCrc32Blocks reads what a plain read reads, with the CRC of each block',
  { skip: preadCrc32Blocks ? false : 'no native CRC kernel here' },
  async (t) => {
    const read = preadCrc32Blocks as NonNullable<typeof preadCrc32Blocks>
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pread-crc-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const size = 3 * 1024 * 1024 + 4664
    const content = crypto.randomBytes(size)
    const file = path.join(dir, 'object')
    fs.writeFileSync(file, content)
    const fd = fs.openSync(file, 'r')
    t.teardown(() => fs.closeSync(fd))
    const cases: Array<[number, number, number]> = [
      [0, 4096, 4096],
      [0, size, 4096],
      [4096 * 7, 1024 * 1024, 4096],
      [13, 300_001, 4096],
      [size - 100, 8192, 4096], // past the end: zeros
      [size + 5, 4096, 4096], // wholly past the end
      [0, 1024 * 1024 * 2 + 1, 1000], // pieces (1 MiB) that are not whole blocks of this size
      [4096, 1024 * 1024 * 3, 1024 * 1024 * 2], // blocks larger than a piece
    ]
    for (const [offset, length, blockBytes] of cases) {
      const buf = Buffer.alloc(length, 0xaa)
      const out = new Uint32Array(Math.ceil(length / blockBytes) + 1).fill(7)
      const n = await read(fd, buf, offset, blockBytes, out)
      const expected = Buffer.alloc(length)
      content.copy(expected, 0, Math.min(offset, size), Math.min(offset + length, size))
      t.equal(n, Math.max(0, Math.min(length, size - offset)), `${length} at ${offset}: bytes from the file`)
      t.ok(buf.equals(expected), `${length} at ${offset}: the bytes`)
      t.same([...out.subarray(0, out.length - 1)], blockCrcsOf(expected, blockBytes), `${length} at ${offset}: the CRC of each ${blockBytes} bytes`)
      t.equal(out[out.length - 1], 7, 'nothing written past the blocks')
    }
    // into a table's middle: a subarray's first element is where the first CRC goes
    const table = new Uint32Array(10).fill(1)
    await read(fd, Buffer.alloc(2 * 4096), 4096 * 3, 4096, table.subarray(3))
    t.same([...table], [1, 1, 1, ...blockCrcsOf(content.subarray(4096 * 3, 4096 * 5), 4096), 1, 1, 1, 1, 1])
    t.equal(await read(1 << 30, Buffer.alloc(4096), 0, 4096, new Uint32Array(1)), -os.constants.errno.EBADF, 'a bad descriptor: -EBADF')
    t.throws(() => read(fd, Buffer.alloc(8192), 0, 4096, new Uint32Array(1)), /too short/, 'too few CRC slots: thrown before any read')
  },
)

/** The first bad block found one block at a time by the table's definition. */
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

t.test('firstBadBlock (given the read blocks’ CRCs) finds what a per-block check finds', async (t) => {
  for (const size of [CSUM_BLOCK_BYTES, 5 * CSUM_BLOCK_BYTES, 5 * CSUM_BLOCK_BYTES + 100, 4 * 1024 * 1024 + 4664, 1]) {
    const object = crypto.randomBytes(size)
    const table = tableOf(size, 0, object)
    const blocks = table.crcs.length
    const check = (data: Buffer, first: number) => {
      const crcs = new Uint32Array(Math.ceil(data.length / CSUM_BLOCK_BYTES))
      crc32Blocks(data, CSUM_BLOCK_BYTES, crcs, 0)
      return firstBadBlock(table, data, first, crcs)
    }
    for (let round = 0; round < 30; round++) {
      const first = crypto.randomInt(0, blocks)
      // whole blocks from `first`, sometimes past the object's end (zeros there), sometimes short
      let length = crypto.randomInt(1, blocks - first + 3) * CSUM_BLOCK_BYTES
      if (round % 5 === 4) length -= crypto.randomInt(1, CSUM_BLOCK_BYTES)
      const data = Buffer.alloc(length)
      object.copy(data, 0, first * CSUM_BLOCK_BYTES, Math.min(size, first * CSUM_BLOCK_BYTES + length))
      t.equal(check(data, first), firstBadBlockSlow(table, data, first), `size ${size}, read of ${length} from block ${first}`)
      const flips = crypto.randomInt(1, 3)
      for (let f = 0; f < flips; f++) (data[crypto.randomInt(0, length)] as number) ^= 1 << crypto.randomInt(0, 8)
      t.equal(check(data, first), firstBadBlockSlow(table, data, first), `size ${size}, flipped read of ${length} from block ${first}`)
    }
  }
})
