// The B-tree index of hyper volumes (store_policy 1, wire-protocol.md §12.10): its layout, the
// codec of its header and entries, a walk over every leaf, and the lookups and updates VDI I/O
// makes. As in the original's lib/sd_inode.c, one implementation serves every caller: node I/O
// is a port the caller passes in (lib/vdi-io.ts over READ_OBJ/WRITE_OBJ, dog over its request
// helpers that print the original's failure lines, tests over a map of objects).
//
// The root lives in the inode's 4 MiB data_vdi_id area; at depth 1 it holds the leaf entries
// itself, at depth 2 it points at B-tree node objects (4 MiB, same header, depth 1, oids
// VDI_BTREE_BIT | vid << 32 | btree_counter). Updates grow and split the tree as sd_inode.c does.
import { zeroExtended } from './bytes.js'
import { SdError, invariant } from './errors.js'
import { INODE_HEADER, SD_INODE_INDEX_AT, SD_INODE_INDEX_SIZE, u32le } from './inode.js'
import { type Fields, type Layout, checkLayout, readFields, writeFields } from './layout.js'
import { oidToHex, oidToVid, vidToBtreeOid } from './oid.js'
import { SD_RES_EIO, SD_RES_NO_SUPPORT } from './proto.js'

/** store_policy of a hyper volume: its data_vdi_id area holds this B-tree, not a flat array. */
export const HYPER_VOLUME_STORE_POLICY = 1

/** sd_index_header: at the start of the root (in the inode) and of every node object. */
export const BTREE_HEADER = {
  magic: [0, 'u16'],
  depth: [2, 'u16'],
  entries: [4, 'u32'],
} as const satisfies Layout
export const BTREE_HEADER_SIZE = 8
export type BtreeHeader = Fields<typeof BTREE_HEADER>

/** sd_index: a leaf entry, data object idx → the vid owning it; sorted by idx. */
export const BTREE_LEAF_ENTRY = {
  idx: [0, 'u32'],
  vid: [4, 'u32'],
} as const satisfies Layout
export const BTREE_LEAF_ENTRY_SIZE = 8

/** sd_indirect_idx (not packed: 4 bytes of padding): the largest idx of a child node, and its oid. */
export const BTREE_INDIRECT_ENTRY = {
  maxIdx: [0, 'u32'],
  oid: [8, 'u64'],
} as const satisfies Layout
export const BTREE_INDIRECT_ENTRY_SIZE = 16

export const BTREE_MAGIC = 0x6274
/** Depth of a node holding leaf entries (the root of a small index, and every node object). */
export const BTREE_LEAF_DEPTH = 1
/** Depth of a root holding indirect entries that point at node objects. */
export const BTREE_INDIRECT_DEPTH = 2
/** Where the root's header sits in the inode object: the start of data_vdi_id. */
export const BTREE_ROOT_AT = SD_INODE_INDEX_AT
/** Leaf entries that fit in the root or in one node object (both are SD_INODE_INDEX_SIZE bytes). */
export const BTREE_MAX_LEAF_ENTRIES = Math.floor((SD_INODE_INDEX_SIZE - BTREE_HEADER_SIZE) / BTREE_LEAF_ENTRY_SIZE)
/** Indirect entries that fit in the root. */
export const BTREE_MAX_INDIRECT_ENTRIES = Math.floor((SD_INODE_INDEX_SIZE - BTREE_HEADER_SIZE) / BTREE_INDIRECT_ENTRY_SIZE)

checkLayout('BTREE_HEADER', BTREE_HEADER, BTREE_HEADER_SIZE)
checkLayout('BTREE_LEAF_ENTRY', BTREE_LEAF_ENTRY, BTREE_LEAF_ENTRY_SIZE)
checkLayout('BTREE_INDIRECT_ENTRY', BTREE_INDIRECT_ENTRY, BTREE_INDIRECT_ENTRY_SIZE)
// the capacities wire-protocol.md §12.10 states: a changed size above would silently change them
invariant(BTREE_MAX_LEAF_ENTRIES === 524_287, `B-tree leaf capacity ${BTREE_MAX_LEAF_ENTRIES}`)
invariant(BTREE_MAX_INDIRECT_ENTRIES === 262_143, `B-tree indirect capacity ${BTREE_MAX_INDIRECT_ENTRIES}`)

