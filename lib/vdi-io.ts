// Reads and writes byte ranges of a VDI the way dog does (wire-protocol.md §12.2, cli-and-formats
// §4.13), for dog, sheepfs and the NBD server: a VdiHandle loads the inode header and only the
// index entries a range touches, splits I/O at the VDI's object size, reads unallocated objects
// as zeros, and writes by create / copy-on-write / overwrite plus a 4-byte index update, with a
// bounded number of object requests in flight and creates of one object serialised.
import type { SheepConnection } from './client.js'
import { zeroExtended } from './bytes.js'
import { SdError, invariant } from './errors.js'
import { type InodeHeader, SD_INODE_HEADER_SIZE, SD_INODE_INDEX_ENTRIES, decodeInodeHeader, indexOffset, isSnapshot, u32le } from './inode.js'
import { BtreeIndex, HYPER_VOLUME_STORE_POLICY, type IndexNodeIo } from './inode-index.js'
import { oidToHex, vidToDataOid, vidToVdiOid } from './oid.js'
import { SD_MAX_DATA_LENGTH, SD_RES_EIO, SD_RES_INVALID_PARMS, SD_RES_READONLY } from './proto.js'
import { type ObjectWriteOptions, type SnapshotSelector, createAndWriteObj, getVdiInfo, readObj, writeObj } from './sheep-api.js'

/** Object requests one I/O call keeps in flight unless told otherwise. */
export const VDI_IO_DEFAULT_CONCURRENCY = 8
/** Largest single object request: objects bigger than this (block_size_shift > 25) are split. */
export const VDI_IO_MAX_PIECE_BYTES = Math.min(32 * 1024 * 1024, SD_MAX_DATA_LENGTH)
/** Index entries fetched ahead when a stream reaches an object whose entry is not loaded yet. */
const INDEX_PREFETCH_ENTRIES = 1024

/**
 * A byte offset in a VDI. A hyper volume reaches 16 PiB, past the integers a number holds
 * exactly (2^53): its offsets are bigint, as the original's are u64; a number must be a safe
 * integer.
 */
export type VdiOffset = number | bigint

/** Called after each object piece completes: bytes done so far and bytes in the whole call. */
export type ProgressCallback = (doneBytes: number, totalBytes: number) => void

export interface VdiIoOptions {
  /** Object requests in flight at once (default: the handle's, VDI_IO_DEFAULT_CONCURRENCY). */
  concurrency?: number
  onProgress?: ProgressCallback
  /**
   * `write`: overwrites of allocated objects need not be durable until the next syncNodes
   * (SD_FLAG_CMD_UNSTABLE); creates and index updates are durable regardless.
   */
  unstable?: boolean
}

export interface VdiReadOptions extends VdiIoOptions {
  /** Read into this buffer (at least `length` bytes; the result is a view of it) instead of a new one. */
  into?: Buffer
}

export interface VdiOpenOptions {
  /** Default concurrency for this handle's reads and writes. */
  concurrency?: number
  /** Refuse writes even on a working VDI. Snapshots are always read-only. */
  readOnly?: boolean
}

export interface WriteStreamOptions extends VdiIoOptions {
  /** Bytes to write at most (bounded by the VDI end); default: until the source ends or the VDI does. */
  length?: number | bigint
  /**
   * dog's behaviour: when the source ends before `length`, the chunk being filled (up to its
   * object boundary or the end of the range) is zero-padded to its full length and written, and
   * writing stops there. A chunk that received no byte at all is not written (the original
   * wrote a whole object of zeros when the input ended on a chunk boundary). Without it only the
   * bytes received are written.
   */
  padFinalChunk?: boolean
}

/** A part of a range that lies inside one object. */
interface Piece {
  idx: number
  offsetInObject: number
  length: number
  /** Offset of this piece from the start of the range. */
  at: number
}

