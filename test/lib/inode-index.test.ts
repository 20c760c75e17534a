// Tests for lib/inode-index.ts, the B-tree index of hyper volumes (wire-protocol.md §12.10), over
// a map of objects in memory as its node I/O: the codec round trips, the walk at depth 1 and 2,
// lookups, the bytes an update writes, the tree growing as the original's lib/sd_inode.c grows it
// (a full root split into two node objects, a new node past a full last one, a full node split
// in half) with the bytes and oids that code leaves, and the errors on a bad header. Full nodes
// are built in memory (524 287 entries each) rather than by as many commits.
import t from 'tap'
import { zeroExtended } from '../../lib/bytes.js'
import { SdError } from '../../lib/errors.js'
import {
  BTREE_COUNTER_AT,
  BTREE_HEADER_SIZE,
  BTREE_INDIRECT_ENTRY_SIZE,
  BTREE_LEAF_ENTRY_SIZE,
  BTREE_MAGIC,
  BTREE_MAX_INDIRECT_ENTRIES,
  BTREE_MAX_LEAF_ENTRIES,
  BTREE_ROOT_AT,
  BTREE_ROOT_WRITE_AT,
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
import { SD_INODE_DATA_INDEX_SIZE, oidToHex, vidToBtreeOid, vidToVdiOid } from '../../lib/oid.js'
import { SD_RES_EIO } from '../../lib/proto.js'

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
    this.log.push(`write ${oidToHex(oid)} @${offset} ${data.length > 64 ? `${data.length} bytes` : data.toString('hex')}`)
    // a write starting inside data_vdi_id is an index update to a sheep: it drops references
    if (oid === INODE && offset >= BTREE_ROOT_AT) throw new Error(`write of the inode at ${offset}, inside the index area`)
    if (--this.failingWrite === 0) throw new SdError(SD_RES_EIO, 'write failed')
    if (oid !== INODE && !this.objects.has(oid)) throw new SdError(SD_RES_EIO, `write of missing ${oidToHex(oid)}`)
    this.put(oid, offset, data)
  }

  async create(oid: bigint, data: Buffer): Promise<void> {
    this.log.push(`create ${oidToHex(oid)} ${data.length} bytes`)
    if (--this.failingWrite === 0) throw new SdError(SD_RES_EIO, 'create failed')
    this.objects.set(oid, Buffer.alloc(SD_INODE_DATA_INDEX_SIZE))
    this.put(oid, 0, data)
  }

  put(oid: bigint, offset: number, data: Buffer): void {
    const obj = zeroExtended(this.objects.get(oid) ?? Buffer.alloc(0), offset + data.length)
    data.copy(obj, offset)
    this.objects.set(oid, obj)
  }

  writes(): string[] {
    return this.log.filter((line) => line.startsWith('write') || line.startsWith('create'))
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
  t.same(io.log, [`read ${oidToHex(INODE)} @${BTREE_ROOT_WRITE_AT} 16`], 'the root header, with the header bytes before it')
})

const LEAD = '0000000000000000'