const LEAF_IDX_AT = BTREE_LEAF_ENTRY.idx[0]
const LEAF_VID_AT = BTREE_LEAF_ENTRY.vid[0]

// ---- ports -------------------------------------------------------------------------------------

/** How the index reaches the inode and its node objects: a byte range of one object. */
export interface IndexNodeReader {
  /**
   * The bytes at `offset`. An answer shorter than `length` is tolerated: the entries in it that
   * are whole are used, and the walk reads a short node header as zeros.
   */
  read(oid: bigint, offset: number, length: number): Promise<Buffer>
}

/** A reader that can also write the index (for updates). */
export interface IndexNodeIo extends IndexNodeReader {
  write(oid: bigint, offset: number, data: Buffer): Promise<void>
  /** Creates a new B-tree node object (CREATE_AND_WRITE, zero-filled past `data`). */
  create(oid: bigint, data: Buffer): Promise<void>
}

// ---- codec -------------------------------------------------------------------------------------

/** The header at `at` of `buf` (which must hold its 8 bytes). */
export function decodeBtreeHeader(buf: Buffer, at = 0): BtreeHeader {
  return readFields(buf, BTREE_HEADER, at)
}

/** A header with the magic, as written in front of a node's entries. */
export function encodeBtreeHeader(depth: number, entries: number): Buffer {
  return writeFields(Buffer.alloc(BTREE_HEADER_SIZE), BTREE_HEADER, { magic: BTREE_MAGIC, depth, entries })
}

export type IndirectEntry = Fields<typeof BTREE_INDIRECT_ENTRY>

/** Up to `count` indirect entries from `buf`: only whole ones (a short read gives fewer). */
export function decodeIndirectEntries(buf: Buffer, count = Number.POSITIVE_INFINITY): IndirectEntry[] {
  const entries: IndirectEntry[] = []
  for (let i = 0; i < count && (i + 1) * BTREE_INDIRECT_ENTRY_SIZE <= buf.length; i++) {
    entries.push(readFields(buf, BTREE_INDIRECT_ENTRY, i * BTREE_INDIRECT_ENTRY_SIZE))
  }
  return entries
}

export function encodeIndirectEntries(entries: readonly IndirectEntry[]): Buffer {
  const buf = Buffer.alloc(entries.length * BTREE_INDIRECT_ENTRY_SIZE)
  for (const [i, entry] of entries.entries()) writeFields(buf, BTREE_INDIRECT_ENTRY, entry, i * BTREE_INDIRECT_ENTRY_SIZE)
  return buf
}

/**
 * A sorted array of (idx, vid) leaf entries with room to grow. Typed arrays, not objects: a
 * node holds up to 524 287 entries.
 */
export class LeafEntries {
  private idxs: Uint32Array
  private vids: Uint32Array
  count = 0

  constructor(capacity = 64) {
    this.idxs = new Uint32Array(capacity)
    this.vids = new Uint32Array(capacity)
  }

  /** Up to `count` entries from `buf`: only whole ones (a short read gives fewer). */
  static decode(buf: Buffer, count: number): LeafEntries {
    const leaf = new LeafEntries(Math.max(64, count))
    const usable = Math.min(count, Math.floor(buf.length / BTREE_LEAF_ENTRY_SIZE))
    for (let i = 0; i < usable; i++) {
      leaf.idxs[i] = buf.readUInt32LE(i * BTREE_LEAF_ENTRY_SIZE + LEAF_IDX_AT)
      leaf.vids[i] = buf.readUInt32LE(i * BTREE_LEAF_ENTRY_SIZE + LEAF_VID_AT)
    }
    leaf.count = usable
    return leaf
  }