/** The data_vdi_id index of an inode, in whatever form it is stored (flat array below, or the B-tree of inode-index.ts). */
interface IndexView {
  /** True when get(idx) can answer without a request. */
  has(idx: number): boolean
  /** Loads what get() needs for entries firstIdx..lastIdx. */
  prepare(firstIdx: number, lastIdx: number): Promise<void>
  /** The vid owning data object idx, 0 = unallocated. Only after prepare(). */
  get(idx: number): number
  /** Records idx → vid in the inode on the cluster, then in memory. */
  commit(idx: number, vid: number): Promise<void>
}

/** How the index views reach the inode and B-tree node objects. */
interface InodeIo extends IndexNodeIo {
  readonly inodeOid: bigint
}

export class VdiHandle {
  private index: IndexView
  private readonly creating = new Map<number, Promise<void>>()
  readonly readOnly: boolean
  readonly concurrency: number

  private constructor(
    readonly conn: SheepConnection,
    readonly vid: number,
    private inode: InodeHeader,
    opts: VdiOpenOptions,
  ) {
    this.readOnly = opts.readOnly === true || isSnapshot(inode)
    this.concurrency = Math.max(1, opts.concurrency ?? VDI_IO_DEFAULT_CONCURRENCY)
    this.index = this.newIndexView()
  }

  /** Opens the working VDI `name`, or the snapshot picked by tag / snapshot id (read-only). */
  static async open(conn: SheepConnection, name: string, selector: SnapshotSelector = {}, opts: VdiOpenOptions = {}): Promise<VdiHandle> {
    const { vid } = await getVdiInfo(conn, name, selector)
    const snapshot = (selector.tag ?? '') !== '' || (selector.snapid ?? 0) !== 0
    return VdiHandle.openByVid(conn, vid, { ...opts, readOnly: opts.readOnly === true || snapshot })
  }

  /** Opens a VDI by vid (its inode header is read; snapshots are read-only). */
  static async openByVid(conn: SheepConnection, vid: number, opts: VdiOpenOptions = {}): Promise<VdiHandle> {
    return new VdiHandle(conn, vid, await readInodeHeader(conn, vid), opts)
  }

  /** The inode header as loaded (name, tag, size, copies, shift, parent …). */
  get header(): Readonly<InodeHeader> {
    return this.inode
  }

  get name(): string {
    return this.inode.name
  }

  /** VDI size in bytes (exact up to 2^53; sizeBytes is exact). */
  get size(): number {
    return Number(this.inode.vdiSize)
  }

  /** VDI size in bytes. */
  get sizeBytes(): bigint {
    return this.inode.vdiSize
  }

  /** Object size in bytes: 1 << block_size_shift. */
  get objectSize(): number {
    return 2 ** this.inode.blockSizeShift
  }

  /** Hyper volume: the index is a B-tree (store_policy 1). */
  get isHyperVolume(): boolean {
    return this.inode.storePolicy === HYPER_VOLUME_STORE_POLICY
  }

  get inodeOid(): bigint {
    return vidToVdiOid(this.vid)
  }

  /** Re-reads the header (e.g. after a resize) and forgets the cached index. Not during I/O. */
  async reload(): Promise<void> {
    this.inode = await readInodeHeader(this.conn, this.vid)
    this.index = this.newIndexView()
  }

  /** The vid owning data object `idx` (0 = unallocated). */
  async ownerOf(idx: number): Promise<number> {
    invariant(Number.isInteger(idx) && idx >= 0, `bad object index ${idx}`)
    if (!this.index.has(idx)) await this.index.prepare(idx, idx)
    return this.index.get(idx)
  }

  /** The owners of data objects firstIdx..lastIdx (0 = unallocated), loading the index entries once. */
  async ownersOf(firstIdx: number, lastIdx: number): Promise<number[]> {
    invariant(Number.isInteger(firstIdx) && firstIdx >= 0 && lastIdx >= firstIdx, `bad object index range ${firstIdx}..${lastIdx}`)
    await this.index.prepare(firstIdx, lastIdx)
    const owners: number[] = []
    for (let idx = firstIdx; idx <= lastIdx; idx++) owners.push(this.index.get(idx))
    return owners
  }

