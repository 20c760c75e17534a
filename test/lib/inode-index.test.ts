// Tests for lib/inode-index.ts, the B-tree index of hyper volumes (wire-protocol.md §12.10), over
// a map of objects in memory as its node I/O: the codec round trips, the walk at depth 1 and 2,
// lookups, the bytes an update writes (the ones VDI I/O wrote before the module existed), and
// the errors on a bad header.
import t from 'tap'
import { zeroExtended } from '../../lib/bytes.js'
import { SdError } from '../../lib/errors.js'
import {
  BTREE_HEADER_SIZE,
  BTREE_INDIRECT_ENTRY_SIZE,
  BTREE_LEAF_ENTRY_SIZE,
  BTREE_MAGIC,
  BTREE_MAX_INDIRECT_ENTRIES,
  BTREE_MAX_LEAF_ENTRIES,
  BTREE_ROOT_AT,
  BtreeIndex,
  type IndexNodeIo,
  type IndirectEntry,
  LeafEntries,
  collectIndexEntries,
  decodeBtreeHeader,
  decodeIndirectEntries,
  encodeBtreeHeader,
  encodeIndirectEntries,
  indexNodeOids,
  walkIndexLeaves,
} from '../../lib/inode-index.js'
import { SD_INODE_HEADER_SIZE } from '../../lib/inode.js'
import { oidToHex, vidToBtreeOid, vidToVdiOid } from '../../lib/oid.js'
import { SD_RES_EIO, SD_RES_NO_SUPPORT } from '../../lib/proto.js'

const VID = 0x7c2b25
const INODE = vidToVdiOid(VID)
const NODE_A = vidToBtreeOid(VID, 0)
const NODE_B = vidToBtreeOid(VID, 1)

/** Objects in memory; reads past what was written read as zeros, as objects are zero-filled. */
class Objects implements IndexNodeIo {
  readonly objects = new Map<bigint, Buffer>()
  readonly log: string[] = []
  /** Bytes cut off the end of a read, to stand for a short answer. */
  cut: (oid: bigint, offset: number) => number = () => 0
  /** The write (1-based, counted from now) that fails. */
  failingWrite = 0

  async read(oid: bigint, offset: number, length: number): Promise<Buffer> {
    this.log.push(`read ${oidToHex(oid)} @${offset} ${length}`)
    const obj = this.objects.get(oid) ?? Buffer.alloc(0)
    const bytes = zeroExtended(Buffer.from(obj.subarray(offset, offset + length)), length)
    return bytes.subarray(0, Math.max(0, length - this.cut(oid, offset)))
  }

  async write(oid: bigint, offset: number, data: Buffer): Promise<void> {
    this.log.push(`write ${oidToHex(oid)} @${offset} ${data.toString('hex')}`)
    if (--this.failingWrite === 0) throw new SdError(SD_RES_EIO, 'write failed')
    this.put(oid, offset, data)
  }

  put(oid: bigint, offset: number, data: Buffer): void {
    const obj = zeroExtended(this.objects.get(oid) ?? Buffer.alloc(0), offset + data.length)
    data.copy(obj, offset)
    this.objects.set(oid, obj)
  }

  writes(): string[] {
    return this.log.filter((line) => line.startsWith('write'))
  }
}

function leafOf(pairs: [number, number][]): LeafEntries {
  const leaf = new LeafEntries()
  for (const [idx, vid] of pairs) leaf.insert(leaf.lowerBound(idx), idx, vid)
  return leaf
}

/** A depth-1 index: the leaf entries in the inode. */
function depth1(pairs: [number, number][]): Objects {
  const io = new Objects()
  io.put(INODE, BTREE_ROOT_AT, Buffer.concat([encodeBtreeHeader(1, pairs.length), leafOf(pairs).encode()]))
  return io
}

/** A depth-2 index: node A holds idx ≤ 100, node B idx ≤ 300. */
function depth2(): Objects {
  const io = new Objects()
  const children: IndirectEntry[] = [
    { maxIdx: 100, oid: NODE_A },
    { maxIdx: 300, oid: NODE_B },
  ]
  io.put(INODE, BTREE_ROOT_AT, Buffer.concat([encodeBtreeHeader(2, children.length), encodeIndirectEntries(children)]))
  const a: [number, number][] = [
    [1, 3],
    [50, 3],
    [100, 4],
  ]
  const b: [number, number][] = [
    [150, 3],
    [300, 5],
  ]
  io.put(NODE_A, 0, Buffer.concat([encodeBtreeHeader(1, a.length), leafOf(a).encode()]))
  io.put(NODE_B, 0, Buffer.concat([encodeBtreeHeader(1, b.length), leafOf(b).encode()]))
  return io
}