  /** Wire form of entries [from, to). */
  encode(from = 0, to = this.count): Buffer {
    invariant(from >= 0 && from <= to && to <= this.count, `leaf entries [${from}, ${to}) of ${this.count}`)
    const buf = Buffer.alloc((to - from) * BTREE_LEAF_ENTRY_SIZE)
    for (let i = from; i < to; i++) {
      buf.writeUInt32LE(this.idxs[i], (i - from) * BTREE_LEAF_ENTRY_SIZE + LEAF_IDX_AT)
      buf.writeUInt32LE(this.vids[i], (i - from) * BTREE_LEAF_ENTRY_SIZE + LEAF_VID_AT)
    }
    return buf
  }

  /** A copy of entries [from, to). */
  slice(from: number, to: number): LeafEntries {
    invariant(from >= 0 && from <= to && to <= this.count, `leaf entries [${from}, ${to}) of ${this.count}`)
    const part = new LeafEntries(Math.max(64, to - from))
    part.idxs.set(this.idxs.subarray(from, to))
    part.vids.set(this.vids.subarray(from, to))
    part.count = to - from
    return part
  }

  /** Position of the first entry with idx >= `idx` (where `idx` is or would be inserted). */
  lowerBound(idx: number): number {
    let lo = 0
    let hi = this.count
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.idxs[mid] < idx) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The entry's position if present, else -1. */
  find(idx: number): number {
    const pos = this.lowerBound(idx)
    return pos < this.count && this.idxs[pos] === idx ? pos : -1
  }

  idxAt(pos: number): number {
    return this.idxs[pos]
  }

  vidAt(pos: number): number {
    return this.vids[pos]
  }

  setVid(pos: number, vid: number): void {
    this.vids[pos] = vid
  }

  insert(pos: number, idx: number, vid: number): void {
    if (this.count === this.idxs.length) {
      const grow = (a: Uint32Array) => {
        const b = new Uint32Array(a.length * 2)
        b.set(a)
        return b
      }
      this.idxs = grow(this.idxs)
      this.vids = grow(this.vids)
    }
    this.idxs.copyWithin(pos + 1, pos, this.count)
    this.vids.copyWithin(pos + 1, pos, this.count)
    this.idxs[pos] = idx
    this.vids[pos] = vid
    this.count++
  }

  remove(pos: number): void {
    this.idxs.copyWithin(pos, pos + 1, this.count)
    this.vids.copyWithin(pos, pos + 1, this.count)
    this.count--
  }

  /** The entries in order, as [idx, vid]. */
  *[Symbol.iterator](): Generator<[idx: number, vid: number], void, undefined> {
    for (let i = 0; i < this.count; i++) yield [this.idxs[i], this.vids[i]]
  }
}

// ---- reading nodes -----------------------------------------------------------------------------

/** `count` leaf entries after the header at `base` of object `oid` (no request for none). */
async function readLeaves(io: IndexNodeReader, oid: bigint, base: number, count: number): Promise<LeafEntries> {
  if (count === 0) return new LeafEntries()
  return LeafEntries.decode(await io.read(oid, base + BTREE_HEADER_SIZE, count * BTREE_LEAF_ENTRY_SIZE), count)
}

/** `count` indirect entries of the root (no request for none). */
async function readRootPointers(io: IndexNodeReader, inodeOid: bigint, count: number): Promise<IndirectEntry[]> {
  if (count === 0) return []
  return decodeIndirectEntries(await io.read(inodeOid, BTREE_ROOT_AT + BTREE_HEADER_SIZE, count * BTREE_INDIRECT_ENTRY_SIZE), count)
}

// ---- the walk (dog's listings) -----------------------------------------------------------------