  /**
   * True when whole objects can be discarded: a plain index, where clearing an entry is one
   * 4-byte index write. (A hyper volume's B-tree has no cleared-entry update here.)
   */
  get canDiscard(): boolean {
    return !this.readOnly && !this.isHyperVolume
  }

  /**
   * Discards data object `idx` as `dog vdi delete` does with each of its objects (lib/shared/vdi.c):
   * the inode's index entry is cleared by a WRITE_OBJ of the index range, on which the gateway drops
   * the reference the inode held (removing an object only this VDI used); the range reads as zeros
   * again. An object being created is waited for first.
   */
  async discard(idx: number): Promise<void> {
    this.checkWritable()
    invariant(this.canDiscard, `discard on VDI ${this.name}, whose index cannot clear entries`)
    for (let pending = this.creating.get(idx); pending; pending = this.creating.get(idx)) await pending.catch(() => undefined)
    if ((await this.ownerOf(idx)) === 0) return
    await this.index.commit(idx, 0)
  }

  /**
   * Reads `length` bytes at `offset`; unallocated objects read as zeros without a request. Each
   * reply lands where it belongs (in `opts.into` when given), without a copy.
   */
  async read(offset: VdiOffset, length: number, opts: VdiReadOptions = {}): Promise<Buffer> {
    const start = this.checkRange(offset, length, 'read')
    invariant(opts.into === undefined || opts.into.length >= length, `read of ${length} bytes into a buffer of ${opts.into?.length}`)
    if (length === 0) return Buffer.alloc(0)
    await this.prepareIndex(start, BigInt(length))
    const only = this.pieces(start, BigInt(length)).next().value as Piece
    if (only.length === length) {
      const data = await this.readPiece(only, opts.into?.subarray(0, length))
      opts.onProgress?.(length, length)
      return data
    }
    const out = opts.into?.subarray(0, length) ?? Buffer.allocUnsafe(length)
    let done = 0
    await runWindowed(this.pieces(start, BigInt(length)), this.limit(opts), async (p) => {
      await this.readPiece(p, out.subarray(p.at, p.at + p.length))
      done += p.length
      opts.onProgress?.(done, length)
    })
    return out
  }

  /**
   * Reads a range as a stream of buffers in order (one per object piece), keeping up to
   * `concurrency` object reads ahead of the consumer.
   */
  async *readStream(offset: VdiOffset, length: number | bigint, opts: VdiIoOptions = {}): AsyncGenerator<Buffer, void, undefined> {
    const start = this.checkRange(offset, length, 'read')
    const total = BigInt(length)
    if (total === 0n) return
    await this.prepareIndex(start, total)
    const limit = this.limit(opts)
    const pieces = this.pieces(start, total)
    const ahead: Promise<Buffer>[] = []
    const refill = (): void => {
      while (ahead.length < limit) {
        const next = pieces.next()
        if (next.done) return
        const p = next.value
        const chunk = this.readPiece(p)
        chunk.catch(() => undefined) // awaited below; this only keeps an abandoned read from being "unhandled"
        ahead.push(chunk)
      }
    }
    refill()
    let done = 0
    while (ahead.length > 0) {
      const chunk = await ahead.shift()!
      refill()
      done += chunk.length
      opts.onProgress?.(done, Number(total))
      yield chunk
    }
  }

  /** Reads a range into `sink` in order (e.g. stdout for `dog vdi read`), awaiting the sink. */
  async readRange(offset: VdiOffset, length: number | bigint, sink: (chunk: Buffer) => void | Promise<void>, opts: VdiIoOptions = {}): Promise<void> {
    for await (const chunk of this.readStream(offset, length, opts)) await sink(chunk)
  }