const rootOf = (io: Objects) => decodeBtreeHeader(io.objects.get(INODE) ?? Buffer.alloc(BTREE_ROOT_AT + BTREE_HEADER_SIZE), BTREE_ROOT_AT)

async function lookUp(index: BtreeIndex, idx: number): Promise<number> {
  if (!index.has(idx)) await index.prepare(idx, idx)
  return index.get(idx)
}

t.test('layout: sizes, capacities and the root after the inode header', async (t) => {
  t.equal(BTREE_HEADER_SIZE, 8)
  t.equal(BTREE_LEAF_ENTRY_SIZE, 8)
  t.equal(BTREE_INDIRECT_ENTRY_SIZE, 16)
  t.equal(BTREE_MAX_LEAF_ENTRIES, 524_287)
  t.equal(BTREE_MAX_INDIRECT_ENTRIES, 262_143)
  t.equal(BTREE_ROOT_AT, SD_INODE_HEADER_SIZE)
})

t.test('header: magic 0x6274, depth, entries, little-endian; round trip', async (t) => {
  const bytes = encodeBtreeHeader(2, 0x01020304)
  t.equal(bytes.toString('hex'), '7462020004030201')
  t.same(decodeBtreeHeader(bytes), { magic: BTREE_MAGIC, depth: 2, entries: 0x01020304 })
  const inside = Buffer.concat([Buffer.alloc(5), bytes])
  t.same(decodeBtreeHeader(inside, 5), decodeBtreeHeader(bytes))
})

t.test('leaf entries: round trip, sorted insert, whole entries of a short buffer', async (t) => {
  const leaf = leafOf([
    [9, 2],
    [1, 7],
    [4, 7],
  ])
  t.same(
    [...leaf],
    [
      [1, 7],
      [4, 7],
      [9, 2],
    ],
  )
  const bytes = leaf.encode()
  t.equal(bytes.toString('hex'), '010000000700000004000000070000000900000002000000')
  t.same([...LeafEntries.decode(bytes, 3)], [...leaf])
  t.equal(leaf.encode(1).toString('hex'), '04000000070000000900000002000000', 'the tail from a position')
  t.same(
    [...LeafEntries.decode(bytes.subarray(0, 20), 3)],
    [
      [1, 7],
      [4, 7],
    ],
  )
  t.equal(LeafEntries.decode(bytes, 1).count, 1, 'no more than the count')
  t.equal(leaf.find(4), 1)
  t.equal(leaf.find(5), -1)
  t.equal(leaf.lowerBound(5), 2)
  leaf.remove(0)
  t.same(
    [...leaf],
    [
      [4, 7],
      [9, 2],
    ],
  )
  const many = new LeafEntries(2)
  for (let i = 0; i < 100; i++) many.insert(0, 100 - i, i)
  t.equal(many.count, 100, 'grows past its capacity')
  t.equal(many.idxAt(0), 1)
  t.equal(many.vidAt(99), 0)
})

t.test('indirect entries: round trip, zero padding, whole entries of a short buffer', async (t) => {
  const entries: IndirectEntry[] = [
    { maxIdx: 0x10, oid: 0x1000000700000001n },
    { maxIdx: 0xffffffff, oid: 0xffffffffffffffffn },
  ]
  const bytes = encodeIndirectEntries(entries)
  t.equal(bytes.toString('hex'), '10000000000000000100000007000010' + 'ffffffff00000000ffffffffffffffff')
  t.same(decodeIndirectEntries(bytes), entries)
  t.same(decodeIndirectEntries(bytes, 1), entries.slice(0, 1))
  t.same(decodeIndirectEntries(bytes.subarray(0, 31)), entries.slice(0, 1))
})

t.test('walk: a depth-1 root holds the leaves itself', async (t) => {
  const io = depth1([
    [4, VID],
    [0, 9],
    [7, 0],
  ])
  t.same(
    [...(await collectIndexEntries(io, INODE, rootOf(io)))],
    [
      [0, 9],
      [4, VID],
      [7, 0],
    ],
  )
  t.same(io.log, [`read ${oidToHex(INODE)} @${BTREE_ROOT_AT + 8} 24`], 'one read of the entries: the root header is passed in')
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [], 'no node objects')
})