/**
 * Every leaf of the index whose root header is `root` (read with the inode header, so it is
 * passed in), in order: the root itself at depth 1, else each node object the root points at.
 * It reads as dog always has, trusting the headers it meets: a root without the magic (a hyper
 * volume never written to: its index area is zeros) has no entries, a root of any depth but 1
 * is read as indirect, a node's entry count is taken as it stands, and a short node header
 * reads as zeros. Counts are not capped; a short read of entries gives the whole ones.
 */
export async function* walkIndexLeaves(io: IndexNodeReader, inodeOid: bigint, root: BtreeHeader): AsyncGenerator<LeafEntries, void, undefined> {
  if (root.magic !== BTREE_MAGIC || root.entries === 0) return
  if (root.depth === BTREE_LEAF_DEPTH) {
    yield await readLeaves(io, inodeOid, BTREE_ROOT_AT, root.entries)
    return
  }
  for (const child of await readRootPointers(io, inodeOid, root.entries)) {
    const node = decodeBtreeHeader(zeroExtended(await io.read(child.oid, 0, BTREE_HEADER_SIZE), BTREE_HEADER_SIZE))
    if (node.entries > 0) yield await readLeaves(io, child.oid, 0, node.entries)
  }
}

/** walkIndexLeaves collected: idx → vid (entries of vid 0 included, as stored). */
export async function collectIndexEntries(io: IndexNodeReader, inodeOid: bigint, root: BtreeHeader): Promise<Map<number, number>> {
  const entries = new Map<number, number>()
  for await (const leaf of walkIndexLeaves(io, inodeOid, root)) {
    for (const [idx, vid] of leaf) entries.set(idx, vid)
  }
  return entries
}

/** The node objects a depth-2 root points at (none for any other depth), in the root's order. */
export async function indexNodeOids(io: IndexNodeReader, inodeOid: bigint, root: BtreeHeader): Promise<bigint[]> {
  if (root.depth !== BTREE_INDIRECT_DEPTH) return []
  return (await readRootPointers(io, inodeOid, root.entries)).map((child) => child.oid)
}

// ---- lookups and updates (VDI I/O) -------------------------------------------------------------

/**
 * Bytes of the inode header written in front of the root on every root update. A write that
 * starts inside data_vdi_id is an index update to a sheep (its entries' references are dropped,
 * wire-protocol.md §12.8), so the original never writes a hyper volume's root on its own: it
 * rewrites the inode from offset 0. Starting a few bytes before the root (bytes of the header's
 * unused area, written back as they were read) keeps that property without rewriting the header
 * fields another writer may have changed meanwhile.
 */
export const BTREE_ROOT_WRITE_LEAD = 8
/** Where every write of the root starts. */
export const BTREE_ROOT_WRITE_AT = BTREE_ROOT_AT - BTREE_ROOT_WRITE_LEAD
/** btree_counter in the inode header: the counter of the next node object's oid. */
export const BTREE_COUNTER_AT = INODE_HEADER.btreeCounter[0]

invariant(BTREE_COUNTER_AT + 4 <= BTREE_ROOT_WRITE_AT, 'the root write lead overlaps btree_counter')

type LeafRoot = { depth: typeof BTREE_LEAF_DEPTH; leaf: LeafEntries }
type IndirectRoot = { depth: typeof BTREE_INDIRECT_DEPTH; children: IndirectEntry[] }
type BtreeRoot = LeafRoot | IndirectRoot

/** Position of the first child whose max idx is >= idx (children.length past the last). */
function childPosition(children: readonly IndirectEntry[], idx: number): number {
  let lo = 0
  let hi = children.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (children[mid].maxIdx < idx) lo = mid + 1
    else hi = mid
  }
  return lo
}

function nodeBytes(leaf: LeafEntries): Buffer {
  return Buffer.concat([encodeBtreeHeader(BTREE_LEAF_DEPTH, leaf.count), leaf.encode()])
}