  /** Writes `data` at `offset` (READONLY on snapshots; INVALID_PARMS past the VDI end). */
  async write(offset: VdiOffset, data: Buffer, opts: VdiIoOptions = {}): Promise<void> {
    this.checkWritable()
    const start = this.checkRange(offset, data.length, 'write')
    if (data.length === 0) return
    await this.prepareIndex(start, BigInt(data.length))
    let done = 0
    await runWindowed(this.pieces(start, BigInt(data.length)), this.limit(opts), async (p) => {
      await this.writePiece(p, data.subarray(p.at, p.at + p.length), opts.unstable === true)
      done += p.length
      opts.onProgress?.(done, data.length)
    })
  }

  /**
   * Writes what `source` yields at `offset` until it ends, `length` bytes are written or the VDI
   * ends; returns the bytes written. Stops reading the source once the range is full.
   */
  async writeStream(offset: VdiOffset, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: WriteStreamOptions = {}): Promise<number> {
    this.checkWritable()
    const start = this.checkRange(offset, 0, 'write')
    const room = this.addressableSize - start
    const total = opts.length === undefined || BigInt(opts.length) > room ? room : BigInt(opts.length)
    if (total <= 0n) return 0
    const lastIdx = Number((start + total - 1n) / BigInt(this.objectSize))
    let written = 0
    await runWindowed(this.fill(start, total, source, opts.padFinalChunk === true), this.limit(opts), async ({ piece, data }) => {
      if (!this.index.has(piece.idx)) await this.index.prepare(piece.idx, Math.min(lastIdx, piece.idx + INDEX_PREFETCH_ENTRIES - 1))
      await this.writePiece(piece, data)
      written += data.length
      opts.onProgress?.(written, Number(total))
    })
    return written
  }

  // ---- internals ---------------------------------------------------------------------------

  private newIndexView(): IndexView {
    const io: InodeIo = {
      inodeOid: this.inodeOid,
      read: (oid, offset, length) => readObj(this.conn, oid, offset, length, { direct: true }),
      write: (oid, offset, data) => writeObj(this.conn, oid, offset, data, this.objectWriteOptions()),
      create: (oid, data) => createAndWriteObj(this.conn, oid, 0, data, this.objectWriteOptions()),
    }
    if (this.isHyperVolume) return new BtreeIndex(io, io.inodeOid)
    const count = Math.min(SD_INODE_INDEX_ENTRIES, Math.ceil(this.size / this.objectSize))
    return new PlainIndex(io, count)
  }

  /** The options of an object write of this VDI (built whole: see RequestFraming in codec.ts). */
  private objectWriteOptions(unstable = false, cowOid?: bigint): ObjectWriteOptions & { cowOid?: bigint } {
    return { copies: this.inode.nrCopies, copyPolicy: this.inode.copyPolicy, unstable, cowOid }
  }

  private limit(opts: VdiIoOptions): number {
    return Math.max(1, opts.concurrency ?? this.concurrency)
  }

  private checkWritable(): void {
    if (this.readOnly) throw new SdError(SD_RES_READONLY, `VDI ${this.name} (vid ${this.vid.toString(16)}) is read-only`)
  }

  /** Bytes the index can address: a plain index has 2^20 entries whatever vdi_size claims. */
  private get addressableSize(): bigint {
    const size = this.inode.vdiSize
    if (this.isHyperVolume) return size
    const plainMax = BigInt(SD_INODE_INDEX_ENTRIES) * BigInt(this.objectSize)
    return size < plainMax ? size : plainMax
  }

  /** The range's start as a bigint, once it is known to lie inside the VDI. */
  private checkRange(offset: VdiOffset, length: number | bigint, what: 'read' | 'write'): bigint {
    const wellFormed = (n: number | bigint) => (typeof n === 'bigint' ? n >= 0n : Number.isSafeInteger(n) && n >= 0)
    if (!wellFormed(offset) || !wellFormed(length) || BigInt(offset) + BigInt(length) > this.addressableSize) {
      throw new SdError(SD_RES_INVALID_PARMS, `${what} of ${length} bytes at ${offset} is outside VDI ${this.name} (${this.inode.vdiSize} bytes)`)
    }
    return BigInt(offset)
  }