t.test('walk: a depth-2 root points at node objects, read in order', async (t) => {
  const io = depth2()
  t.same(
    [...(await collectIndexEntries(io, INODE, rootOf(io)))],
    [
      [1, 3],
      [50, 3],
      [100, 4],
      [150, 3],
      [300, 5],
    ],
  )
  t.same(io.log, [
    `read ${oidToHex(INODE)} @${BTREE_ROOT_AT + 8} 32`,
    `read ${oidToHex(NODE_A)} @0 8`,
    `read ${oidToHex(NODE_A)} @8 24`,
    `read ${oidToHex(NODE_B)} @0 8`,
    `read ${oidToHex(NODE_B)} @8 16`,
  ])
  const leaves = []
  for await (const leaf of walkIndexLeaves(io, INODE, rootOf(io))) leaves.push(leaf.count)
  t.same(leaves, [3, 2], 'one leaf per node')
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [NODE_A, NODE_B])
})

t.test('walk: no magic (never written) or no entries is an empty index; an empty node is not read', async (t) => {
  const blank = new Objects()
  t.same([...(await collectIndexEntries(blank, INODE, rootOf(blank)))], [])
  const zero = depth1([])
  t.same([...(await collectIndexEntries(zero, INODE, rootOf(zero)))], [])
  t.same([...blank.log, ...zero.log], [], 'no request')
  const io = depth2()
  io.put(NODE_A, 0, encodeBtreeHeader(1, 0))
  t.same([...(await collectIndexEntries(io, INODE, rootOf(io))).keys()], [150, 300])
  t.notOk(
    io.log.some((line) => line.startsWith(`read ${oidToHex(NODE_A)} @8`)),
    'the empty node: its header only',
  )
})

t.test('walk: a failing read ends it with that failure', async (t) => {
  const io = depth2()
  const failing = { read: (oid: bigint, offset: number, length: number) => (oid === NODE_B ? Promise.reject(new Error('gone')) : io.read(oid, offset, length)) }
  await t.rejects(collectIndexEntries(failing, INODE, rootOf(io)), /gone/)
})

t.test('lookups at depth 1: one load of the root, then answers without a request', async (t) => {
  const io = depth1([
    [2, 5],
    [10, 6],
  ])
  const index = new BtreeIndex(io, INODE)
  t.notOk(index.has(2))
  t.equal(await lookUp(index, 2), 5)
  t.equal(await lookUp(index, 10), 6)
  t.equal(await lookUp(index, 3), 0, 'absent: unallocated')
  t.equal(io.log.length, 2, 'the root header and its entries')
})

t.test('lookups at depth 2: only the nodes a range touches are loaded', async (t) => {
  const io = depth2()
  const index = new BtreeIndex(io, INODE)
  await index.prepare(120, 200)
  t.notOk(
    io.log.some((line) => line.includes(oidToHex(NODE_A))),
    'node A not read',
  )
  t.ok(index.has(150))
  t.notOk(index.has(50), 'node A not loaded')
  t.equal(index.get(150), 3)
  t.equal(index.get(151), 0)
  t.ok(index.has(5000), 'past the last child: nothing to load')
  t.equal(index.get(5000), 0)
  t.equal(await lookUp(index, 100), 4, 'node A loaded when asked for')
  t.equal(io.log.length, 6, 'root header and pointers, then each node once (header and entries)')
})

t.test('a never-written hyper volume (index area of zeros) is empty, at depth 1', async (t) => {
  const io = new Objects()
  const index = new BtreeIndex(io, INODE)
  t.equal(await lookUp(index, 7), 0)
  t.same(io.log, [`read ${oidToHex(INODE)} @${BTREE_ROOT_AT} 8`])
})

// The bytes below are the ones lib/vdi-io.ts wrote for these updates before the B-tree moved here.
t.test('updates at depth 1: the shifted tail, then the header; an update in place is 4 bytes', async (t) => {
  const io = new Objects()
  const index = new BtreeIndex(io, INODE)
  await index.commit(3, 7)
  await index.commit(1, 7)
  await index.commit(9, 8)
  await index.commit(3, 9)
  const inode = oidToHex(INODE)
  t.same(io.writes(), [
    `write ${inode} @4672 0300000007000000`,
    `write ${inode} @4664 7462010001000000`,
    `write ${inode} @4672 01000000070000000300000007000000`,
    `write ${inode} @4664 7462010002000000`,
    `write ${inode} @4688 0900000008000000`,
    `write ${inode} @4664 7462010003000000`,
    `write ${inode} @4684 09000000`,
  ])
  const reread = new BtreeIndex(io, INODE)
  t.same([await lookUp(reread, 1), await lookUp(reread, 3), await lookUp(reread, 9)], [7, 9, 8], 'a new reader sees them')
  t.same(
    [...(await collectIndexEntries(io, INODE, rootOf(io)))],
    [
      [1, 7],
      [3, 9],
      [9, 8],
    ],
  )
})