/**
 * The index of one hyper volume for reads and writes: nodes are loaded on demand and kept, so
 * a lookup answers without a request once prepared. Unlike the walk it checks every header it
 * loads (EIO on a bad one), since it writes next to what it read.
 *
 * Updates follow the original's lib/sd_inode.c, so the index objects hold the same bytes and
 * oids: a full root leaf (524 287 entries) is split in two node objects (the lower half, then
 * the upper half, oids from btree_counter) and the root becomes a depth-2 root of two pointers;
 * an idx past the last child goes into the last node, or into a new node of its own when that
 * one is full; a full node that an idx falls into is split in half, its lower half moving to a
 * new node. Node objects are created before anything points at them, btree_counter is written
 * before the root that uses the counters, and the root is written before a split node gives up
 * its lower half, so an interrupted update never leaves an entry unreachable.
 */
export class BtreeIndex {
  private root: BtreeRoot | undefined
  private rootLoad: Promise<BtreeRoot> | undefined
  /** The header bytes in front of the root, as read: rewritten as they are with every root update. */
  private lead: Buffer = Buffer.alloc(BTREE_ROOT_WRITE_LEAD)
  private readonly nodes = new Map<bigint, LeafEntries>()
  private readonly nodeLoads = new Map<bigint, Promise<LeafEntries>>()
  private committing: Promise<void> = Promise.resolve()
  private readonly vid: number

  constructor(
    private readonly io: IndexNodeIo,
    private readonly inodeOid: bigint,
  ) {
    this.vid = oidToVid(inodeOid)
  }

  /** True when get(idx) can answer without a request. */
  has(idx: number): boolean {
    const root = this.root
    if (!root) return false
    if (root.depth === BTREE_LEAF_DEPTH) return true
    const child = root.children[childPosition(root.children, idx)]
    return child === undefined || this.nodes.has(child.oid)
  }

  /** Loads what get() needs for entries firstIdx..lastIdx. */
  async prepare(firstIdx: number, lastIdx: number): Promise<void> {
    const root = await this.loadedRoot()
    if (root.depth === BTREE_LEAF_DEPTH) return
    const children = root.children
    for (let k = childPosition(children, firstIdx); k < children.length; k++) {
      await this.node(children[k].oid)
      if (children[k].maxIdx >= lastIdx) break
    }
  }

  /** The vid owning data object idx, 0 = unallocated. Only after prepare(). */
  get(idx: number): number {
    const root = this.root
    invariant(root !== undefined, 'B-tree used before it was loaded')
    let leaf = root.depth === BTREE_LEAF_DEPTH ? root.leaf : undefined
    if (root.depth === BTREE_INDIRECT_DEPTH) {
      const child = root.children[childPosition(root.children, idx)]
      if (!child) return 0
      leaf = this.nodes.get(child.oid)
      invariant(leaf !== undefined, `B-tree node ${oidToHex(child.oid)} used before it was loaded`)
    }
    const pos = leaf!.find(idx)
    return pos < 0 ? 0 : leaf!.vidAt(pos)
  }

  /** Records idx → vid in the index on the cluster, then in memory. */
  commit(idx: number, vid: number): Promise<void> {
    invariant(Number.isInteger(idx) && idx >= 0 && idx <= 0xffffffff, `bad object index ${idx}`)
    // every commit may rewrite shared entries: one at a time
    const run = this.committing.then(() => this.commitOne(idx, vid))
    this.committing = run.catch(() => undefined)
    return run
  }

  // ---- loading ---------------------------------------------------------------------------------

  private loadedRoot(): Promise<BtreeRoot> {
    if (this.root) return Promise.resolve(this.root)
    this.rootLoad ??= this.loadRoot().then(
      (root) => {
        this.root ??= root
        return this.root
      },
      (error: unknown) => {
        this.rootLoad = undefined
        throw error
      },
    )
    return this.rootLoad
  }