  private async prepareIndex(start: bigint, length: bigint): Promise<void> {
    const objectSize = BigInt(this.objectSize)
    await this.index.prepare(Number(start / objectSize), Number((start + length - 1n) / objectSize))
  }

  /**
   * The pieces of [start, start + length), in order. `at` (a number) is exact while it is below
   * 2^53, which every range read into or written from one buffer is.
   */
  private *pieces(start: bigint, length: bigint): Generator<Piece, void, undefined> {
    const objectSize = this.objectSize
    let idx = Number(start / BigInt(objectSize))
    let offsetInObject = Number(start % BigInt(objectSize))
    for (let at = 0n; at < length; ) {
      const rest = length - at
      const pieceLength = Math.min(objectSize - offsetInObject, VDI_IO_MAX_PIECE_BYTES, rest < BigInt(objectSize) ? Number(rest) : objectSize)
      yield { idx, offsetInObject, length: pieceLength, at: Number(at) }
      at += BigInt(pieceLength)
      offsetInObject += pieceLength
      if (offsetInObject === objectSize) {
        idx++
        offsetInObject = 0
      }
    }
  }

  /** Cuts the source into object pieces, each in a buffer of its own. */
  private async *fill(
    start: bigint,
    total: bigint,
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    pad: boolean,
  ): AsyncGenerator<{ piece: Piece; data: Buffer }, void, undefined> {
    const pieces = this.pieces(start, total)
    let piece = pieces.next().value as Piece
    let buf = Buffer.alloc(piece.length)
    let filled = 0
    for await (const chunk of source) {
      for (let from = 0; from < chunk.length; ) {
        const take = Math.min(piece.length - filled, chunk.length - from)
        buf.set(chunk.subarray(from, from + take), filled)
        filled += take
        from += take
        if (filled === piece.length) {
          yield { piece, data: buf }
          const next = pieces.next()
          if (next.done) return
          piece = next.value
          buf = Buffer.alloc(piece.length)
          filled = 0
        }
      }
    }
    if (pad && filled > 0) yield { piece, data: buf }
    else if (filled > 0) yield { piece: { ...piece, length: filled }, data: buf.subarray(0, filled) }
  }

  /**
   * One piece's bytes (zeros for an unallocated object, without a request): in `into` (exactly
   * the piece's length) when given, else in a buffer of their own.
   */
  private async readPiece(p: Piece, into?: Buffer): Promise<Buffer> {
    const owner = this.index.get(p.idx)
    if (owner === 0) return into ? into.fill(0) : Buffer.alloc(p.length)
    const data = await readObj(this.conn, vidToDataOid(owner, p.idx), p.offsetInObject, p.length, { into })
    if (data.length > p.length) throw new SdError(SD_RES_EIO, `read of ${oidToHex(vidToDataOid(owner, p.idx))} returned too much`)
    if (into) {
      // the reply normally landed in place; a short one leaves zeros after it
      if (data.buffer !== into.buffer || data.byteOffset !== into.byteOffset) data.copy(into)
      if (data.length < p.length) into.fill(0, data.length)
      return into
    }
    return zeroExtended(data, p.length)
  }

  /**
   * Writes one piece (wire-protocol.md §12.2): own object → WRITE_OBJ; unallocated → CREATE_AND_WRITE
   * then index update; inherited → CREATE_AND_WRITE with CMD_COW from the owner's object, then
   * index update. A write to an object being created waits for the create, then overwrites.
   */
  private async writePiece(p: Piece, data: Buffer, unstable = false): Promise<void> {
    for (;;) {
      const pending = this.creating.get(p.idx)
      if (pending) {
        await pending.catch(() => undefined)
        continue
      }
      const owner = this.index.get(p.idx)
      const oid = vidToDataOid(this.vid, p.idx)
      if (owner === this.vid) {
        await writeObj(this.conn, oid, p.offsetInObject, data, this.objectWriteOptions(unstable))
        return
      }
      const create = (async () => {
        const cowOid = owner === 0 ? undefined : vidToDataOid(owner, p.idx)
        await createAndWriteObj(this.conn, oid, p.offsetInObject, data, this.objectWriteOptions(false, cowOid))
        await this.index.commit(p.idx, this.vid)
      })()
      this.creating.set(p.idx, create)
      try {
        await create
      } finally {
        if (this.creating.get(p.idx) === create) this.creating.delete(p.idx)
      }
      return
    }
  }
}