t.test('updates at depth 2: into the child that holds the idx, past the last child its max moves up', async (t) => {
  const io = depth2()
  const index = new BtreeIndex(io, INODE)
  await index.commit(50, 8)
  await index.commit(60, 8)
  await index.commit(400, 8)
  t.same(io.writes(), [
    `write ${oidToHex(NODE_A)} @20 08000000`,
    `write ${oidToHex(NODE_A)} @24 3c000000080000006400000004000000`,
    `write ${oidToHex(NODE_A)} @0 7462010004000000`,
    `write ${oidToHex(NODE_B)} @24 9001000008000000`,
    `write ${oidToHex(NODE_B)} @0 7462010003000000`,
    `write ${oidToHex(INODE)} @4688 90010000`,
  ])
  t.equal(await lookUp(index, 400), 8)
  const reread = new BtreeIndex(io, INODE)
  t.same([await lookUp(reread, 50), await lookUp(reread, 60), await lookUp(reread, 400)], [8, 8, 8])
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [NODE_A, NODE_B])
})

t.test('a failed insert is forgotten, so the retry writes it again', async (t) => {
  const io = depth1([[2, 5]])
  const index = new BtreeIndex(io, INODE)
  io.failingWrite = 2
  await t.rejects(index.commit(4, 1), { code: SD_RES_EIO })
  t.equal(await lookUp(index, 4), 0)
  await index.commit(4, 1)
  t.same(io.writes().slice(-2), [`write ${oidToHex(INODE)} @4680 0400000001000000`, `write ${oidToHex(INODE)} @4664 7462010002000000`])
  t.equal(await lookUp(new BtreeIndex(io, INODE), 4), 1)
})

t.test('bad headers: EIO, as VDI I/O answered before', async (t) => {
  const badRoot = new Objects()
  badRoot.put(INODE, BTREE_ROOT_AT, Buffer.from('3412010001000000', 'hex'))
  await t.rejects(lookUp(new BtreeIndex(badRoot, INODE), 0), {
    constructor: SdError,
    code: SD_RES_EIO,
    message: `inode ${oidToHex(INODE)}: bad B-tree header (magic 1234, depth 1): I/O error`,
  })
  const badDepth = new Objects()
  badDepth.put(INODE, BTREE_ROOT_AT, encodeBtreeHeader(3, 1))
  await t.rejects(lookUp(new BtreeIndex(badDepth, INODE), 0), { code: SD_RES_EIO, message: /magic 6274, depth 3/ })
  const badNode = depth2()
  badNode.put(NODE_B, 0, Buffer.from('0100', 'hex'))
  await t.rejects(lookUp(new BtreeIndex(badNode, INODE), 150), {
    constructor: SdError,
    code: SD_RES_EIO,
    message: `B-tree node ${oidToHex(NODE_B)}: bad header: I/O error`,
  })
  const shortNode = depth2()
  shortNode.cut = (oid, offset) => (oid === NODE_B && offset === 0 ? 1 : 0)
  await t.rejects(lookUp(new BtreeIndex(shortNode, INODE), 150), { code: SD_RES_EIO }, 'a short node header is a bad one')
})

t.test('a short read of the root header is an empty index; of entries, the whole ones', async (t) => {
  const io = depth1([
    [2, 5],
    [10, 6],
  ])
  io.cut = (_, offset) => (offset === BTREE_ROOT_AT ? 1 : 0)
  const index = new BtreeIndex(io, INODE)
  t.equal(await lookUp(index, 2), 0, 'the header came back short')
  io.cut = (_, offset) => (offset === BTREE_ROOT_AT ? 0 : 3)
  const other = new BtreeIndex(io, INODE)
  t.same([await lookUp(other, 2), await lookUp(other, 10)], [5, 0], 'the second entry came back cut')
})

t.test('what updates cannot do: split a full node, or use a root without children', async (t) => {
  const io = new Objects()
  const full = new LeafEntries(BTREE_MAX_LEAF_ENTRIES)
  for (let i = 0; i < BTREE_MAX_LEAF_ENTRIES; i++) full.insert(i, i * 2, 1)
  io.put(INODE, BTREE_ROOT_AT, Buffer.concat([encodeBtreeHeader(1, full.count), full.encode()]))
  const index = new BtreeIndex(io, INODE)
  await index.commit(4, 9)
  t.equal(await lookUp(index, 4), 9, 'an update in place still works')
  await t.rejects(index.commit(5, 9), {
    code: SD_RES_NO_SUPPORT,
    message: `B-tree node ${oidToHex(INODE)} is full; splitting is not supported: Operation is not supported`,
  })
  const bare = new Objects()
  bare.put(INODE, BTREE_ROOT_AT, encodeBtreeHeader(2, 0))
  await t.rejects(new BtreeIndex(bare, INODE).commit(1, 1), { code: SD_RES_NO_SUPPORT })
})
