// The B-tree index of hyper volumes (store_policy 1, wire-protocol.md §12.10): its layout, the
// codec of its header and entries, a walk over every leaf, and the lookups and updates VDI I/O
// makes. As in the original's lib/sd_inode.c, one implementation serves every caller: node I/O
// is a port the caller passes in (lib/vdi-io.ts over READ_OBJ/WRITE_OBJ, dog over its request
// helpers that print the original's failure lines, tests over a map of objects).
//
// The root lives in the inode's 4 MiB data_vdi_id area; at depth 1 it holds the leaf entries
// itself, at depth 2 it points at B-tree node objects (4 MiB, same header, depth 1).
import { zeroExtended } from './bytes.js'
import { SdError, invariant } from './errors.js'
import { SD_INODE_INDEX_AT, SD_INODE_INDEX_SIZE, u32le } from './inode.js'
import { type Fields, type Layout, checkLayout, readFields, writeFields } from './layout.js'
import { oidToHex } from './oid.js'
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

  /** Wire form of entries [from, count). */
  encode(from = 0): Buffer {
    const buf = Buffer.alloc((this.count - from) * BTREE_LEAF_ENTRY_SIZE)
    for (let i = from; i < this.count; i++) {
      buf.writeUInt32LE(this.idxs[i], (i - from) * BTREE_LEAF_ENTRY_SIZE + LEAF_IDX_AT)
      buf.writeUInt32LE(this.vids[i], (i - from) * BTREE_LEAF_ENTRY_SIZE + LEAF_VID_AT)
    }
    return buf
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

type BtreeRoot = { depth: typeof BTREE_LEAF_DEPTH; leaf: LeafEntries } | { depth: typeof BTREE_INDIRECT_DEPTH; children: IndirectEntry[] }

/**
 * The index of one hyper volume for reads and writes: nodes are loaded on demand and kept, so
 * a lookup answers without a request once prepared. Unlike the walk it checks every header it
 * loads (EIO on a bad one), since it writes next to what it read. Lookups at depth 1 (root in
 * the inode) and depth 2 (root of pointers to node objects); commits cover updates, inserts
 * into the root leaf and inserts into a child node with room: splitting a full node (more than
 * 524 287 objects in one node) answers NO_SUPPORT.
 */
export class BtreeIndex {
  private root: BtreeRoot | undefined
  private readonly nodes = new Map<bigint, LeafEntries>()
  private loading: Promise<void> = Promise.resolve()
  private committing: Promise<void> = Promise.resolve()

  constructor(
    private readonly io: IndexNodeIo,
    private readonly inodeOid: bigint,
  ) {}

  /** True when get(idx) can answer without a request. */
  has(idx: number): boolean {
    const root = this.root
    if (!root) return false
    if (root.depth === BTREE_LEAF_DEPTH) return true
    const child = this.childFor(root.children, idx)
    return child === undefined || this.nodes.has(child.oid)
  }

  /** Loads what get() needs for entries firstIdx..lastIdx. */
  prepare(firstIdx: number, lastIdx: number): Promise<void> {
    const run = this.loading.then(() => this.load(firstIdx, lastIdx))
    this.loading = run.catch(() => undefined)
    return run
  }

  private async load(firstIdx: number, lastIdx: number): Promise<void> {
    if (!this.root) this.root = await this.loadRoot()
    const root = this.root
    if (root.depth === BTREE_LEAF_DEPTH) return
    for (let k = 0; k < root.children.length; k++) {
      const low = k === 0 ? 0 : root.children[k - 1].maxIdx + 1
      const child = root.children[k]
      if (child.maxIdx < firstIdx || low > lastIdx || this.nodes.has(child.oid)) continue
      this.nodes.set(child.oid, await this.loadNode(child.oid))
    }
  }

  private async loadRoot(): Promise<BtreeRoot> {
    const head = await this.io.read(this.inodeOid, BTREE_ROOT_AT, BTREE_HEADER_SIZE)
    if (head.length < BTREE_HEADER_SIZE) return { depth: BTREE_LEAF_DEPTH, leaf: new LeafEntries() }
    const { magic, depth, entries } = decodeBtreeHeader(head)
    // a hyper volume never written to: its index area is zeros
    if (magic === 0 && depth === 0) return { depth: BTREE_LEAF_DEPTH, leaf: new LeafEntries() }
    if (magic !== BTREE_MAGIC || (depth !== BTREE_LEAF_DEPTH && depth !== BTREE_INDIRECT_DEPTH)) {
      throw new SdError(SD_RES_EIO, `inode ${oidToHex(this.inodeOid)}: bad B-tree header (magic ${magic.toString(16)}, depth ${depth})`)
    }
    if (depth === BTREE_LEAF_DEPTH) {
      return { depth: BTREE_LEAF_DEPTH, leaf: await readLeaves(this.io, this.inodeOid, BTREE_ROOT_AT, Math.min(entries, BTREE_MAX_LEAF_ENTRIES)) }
    }
    return { depth: BTREE_INDIRECT_DEPTH, children: await readRootPointers(this.io, this.inodeOid, Math.min(entries, BTREE_MAX_INDIRECT_ENTRIES)) }
  }

  private async loadNode(oid: bigint): Promise<LeafEntries> {
    const head = await this.io.read(oid, 0, BTREE_HEADER_SIZE)
    const header = head.length < BTREE_HEADER_SIZE ? undefined : decodeBtreeHeader(head)
    if (header?.magic !== BTREE_MAGIC) throw new SdError(SD_RES_EIO, `B-tree node ${oidToHex(oid)}: bad header`)
    return readLeaves(this.io, oid, 0, Math.min(header.entries, BTREE_MAX_LEAF_ENTRIES))
  }

  /** The child whose range holds idx: the first with maxIdx >= idx. */
  private childFor(children: IndirectEntry[], idx: number): IndirectEntry | undefined {
    let lo = 0
    let hi = children.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (children[mid].maxIdx < idx) lo = mid + 1
      else hi = mid
    }
    return children[lo]
  }

  /** The vid owning data object idx, 0 = unallocated. Only after prepare(). */
  get(idx: number): number {
    const root = this.root
    invariant(root !== undefined, 'B-tree used before it was loaded')
    const leaf = root.depth === BTREE_LEAF_DEPTH ? root.leaf : this.leafFor(root.children, idx)
    if (!leaf) return 0
    const pos = leaf.find(idx)
    return pos < 0 ? 0 : leaf.vidAt(pos)
  }

  private leafFor(children: IndirectEntry[], idx: number): LeafEntries | undefined {
    const child = this.childFor(children, idx)
    if (!child) return undefined
    const node = this.nodes.get(child.oid)
    invariant(node !== undefined, `B-tree node ${oidToHex(child.oid)} used before it was loaded`)
    return node
  }

  /** Records idx → vid in the index on the cluster, then in memory. */
  commit(idx: number, vid: number): Promise<void> {
    // every commit may rewrite shared entries: one at a time
    const run = this.committing.then(() => this.commitOne(idx, vid))
    this.committing = run.catch(() => undefined)
    return run
  }

  private async commitOne(idx: number, vid: number): Promise<void> {
    if (!this.root) await this.prepare(idx, idx)
    const root = this.root!
    if (root.depth === BTREE_LEAF_DEPTH) {
      await this.setInLeaf(root.leaf, this.inodeOid, BTREE_ROOT_AT, idx, vid)
      return
    }
    let k = root.children.findIndex((c) => c.maxIdx >= idx)
    const beyondLast = k < 0
    if (beyondLast) k = root.children.length - 1
    if (k < 0) throw new SdError(SD_RES_NO_SUPPORT, 'B-tree root without children')
    const child = root.children[k]
    if (!this.nodes.has(child.oid)) this.nodes.set(child.oid, await this.loadNode(child.oid))
    await this.setInLeaf(this.nodes.get(child.oid)!, child.oid, 0, idx, vid)
    if (beyondLast) {
      // the last child now holds a larger idx: its pointer's max moves up
      const maxIdxAt = BTREE_ROOT_AT + BTREE_HEADER_SIZE + k * BTREE_INDIRECT_ENTRY_SIZE + BTREE_INDIRECT_ENTRY.maxIdx[0]
      await this.io.write(this.inodeOid, maxIdxAt, u32le(idx))
      child.maxIdx = idx
    }
  }

  /** Sets idx → vid in a leaf whose header is at `base` of object `oid`, writing only what changed. */
  private async setInLeaf(leaf: LeafEntries, oid: bigint, base: number, idx: number, vid: number): Promise<void> {
    const entriesAt = base + BTREE_HEADER_SIZE
    const found = leaf.find(idx)
    if (found >= 0) {
      await this.io.write(oid, entriesAt + found * BTREE_LEAF_ENTRY_SIZE + LEAF_VID_AT, u32le(vid))
      leaf.setVid(found, vid)
      return
    }
    if (leaf.count >= BTREE_MAX_LEAF_ENTRIES) {
      throw new SdError(SD_RES_NO_SUPPORT, `B-tree node ${oidToHex(oid)} is full; splitting is not supported`)
    }
    const pos = leaf.lowerBound(idx)
    leaf.insert(pos, idx, vid)
    try {
      // the shifted tail first, then the entry count: a failure in between leaves entries
      // past the count, which readers ignore
      await this.io.write(oid, entriesAt + pos * BTREE_LEAF_ENTRY_SIZE, leaf.encode(pos))
      await this.io.write(oid, base, encodeBtreeHeader(BTREE_LEAF_DEPTH, leaf.count))
    } catch (err) {
      // the cluster may not have the entry: forget it here too, so a retry creates it again
      const again = leaf.find(idx)
      if (again >= 0) leaf.remove(again)
      throw err
    }
  }
}