t.test('updates at depth 1: the root is rewritten from just before it, up to the last entry that changed', async (t) => {
  const io = new Objects()
  const index = new BtreeIndex(io, INODE)
  await index.commit(3, 7)
  await index.commit(1, 7)
  await index.commit(9, 8)
  await index.commit(3, 9)
  const inode = oidToHex(INODE)
  t.equal(BTREE_ROOT_WRITE_AT, SD_INODE_HEADER_SIZE - 8, 'not inside data_vdi_id: a sheep would take it for an index update')
  t.same(io.writes(), [
    `write ${inode} @4656 ${LEAD}7462010001000000` + '0300000007000000',
    `write ${inode} @4656 ${LEAD}7462010002000000` + '0100000007000000' + '0300000007000000',
    `write ${inode} @4656 ${LEAD}7462010003000000` + '0100000007000000' + '0300000007000000' + '0900000008000000',
    `write ${inode} @4656 ${LEAD}7462010003000000` + '0100000007000000' + '0300000009000000',
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

t.test('the header bytes before the root are written back as they were read', async (t) => {
  const io = depth1([[2, 5]])
  io.put(INODE, BTREE_ROOT_WRITE_AT, Buffer.from('0102030405060708', 'hex'))
  await new BtreeIndex(io, INODE).commit(4, 1)
  t.same(io.writes(), [`write ${oidToHex(INODE)} @4656 01020304050607087462010002000000` + '0200000005000000' + '0400000001000000'])
})

t.test('updates at depth 2: into the child that holds the idx, past the last child its max moves up', async (t) => {
  const io = depth2()
  const index = new BtreeIndex(io, INODE)
  await index.commit(50, 8)
  await index.commit(60, 8)
  await index.commit(400, 8)
  const root = Buffer.concat([
    Buffer.alloc(8),
    encodeBtreeHeader(2, 2),
    encodeIndirectEntries([
      { maxIdx: 100, oid: NODE_A },
      { maxIdx: 400, oid: NODE_B },
    ]),
  ])
  t.same(io.writes(), [
    `write ${oidToHex(NODE_A)} @20 08000000`,
    `write ${oidToHex(NODE_A)} @24 3c000000080000006400000004000000`,
    `write ${oidToHex(NODE_A)} @0 7462010004000000`,
    `write ${oidToHex(NODE_B)} @24 9001000008000000`,
    `write ${oidToHex(NODE_B)} @0 7462010003000000`,
    `write ${oidToHex(INODE)} @4656 ${root.toString('hex')}`,
  ])
  t.equal(await lookUp(index, 400), 8)
  const reread = new BtreeIndex(io, INODE)
  t.same([await lookUp(reread, 50), await lookUp(reread, 60), await lookUp(reread, 400)], [8, 8, 8])
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [NODE_A, NODE_B])
})

t.test('a failed insert is forgotten, so the retry writes it again', async (t) => {
  const io = depth1([[2, 5]])
  const index = new BtreeIndex(io, INODE)
  io.failingWrite = 1
  await t.rejects(index.commit(4, 1), { code: SD_RES_EIO })
  t.equal(await lookUp(index, 4), 0)
  await index.commit(4, 1)
  t.same(io.writes().slice(-1), [`write ${oidToHex(INODE)} @4656 ${LEAD}7462010002000000` + '0200000005000000' + '0400000001000000'])
  t.equal(await lookUp(new BtreeIndex(io, INODE), 4), 1)
  io.failingWrite = 1
  await t.rejects(index.commit(4, 6), { code: SD_RES_EIO })
  t.equal(await lookUp(index, 4), 1, 'a failed update in place keeps the old vid')
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
  const failing = depth2()
  const index = new BtreeIndex(failing, INODE)
  failing.cut = (oid) => (oid === NODE_B ? 8 : 0)
  await t.rejects(lookUp(index, 150), { code: SD_RES_EIO })
  failing.cut = () => 0
  t.equal(await lookUp(index, 150), 3, 'a failed load is tried again')
})

t.test('a short read of the root header is an empty index; of entries, the whole ones', async (t) => {
  const io = depth1([
    [2, 5],
    [10, 6],
  ])
  io.cut = (_, offset) => (offset === BTREE_ROOT_WRITE_AT ? 1 : 0)
  const index = new BtreeIndex(io, INODE)
  t.equal(await lookUp(index, 2), 0, 'the header came back short')
  io.cut = (_, offset) => (offset === BTREE_ROOT_WRITE_AT ? 0 : 3)
  const other = new BtreeIndex(io, INODE)
  t.same([await lookUp(other, 2), await lookUp(other, 10)], [5, 0], 'the second entry came back cut')
})

// ---- growing the tree --------------------------------------------------------------------------

/** `count` entries idx = 2·(from + i) → vid: the odd idxs fall between them. */
function evenLeaf(count: number, vid: number, from = 0): LeafEntries {
  const leaf = new LeafEntries(count)
  for (let i = 0; i < count; i++) leaf.insert(i, 2 * (from + i), vid)
  return leaf
}

/** A 4 MiB node object as sd_inode.c writes one: header, entries, zeros. */
function nodeObject(leaf: LeafEntries): Buffer {
  const obj = Buffer.alloc(SD_INODE_DATA_INDEX_SIZE)
  Buffer.concat([encodeBtreeHeader(1, leaf.count), leaf.encode()]).copy(obj)
  return obj
}

function withInsert(leaf: LeafEntries, idx: number, vid: number): LeafEntries {
  const copy = leaf.slice(0, leaf.count)
  copy.insert(copy.lowerBound(idx), idx, vid)
  return copy
}

const counterOf = (io: Objects) => io.objects.get(INODE)!.readUInt32LE(BTREE_COUNTER_AT)
const HALF = Math.floor(BTREE_MAX_LEAF_ENTRIES / 2)

t.test('a full root leaf moves to two new node objects; the root becomes depth 2 (transfer_to_idx_root)', async (t) => {
  const io = new Objects()
  const full = evenLeaf(BTREE_MAX_LEAF_ENTRIES, VID)
  const leafRoot = Buffer.concat([encodeBtreeHeader(1, full.count), full.encode()])
  io.put(INODE, BTREE_COUNTER_AT, Buffer.from('07000000', 'hex'))
  io.put(INODE, BTREE_ROOT_WRITE_AT, Buffer.from('a1a2a3a4a5a6a7a8', 'hex'))
  io.put(INODE, BTREE_ROOT_AT, leafRoot)
  const index = new BtreeIndex(io, INODE)
  await index.commit(4, 9)
  t.equal(io.writes().length, 1, 'an update in place of a full root does not grow it')
  io.log.length = 0
  await index.commit(5, 9)
  const lowerOid = vidToBtreeOid(VID, 7)
  const upperOid = vidToBtreeOid(VID, 8)
  const inode = oidToHex(INODE)
  const children = [
    { maxIdx: 2 * (HALF - 1), oid: lowerOid },
    { maxIdx: 2 * (BTREE_MAX_LEAF_ENTRIES - 1), oid: upperOid },
  ]
  const newRoot = Buffer.concat([Buffer.from('a1a2a3a4a5a6a7a8', 'hex'), encodeBtreeHeader(2, 2), encodeIndirectEntries(children)])
  t.same(io.log.slice(0, 5), [
    `read ${inode} @${BTREE_COUNTER_AT} 4`,
    `create ${oidToHex(lowerOid)} ${BTREE_HEADER_SIZE + HALF * 8} bytes`,
    `create ${oidToHex(upperOid)} ${BTREE_HEADER_SIZE + (BTREE_MAX_LEAF_ENTRIES - HALF) * 8} bytes`,
    `write ${inode} @${BTREE_COUNTER_AT} 09000000`,
    `write ${inode} @4656 ${newRoot.toString('hex')}`,
  ])
  t.equal(counterOf(io), 9, 'btree_counter counts the two nodes')
  const withFive = full.slice(0, full.count)
  withFive.setVid(2, 9)
  t.ok(io.objects.get(lowerOid)!.equals(nodeObject(withInsert(withFive.slice(0, HALF), 5, 9))), 'the lower half, with idx 5 inserted after the split')
  t.ok(io.objects.get(upperOid)!.equals(nodeObject(full.slice(HALF, full.count))), 'the upper half')
  const stored = io.objects.get(INODE)!
  t.ok(stored.subarray(BTREE_ROOT_WRITE_AT, BTREE_ROOT_WRITE_AT + newRoot.length).equals(newRoot), 'the root: two pointers')
  const past = BTREE_ROOT_AT + newRoot.length - 8
  t.ok(stored.subarray(past, BTREE_ROOT_AT + leafRoot.length).equals(leafRoot.subarray(past - BTREE_ROOT_AT)), 'the old leaf entries past them stay')

  const reread = new BtreeIndex(io, INODE)
  t.same(
    [
      await lookUp(reread, 4),
      await lookUp(reread, 5),
      await lookUp(reread, 3),
      await lookUp(reread, 2 * HALF),
      await lookUp(reread, 2 * (BTREE_MAX_LEAF_ENTRIES - 1)),
    ],
    [9, 9, 0, VID, VID],
  )
  const all = await collectIndexEntries(io, INODE, rootOf(io))
  t.equal(all.size, BTREE_MAX_LEAF_ENTRIES + 1, 'every entry once')
  await index.commit(2 * BTREE_MAX_LEAF_ENTRIES + 1, 9)
  t.equal(await lookUp(new BtreeIndex(io, INODE), 2 * BTREE_MAX_LEAF_ENTRIES + 1), 9, 'past the last node, which has room')
  t.same(decodeIndirectEntries(stored.subarray(BTREE_ROOT_AT + 8), 2)[1].maxIdx, 2 * BTREE_MAX_LEAF_ENTRIES + 1, 'its max moved up')
})

/** A depth-2 tree: node A (counter 0) full of even idxs, then node B (counter 1) with the entries given. */
function fullFirstNode(b: [number, number][]): Objects {
  const io = new Objects()
  const a = evenLeaf(BTREE_MAX_LEAF_ENTRIES, VID)
  const children: IndirectEntry[] = [{ maxIdx: a.idxAt(a.count - 1), oid: NODE_A }]
  if (b.length > 0) children.push({ maxIdx: b[b.length - 1][0], oid: NODE_B })
  io.put(INODE, BTREE_COUNTER_AT, Buffer.from([children.length, 0, 0, 0]))
  io.put(INODE, BTREE_ROOT_AT, Buffer.concat([encodeBtreeHeader(2, children.length), encodeIndirectEntries(children)]))
  io.objects.set(NODE_A, nodeObject(a))
  if (b.length > 0) io.objects.set(NODE_B, nodeObject(leafOf(b)))
  return io
}

t.test('past a full last node: a new node of its own, pointed at last', async (t) => {
  const io = fullFirstNode([])
  const index = new BtreeIndex(io, INODE)
  const far = 3_000_000_000
  await index.commit(far, 9)
  const newOid = vidToBtreeOid(VID, 1)
  const one = leafOf([[far, 9]])
  t.same(io.writes(), [
    `create ${oidToHex(newOid)} 16 bytes`,
    `write ${oidToHex(INODE)} @${BTREE_COUNTER_AT} 02000000`,
    `write ${oidToHex(INODE)} @4656 ${LEAD}${Buffer.concat([
      encodeBtreeHeader(2, 2),
      encodeIndirectEntries([
        { maxIdx: 2 * (BTREE_MAX_LEAF_ENTRIES - 1), oid: NODE_A },
        { maxIdx: far, oid: newOid },
      ]),
    ]).toString('hex')}`,
  ])
  t.ok(io.objects.get(newOid)!.equals(nodeObject(one)))
  await index.commit(far + 1, 9)
  await index.commit(far - 1, 8)
  const reread = new BtreeIndex(io, INODE)
  t.same([await lookUp(reread, far - 1), await lookUp(reread, far), await lookUp(reread, far + 1), await lookUp(reread, 2)], [8, 9, 9, VID])
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [NODE_A, newOid])
})

t.test('a full node an idx falls into is split in half (split_index_node)', async (t) => {
  const io = fullFirstNode([[4_000_000, 5]])
  const before = Buffer.from(io.objects.get(NODE_A)!)
  const index = new BtreeIndex(io, INODE)
  await index.commit(2 * 100, 6)
  t.equal(io.writes().length, 1, 'an update in place of a full node does not split it')
  io.log.length = 0
  await index.commit(3, 9)
  const newOid = vidToBtreeOid(VID, 2)
  const a = evenLeaf(BTREE_MAX_LEAF_ENTRIES, VID)
  a.setVid(100, 6)
  const lower = a.slice(0, HALF)
  const children = [
    { maxIdx: lower.idxAt(HALF - 1), oid: newOid },
    { maxIdx: 2 * (BTREE_MAX_LEAF_ENTRIES - 1), oid: NODE_A },
    { maxIdx: 4_000_000, oid: NODE_B },
  ]
  t.same(io.writes(), [
    `create ${oidToHex(newOid)} ${BTREE_HEADER_SIZE + HALF * 8} bytes`,
    `write ${oidToHex(INODE)} @${BTREE_COUNTER_AT} 03000000`,
    `write ${oidToHex(INODE)} @4656 ${LEAD}${Buffer.concat([encodeBtreeHeader(2, 3), encodeIndirectEntries(children)]).toString('hex')}`,
    `write ${oidToHex(NODE_A)} @0 ${BTREE_HEADER_SIZE + BTREE_MAX_LEAF_ENTRIES * 8} bytes`,
    `write ${oidToHex(newOid)} @24 ${(HALF + 1 - 2) * 8} bytes`,
    `write ${oidToHex(newOid)} @0 7462010000000400`,
  ])
  t.equal(counterOf(io), 3)
  t.ok(io.objects.get(newOid)!.equals(nodeObject(withInsert(lower, 3, 9))), 'the lower half moved to the new node, then idx 3 went in')
  // the node keeps its upper half at its front; past the new count, what was there stays
  const expectedA = Buffer.from(before)
  expectedA.writeUInt32LE(6, BTREE_HEADER_SIZE + 100 * 8 + 4)
  expectedA.copyWithin(BTREE_HEADER_SIZE, BTREE_HEADER_SIZE + HALF * 8, BTREE_HEADER_SIZE + BTREE_MAX_LEAF_ENTRIES * 8)
  encodeBtreeHeader(1, BTREE_MAX_LEAF_ENTRIES - HALF).copy(expectedA)
  t.ok(io.objects.get(NODE_A)!.equals(expectedA), 'the old node: its upper half first, the stale tail after')

  const reread = new BtreeIndex(io, INODE)
  t.same(
    [await lookUp(reread, 3), await lookUp(reread, 200), await lookUp(reread, 2 * (HALF - 1)), await lookUp(reread, 2 * HALF), await lookUp(reread, 4_000_000)],
    [9, 6, VID, VID, 5],
  )
  const all = await collectIndexEntries(io, INODE, rootOf(io))
  t.equal(all.size, BTREE_MAX_LEAF_ENTRIES + 2, 'every entry once')
  const order = [...all.keys()]
  t.ok(
    order.every((idx, i) => i === 0 || order[i - 1] < idx),
    'the walk is in idx order',
  )
  await index.commit(2 * HALF + 1, 4)
  t.equal(await lookUp(new BtreeIndex(io, INODE), 2 * HALF + 1), 4, 'the old node has room again')
})

t.test('an interrupted split leaves every entry reachable', async (t) => {
  for (const failing of [1, 2, 3, 4]) {
    const io = fullFirstNode([[4_000_000, 5]])
    io.failingWrite = failing
    await t.rejects(new BtreeIndex(io, INODE).commit(3, 9), { code: SD_RES_EIO }, `write ${failing} fails`)
    const reread = new BtreeIndex(io, INODE)
    const probes = [0, 2 * (HALF - 1), 2 * HALF, 2 * (BTREE_MAX_LEAF_ENTRIES - 1), 4_000_000]
    const found = []
    for (const idx of probes) found.push(await lookUp(reread, idx))
    t.same(found, [VID, VID, VID, VID, 5], `after failing write ${failing}`)
  }
})

t.test('a depth-2 root without children gets its first node', async (t) => {
  const io = new Objects()
  io.put(INODE, BTREE_ROOT_AT, encodeBtreeHeader(2, 0))
  const index = new BtreeIndex(io, INODE)
  await index.commit(12, 3)
  await index.commit(10, 3)
  const reread = new BtreeIndex(io, INODE)
  t.same([await lookUp(reread, 10), await lookUp(reread, 12)], [3, 3])
  t.same(await indexNodeOids(io, INODE, rootOf(io)), [vidToBtreeOid(VID, 0)])
})

t.test('commits, loads and lookups running together agree with a fresh reader', async (t) => {
  const io = depth2()
  const index = new BtreeIndex(io, INODE)
  const expected = new Map<number, number>([
    [1, 3],
    [50, 3],
    [100, 4],
    [150, 3],
    [300, 5],
  ])
  const work: Promise<unknown>[] = []
  for (let i = 0; i < 200; i++) {
    const idx = (i * 7919) % 1000
    expected.set(idx, i + 1)
    work.push(index.commit(idx, i + 1))
    work.push(lookUp(index, (i * 31) % 1000))
  }
  await Promise.all(work)
  const fresh = await collectIndexEntries(io, INODE, rootOf(io))
  t.same(
    [...fresh].sort((x, y) => x[0] - y[0]),
    [...expected].sort((x, y) => x[0] - y[0]),
  )
  for (const [idx, vid] of expected) if ((await lookUp(index, idx)) !== vid) t.fail(`idx ${idx}`)
})