  private async loadRoot(): Promise<BtreeRoot> {
    const bytes = await this.io.read(this.inodeOid, BTREE_ROOT_WRITE_AT, BTREE_ROOT_WRITE_LEAD + BTREE_HEADER_SIZE)
    this.lead = zeroExtended(Buffer.from(bytes.subarray(0, BTREE_ROOT_WRITE_LEAD)), BTREE_ROOT_WRITE_LEAD)
    const head = bytes.subarray(BTREE_ROOT_WRITE_LEAD)
    if (head.length < BTREE_HEADER_SIZE) return { depth: BTREE_LEAF_DEPTH, leaf: new LeafEntries() }
    const { magic, depth, entries } = decodeBtreeHeader(head)
    // a hyper volume never written to: its index area is zeros (sd_inode_set_vid_range initialises it)
    if (magic === 0 && depth === 0) return { depth: BTREE_LEAF_DEPTH, leaf: new LeafEntries() }
    if (magic !== BTREE_MAGIC || (depth !== BTREE_LEAF_DEPTH && depth !== BTREE_INDIRECT_DEPTH)) {
      throw new SdError(SD_RES_EIO, `inode ${oidToHex(this.inodeOid)}: bad B-tree header (magic ${magic.toString(16)}, depth ${depth})`)
    }
    if (depth === BTREE_LEAF_DEPTH) {
      return { depth: BTREE_LEAF_DEPTH, leaf: await readLeaves(this.io, this.inodeOid, BTREE_ROOT_AT, Math.min(entries, BTREE_MAX_LEAF_ENTRIES)) }
    }
    return { depth: BTREE_INDIRECT_DEPTH, children: await readRootPointers(this.io, this.inodeOid, Math.min(entries, BTREE_MAX_INDIRECT_ENTRIES)) }
  }

  /** A node object's entries: loaded once, then kept (a commit changes them in place). */
  private node(oid: bigint): Promise<LeafEntries> {
    const known = this.nodes.get(oid)
    if (known) return Promise.resolve(known)
    let load = this.nodeLoads.get(oid)
    if (!load) {
      load = this.loadNode(oid).then(
        (leaf) => {
          this.nodeLoads.delete(oid)
          // a commit may have put a newer copy in place while the read was in flight
          if (!this.nodes.has(oid)) this.nodes.set(oid, leaf)
          return this.nodes.get(oid)!
        },
        (error: unknown) => {
          this.nodeLoads.delete(oid)
          throw error
        },
      )
      this.nodeLoads.set(oid, load)
    }
    return load
  }

  private async loadNode(oid: bigint): Promise<LeafEntries> {
    const head = await this.io.read(oid, 0, BTREE_HEADER_SIZE)
    const header = head.length < BTREE_HEADER_SIZE ? undefined : decodeBtreeHeader(head)
    if (header?.magic !== BTREE_MAGIC) throw new SdError(SD_RES_EIO, `B-tree node ${oidToHex(oid)}: bad header`)
    return readLeaves(this.io, oid, 0, Math.min(header.entries, BTREE_MAX_LEAF_ENTRIES))
  }

  // ---- updates ---------------------------------------------------------------------------------

  /** One entry; each pass records it or grows the tree by one node (sd_inode.c loops on SD_RES_AGAIN). */
  private async commitOne(idx: number, vid: number): Promise<void> {
    for (;;) {
      const root = await this.loadedRoot()
      if (root.depth === BTREE_LEAF_DEPTH) {
        if (root.leaf.find(idx) >= 0 || root.leaf.count < BTREE_MAX_LEAF_ENTRIES) return this.setInRoot(root.leaf, idx, vid)
        await this.growRoot(root.leaf)
        continue
      }
      const k = childPosition(root.children, idx)
      if (k < root.children.length) {
        const child = root.children[k]
        const node = await this.node(child.oid)
        if (node.find(idx) >= 0 || node.count < BTREE_MAX_LEAF_ENTRIES) return this.setInNode(node, child.oid, idx, vid)
        await this.splitNode(root, k, node)
        continue
      }
      // past the last child: into the last node while it has room, then into a new node
      const last = root.children.at(-1)
      const lastNode = last && (await this.node(last.oid))
      if (!last || !lastNode || lastNode.count >= BTREE_MAX_LEAF_ENTRIES) return this.addNode(root, idx, vid)
      await this.setInNode(lastNode, last.oid, idx, vid)
      // the last child now holds a larger idx: its pointer's max moves up
      const children = root.children.map((c, i) => (i === root.children.length - 1 ? { ...c, maxIdx: idx } : c))
      await this.writeIndirectRoot(children)
      root.children = children
      return
    }
  }