async function readInodeHeader(conn: SheepConnection, vid: number): Promise<InodeHeader> {
  const bytes = await readObj(conn, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE, { direct: true })
  if (bytes.length >= SD_INODE_HEADER_SIZE) return decodeInodeHeader(bytes)
  const padded = Buffer.alloc(SD_INODE_HEADER_SIZE)
  bytes.copy(padded)
  return decodeInodeHeader(padded)
}

// ---- bounded concurrency -----------------------------------------------------------------------

/**
 * Runs `task` for each item with at most `limit` running at once, pulling items only when a
 * slot is free. After the first failure no new task starts; running ones are waited for, then
 * the failure is thrown.
 */
async function runWindowed<T>(items: Iterable<T> | AsyncIterable<T>, limit: number, task: (item: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>()
  let failure: { error: unknown } | undefined
  try {
    for await (const item of items) {
      while (running.size >= limit && !failure) await Promise.race(running)
      if (failure) break
      const run: Promise<void> = Promise.resolve(item)
        .then(task)
        .then(
          () => {
            running.delete(run)
          },
          (error: unknown) => {
            running.delete(run)
            failure ??= { error }
          },
        )
      running.add(run)
    }
  } finally {
    await Promise.all(running)
  }
  if (failure) throw failure.error
}

// ---- the flat index (store_policy 0) -----------------------------------------------------------

/** data_vdi_id[] of a plain VDI, fetched lazily: one READ_OBJ per contiguous run of missing entries. */
class PlainIndex implements IndexView {
  private readonly entries: Uint32Array
  private readonly loaded: Uint8Array
  private loading: Promise<void> = Promise.resolve()

  constructor(
    private readonly io: InodeIo,
    count: number,
  ) {
    this.entries = new Uint32Array(count)
    this.loaded = new Uint8Array(count)
  }

  has(idx: number): boolean {
    return this.loaded[idx] === 1
  }

  prepare(firstIdx: number, lastIdx: number): Promise<void> {
    const last = Math.min(lastIdx, this.entries.length - 1)
    let missing = false
    for (let i = firstIdx; i <= last && !missing; i++) missing = this.loaded[i] !== 1
    if (!missing) return Promise.resolve()
    // loads run one after another, so two callers never fetch (and overwrite) the same entries
    const run = this.loading.then(() => this.loadMissing(firstIdx, last))
    this.loading = run.catch(() => undefined)
    return run
  }

  private async loadMissing(first: number, last: number): Promise<void> {
    for (let i = first; i <= last; ) {
      if (this.loaded[i] === 1) {
        i++
        continue
      }
      let end = i
      while (end + 1 <= last && this.loaded[end + 1] !== 1) end++
      const count = end - i + 1
      const bytes = await this.io.read(this.io.inodeOid, indexOffset(i), count * 4)
      for (let k = 0; k < count; k++) {
        // an entry committed while the read was in flight is newer than what the read saw
        if (this.loaded[i + k] === 1) continue
        this.entries[i + k] = (k + 1) * 4 <= bytes.length ? bytes.readUInt32LE(k * 4) : 0
        this.loaded[i + k] = 1
      }
      i = end + 1
    }
  }

  get(idx: number): number {
    invariant(this.loaded[idx] === 1, `index entry ${idx} used before it was loaded`)
    return this.entries[idx]
  }

  async commit(idx: number, vid: number): Promise<void> {
    await this.io.write(this.io.inodeOid, indexOffset(idx), u32le(vid))
    this.entries[idx] = vid
    this.loaded[idx] = 1
  }
}