  /** Sets idx → vid in the root leaf: the root is rewritten up to the last entry that changed. */
  private async setInRoot(leaf: LeafEntries, idx: number, vid: number): Promise<void> {
    const found = leaf.find(idx)
    if (found >= 0) {
      const old = leaf.vidAt(found)
      leaf.setVid(found, vid)
      try {
        await this.writeRoot(encodeBtreeHeader(BTREE_LEAF_DEPTH, leaf.count), leaf.encode(0, found + 1))
      } catch (err) {
        leaf.setVid(found, old)
        throw err
      }
      return
    }
    invariant(leaf.count < BTREE_MAX_LEAF_ENTRIES, 'insert into a full root')
    leaf.insert(leaf.lowerBound(idx), idx, vid)
    try {
      await this.writeRoot(encodeBtreeHeader(BTREE_LEAF_DEPTH, leaf.count), leaf.encode())
    } catch (err) {
      // the cluster may not have the entry: forget it here too, so a retry creates it again
      leaf.remove(leaf.find(idx))
      throw err
    }
  }

  /** Sets idx → vid in a node object, writing only what changed. */
  private async setInNode(leaf: LeafEntries, oid: bigint, idx: number, vid: number): Promise<void> {
    const entriesAt = BTREE_HEADER_SIZE
    const found = leaf.find(idx)
    if (found >= 0) {
      await this.io.write(oid, entriesAt + found * BTREE_LEAF_ENTRY_SIZE + LEAF_VID_AT, u32le(vid))
      leaf.setVid(found, vid)
      return
    }
    invariant(leaf.count < BTREE_MAX_LEAF_ENTRIES, `insert into full B-tree node ${oidToHex(oid)}`)
    const pos = leaf.lowerBound(idx)
    leaf.insert(pos, idx, vid)
    try {
      // the shifted tail first, then the entry count: a failure in between leaves entries
      // past the count, which readers ignore
      await this.io.write(oid, entriesAt + pos * BTREE_LEAF_ENTRY_SIZE, leaf.encode(pos))
      await this.io.write(oid, 0, encodeBtreeHeader(BTREE_LEAF_DEPTH, leaf.count))
    } catch (err) {
      const again = leaf.find(idx)
      if (again >= 0) leaf.remove(again)
      throw err
    }
  }

  /**
   * transfer_to_idx_root: the full root leaf moves to two new node objects, its lower half
   * (entries / 2) and its upper half, and the root becomes a depth-2 root pointing at them. The
   * root's old entries past the two pointers stay in the inode, as the original leaves them.
   */
  private async growRoot(leaf: LeafEntries): Promise<void> {
    const half = Math.floor(leaf.count / 2)
    const lower = leaf.slice(0, half)
    const upper = leaf.slice(half, leaf.count)
    const counter = await this.readCounter()
    const lowerOid = vidToBtreeOid(this.vid, counter)
    const upperOid = vidToBtreeOid(this.vid, counter + 1)
    await this.io.create(lowerOid, nodeBytes(lower))
    await this.io.create(upperOid, nodeBytes(upper))
    await this.writeCounter(counter + 2)
    const children = [
      { maxIdx: lower.idxAt(lower.count - 1), oid: lowerOid },
      { maxIdx: upper.idxAt(upper.count - 1), oid: upperOid },
    ]
    await this.writeIndirectRoot(children)
    this.nodes.set(lowerOid, lower)
    this.nodes.set(upperOid, upper)
    this.root = { depth: BTREE_INDIRECT_DEPTH, children }
  }

  /**
   * split_index_node: the lower half (entries / 2) of the full node at position k moves to a new
   * node object, pointed at just before it; the node keeps its upper half, moved to its front
   * (the tail past the new count keeps what was there, as in the original). The original records
   * the new node's max as the idx one past its last entry (0, in a zeroed buffer) and so inserts
   * its pointer first, where lookups of its entries cannot find it; this records its last idx.
   */
  private async splitNode(root: IndirectRoot, k: number, node: LeafEntries): Promise<void> {
    if (root.children.length >= BTREE_MAX_INDIRECT_ENTRIES) throw this.fullError()
    const oldOid = root.children[k].oid
    const half = Math.floor(node.count / 2)
    const lower = node.slice(0, half)
    const upper = node.slice(half, node.count)
    const counter = await this.readCounter()
    const newOid = vidToBtreeOid(this.vid, counter)
    await this.io.create(newOid, nodeBytes(lower))
    await this.writeCounter(counter + 1)
    const children = [...root.children.slice(0, k), { maxIdx: lower.idxAt(lower.count - 1), oid: newOid }, ...root.children.slice(k)]
    await this.writeIndirectRoot(children)
    this.nodes.set(newOid, lower)
    root.children = children
    const moved = node.encode()
    moved.copyWithin(0, half * BTREE_LEAF_ENTRY_SIZE)
    await this.io.write(oldOid, 0, Buffer.concat([encodeBtreeHeader(BTREE_LEAF_DEPTH, upper.count), moved]))
    this.nodes.set(oldOid, upper)
  }

  /** A new node object holding just idx → vid, pointed at after the last child. */
  private async addNode(root: IndirectRoot, idx: number, vid: number): Promise<void> {
    // the original panics here; 262 143 nodes hold far more than the 2^32 objects a VDI can have
    if (root.children.length >= BTREE_MAX_INDIRECT_ENTRIES) throw this.fullError()
    const leaf = new LeafEntries()
    leaf.insert(0, idx, vid)
    const counter = await this.readCounter()
    const oid = vidToBtreeOid(this.vid, counter)
    await this.io.create(oid, nodeBytes(leaf))
    await this.writeCounter(counter + 1)
    const children = [...root.children, { maxIdx: idx, oid }]
    await this.writeIndirectRoot(children)
    this.nodes.set(oid, leaf)
    root.children = children
  }

  private fullError(): SdError {
    return new SdError(SD_RES_NO_SUPPORT, `B-tree of ${oidToHex(this.inodeOid)} is full`)
  }

  /** btree_counter as stored now (read before each node is created, so writers never reuse one). */
  private async readCounter(): Promise<number> {
    const bytes = zeroExtended(await this.io.read(this.inodeOid, BTREE_COUNTER_AT, 4), 4)
    return bytes.readUInt32LE(0)
  }

  private writeCounter(counter: number): Promise<void> {
    invariant(counter <= 0xffffffff, 'btree_counter overflows')
    return this.io.write(this.inodeOid, BTREE_COUNTER_AT, u32le(counter))
  }

  private writeIndirectRoot(children: readonly IndirectEntry[]): Promise<void> {
    return this.writeRoot(encodeBtreeHeader(BTREE_INDIRECT_DEPTH, children.length), encodeIndirectEntries(children))
  }

  /** One write of the root: the lead, the header and entries from the first on (see BTREE_ROOT_WRITE_LEAD). */
  private writeRoot(header: Buffer, entries: Buffer): Promise<void> {
    invariant(header.length === BTREE_HEADER_SIZE && entries.length <= SD_INODE_INDEX_SIZE - BTREE_HEADER_SIZE, 'root write out of the index area')
    return this.io.write(this.inodeOid, BTREE_ROOT_WRITE_AT, Buffer.concat([this.lead, header, entries]))
  }
}
