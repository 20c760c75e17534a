// End-to-end integrity of stored objects (issue 16, docs/integrity.md): a layer over any
// StoreDriver that keeps a CRC-32 of every 4 KiB block of every object replica or strip, and
// verifies the blocks of every read before a byte leaves the node. A block that does not match
// is never served: the read answers SD_RES_EIO (the gateway then reads another replica) and
// `onCorrupt` is told, so the node rewrites its copy from a good one (read-repair).
//
// The checksums live beside the data, never in it: one file per object in `<first disk>/.csum/`
// (the original skips every name beginning with a dot when it scans a disk, as it skips
// `.stale`), so object files stay byte-identical to the original's and the original can still
// use the directory. An object without a checksum file (written by the original, or while
// checksums were off) is served unverified, as today, until its checksums are established by
// comparing replicas (the scrubber, scrub.ts) or rewritten whole (a create, a repair).
//
// Crash safety: every mutation is preceded by a durable mark in the write-intent log
// (intent-log.ts) — for a create, durable before the rename that makes the new bytes visible,
// while the store syncs them in their temporary file. The table changes in memory only; its
// file is written and made durable lazily, when the mark is cleaned, and only then is the mark
// dropped. After a crash the marked objects' checksums are dropped and recomputed from their
// bytes in the background: a write in progress never looks like rot.
//
// Cost (docs/integrity.md, Cost): a read gets the CRC of each block it read from the store,
// which computes them as it reads (a read that goes to the thread pool: on the pool thread,
// piece by piece, crc32.ts preadCrc32Blocks), and compares them with the table; a small read the
// page cache holds is read and checked at once, without a promise in between (readNow). A write
// computes the CRCs of the blocks it covers and makes no system call for them. The CRCs are
// zlib's CRC-32, computed by a native kernel with carry-less multiplication where there is one
// (crc32.ts).
// A checksum file older than its object file (the original, or this sheep with checksums off,
// wrote the object later) is dropped at start for the same reason.
//
// Every mutation of an object passes through this layer's own queue per object, so its data
// and its checksums change together; reads are not queued, and a read that finds a mismatch is
// tried once more behind the object's mutations before the mismatch counts.
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { KeyedQueue } from '../../lib/async.js'
import type { Logger } from '../../lib/log.js'
import { isDataObj, keyFileName, oidOfKey, oidToIdx, parseKeyFileName } from '../../lib/oid.js'
import { SD_RES_EIO, SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'
import { NOT_CACHED } from './driver.js'
import type { BlockCrcs, CreateOptions, DiskStats, DiskUsage, ObjectWrite, ReadOptions, StagedObject, StoreDriver, WriteBackLogStats } from './driver.js'
import type { BufferPool } from '../../lib/buffer-pool.js'
import { crc32, crc32Blocks } from './crc32.js'
import { IntentLog } from './intent-log.js'
import type { StoreLayout } from './layout.js'
import { syncfsAvailable, syncfsDir } from './native-io.js'

/** A read of an object's bytes that, given `crcs`, also gives the CRC of each of their blocks. */
type BlockRead = (offset: number, length: number, crcs?: BlockCrcs) => Promise<Buffer | number>

/** The directory of checksum files inside the first object disk. */
export const CSUM_DIR = '.csum'
export const CSUM_BLOCK_BYTES = 4096
/**
 * The block CRCs of readNow's reads: used only between the read and the check, with no await
 * between, so one set serves every read. 256 blocks: a store reads at once at most 1 MiB (a read
 * the sheep serves alone, ReadOptions.lone; 64 KiB otherwise).
 */
const NOW_CRCS: BlockCrcs = { blockBytes: CSUM_BLOCK_BYTES, out: new Uint32Array(256) }
/** Checksum file: magic, version, block shift, object size, then one u32 CRC per block. */
const CSUM_MAGIC = 0x4b435344 // "DSCK" little-endian
const CSUM_VERSION = 1
const CSUM_BLOCK_SHIFT = 12
const CSUM_HEADER_BYTES = 16
const CRC_BYTES = 4
/** Checksum tables kept in memory (4 KiB each for a 4 MiB object: 16 MiB in all). */
const TABLE_CACHE_ENTRIES = 4096
/**
 * And their bytes at most: objects of a large block size have large tables (2 MiB for a 2 GiB
 * object), so the entry count alone would allow gigabytes.
 */
export const TABLE_CACHE_BYTES = 64 * 1024 * 1024
/** Whole-object walks (GET_HASH, scrub, recompute) read this much at a time. */
const WALK_CHUNK_BYTES = 4 * 1024 * 1024
/**
 * A create marks this many of the next data objects of its VDI with its own intent mark (those
 * not stored yet): a sequential write then syncs the log once per this many objects created.
 */
const MARK_AHEAD = 8n
/** The largest index of a data object (its oid's low 32 bits). */
const MAX_DATA_INDEX = 0xffffffff
/** Checksum files compared with their objects at once at start. */
const FILE_BATCH = 32
/**
 * Checksum files fdatasync'd at once when their marks are cleaned: a few, so that the journal
 * commits are shared, but not so many that the background syncs fill libuv's thread pool and the
 * reads and writes of clients wait behind them.
 */
const TABLE_SYNC_BATCH = 4
/**
 * A clean with at least this many checksum files to make durable syncs their filesystem once
 * (native-io.ts: one journal commit and disk flush, the directory entries of new files included)
 * instead of fdatasyncing the files one by one.
 */
const TABLE_SYNCFS_MIN_FILES = 4
/** A failing checksum directory is logged at most this often. */
const TABLE_IO_LOG_INTERVAL_MS = 60_000
/** A stale copy's checksum file: `<key file name>.<epoch>`. */
const STALE_CSUM_FILE = /^([0-9a-f]{16}(?:_\d{1,2})?)\.(\d+)$/

if (1 << CSUM_BLOCK_SHIFT !== CSUM_BLOCK_BYTES) throw new Error('invariant violated: CSUM_BLOCK_SHIFT')

/** The checksums of one object: its size and one CRC-32 per block (the last may be short). */
export interface ChecksumTable {
  size: number
  crcs: Uint32Array
}

/** What a whole-object verification found. */
export type Verdict = 'ok' | 'corrupt' | 'unknown'

export interface ChecksumStoreOptions {
  /** Where the checksum files and the intent log live. */
  dir: string
  nosync: boolean
  log: Logger
  /** Tables kept in memory (default TABLE_CACHE_ENTRIES; tests use a few). */
  tableCacheEntries?: number
  /** Their bytes at most (default TABLE_CACHE_BYTES). */
  tableCacheBytes?: number
}

const ZERO_BLOCK_CRC = crc32(Buffer.alloc(CSUM_BLOCK_BYTES))

export function blockCount(size: number): number {
  return Math.ceil(size / CSUM_BLOCK_BYTES)
}

export function crcOf(data: Uint8Array): number {
  return crc32(data)
}

/**
 * The CRCs of blocks [from, to) of an object of `size` into `crcs`, every byte of which is in
 * `data` (written at `offset`): one call for the run (crc32.ts).
 */
function setWholeBlockCrcs(crcs: Uint32Array, size: number, offset: number, data: Buffer, from: number, to: number): void {
  if (to <= from) return
  crc32Blocks(data.subarray(from * CSUM_BLOCK_BYTES - offset, Math.min(to * CSUM_BLOCK_BYTES, size) - offset), CSUM_BLOCK_BYTES, crcs, from)
}

/** The table of an object of `size` bytes holding `data` at `offset` and zeros elsewhere. */
export function tableOf(size: number, offset: number, data: Buffer): ChecksumTable {
  const crcs = new Uint32Array(blockCount(size))
  crcs.fill(ZERO_BLOCK_CRC)
  const lastLength = size - (crcs.length - 1) * CSUM_BLOCK_BYTES
  if (crcs.length > 0 && lastLength !== CSUM_BLOCK_BYTES) crcs[crcs.length - 1] = crcOf(Buffer.alloc(lastLength))
  const end = offset + data.length
  // the blocks the data covers whole, then the (at most two) it covers in part
  const wholeFrom = Math.ceil(offset / CSUM_BLOCK_BYTES)
  const wholeTo = end >= size ? crcs.length : Math.floor(end / CSUM_BLOCK_BYTES)
  setWholeBlockCrcs(crcs, size, offset, data, wholeFrom, wholeTo)
  for (let b = Math.floor(offset / CSUM_BLOCK_BYTES); b * CSUM_BLOCK_BYTES < end && b < crcs.length; b++) {
    if (b < wholeFrom || b >= wholeTo) crcs[b] = crcOf(blockBytes(size, b, offset, data, undefined))
  }
  return { size, crcs }
}

/** Bytes of block `b` of an object of `size` after `data` is written at `offset` over `old` (zeros when absent). */
function blockBytes(size: number, b: number, offset: number, data: Buffer, old: Buffer | undefined): Buffer {
  const start = b * CSUM_BLOCK_BYTES
  const end = Math.min(start + CSUM_BLOCK_BYTES, size)
  if (offset <= start && offset + data.length >= end) return data.subarray(start - offset, end - offset)
  const block = Buffer.alloc(end - start)
  old?.copy(block, 0, 0, Math.min(old.length, block.length))
  const from = Math.max(offset, start)
  const to = Math.min(offset + data.length, end)
  if (to > from) data.copy(block, from - start, from - offset, to - offset)
  return block
}

/**
 * The first block of `data` (read from block `firstBlock` on) that does not match; -1 if none.
 * `crcs` holds the CRC of each block of `data`, as the read computed them (BlockCrcs): only a
 * last block the object ends inside is checksummed here.
 */
export function firstBadBlock(table: ChecksumTable, data: Buffer, firstBlock: number, crcs: Uint32Array): number {
  for (let i = 0; i * CSUM_BLOCK_BYTES < data.length; i++) {
    const length = checkedLength(table, data, firstBlock, i)
    if (length === 0) break
    const from = i * CSUM_BLOCK_BYTES
    const crc = length === CSUM_BLOCK_BYTES ? crcs[i] : crcOf(data.subarray(from, from + length))
    if (crc !== table.crcs[firstBlock + i]) return firstBlock + i
  }
  return -1
}

/** Where a read of an object's bytes from `offset` on puts their blocks' CRCs: in `crcs`, at their blocks. */
function blocksFrom(crcs: Uint32Array, offset: number): BlockCrcs {
  return { blockBytes: CSUM_BLOCK_BYTES, out: crcs.subarray(offset / CSUM_BLOCK_BYTES) }
}

/**
 * How many bytes of block `firstBlock + i` a check of `data` covers: the whole block, or 0 (the
 * check stops there) past the object's end — that reads as zeros, nothing to check — or when
 * `data` ends inside the object's last block without covering it whole.
 */
function checkedLength(table: ChecksumTable, data: Buffer, firstBlock: number, i: number): number {
  const b = firstBlock + i
  if (b >= table.crcs.length) return 0
  const inObject = Math.min(CSUM_BLOCK_BYTES, table.size - b * CSUM_BLOCK_BYTES)
  return data.length - i * CSUM_BLOCK_BYTES >= inObject ? inObject : 0
}

export function encodeTable(t: ChecksumTable): Buffer {
  const buf = Buffer.alloc(CSUM_HEADER_BYTES + t.crcs.length * CRC_BYTES)
  buf.writeUInt32LE(CSUM_MAGIC, 0)
  buf.writeUInt8(CSUM_VERSION, 4)
  buf.writeUInt8(CSUM_BLOCK_SHIFT, 5)
  buf.writeBigUInt64LE(BigInt(t.size), 8)
  for (let i = 0; i < t.crcs.length; i++) buf.writeUInt32LE(t.crcs[i] as number, CSUM_HEADER_BYTES + i * CRC_BYTES)
  return buf
}

/**
 * Makes `file` hold `bytes`, written over its old bytes rather than truncated first (as
 * writeFileSync would): a truncation frees the file's blocks through the journal and can wait
 * for a commit under way, on the event loop (mean 73–211 µs, up to 6 ms, against 19–23 µs, with
 * fdatasyncs running beside it). A table's size rarely changes; a longer file is cut after.
 * Torn bytes after a crash are harmless: the object's intent mark is dropped only once the file
 * is synced (syncTables), and a mark left makes its table be recomputed.
 */
export function overwriteFileSync(file: string, bytes: Buffer): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o644)
  try {
    let done = 0
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, done)
    if (fs.fstatSync(fd).size > bytes.length) fs.ftruncateSync(fd, bytes.length)
  } finally {
    fs.closeSync(fd)
  }
}

/** The table in a checksum file's bytes; undefined when they are not one (torn, foreign). */
export function decodeTable(buf: Buffer): ChecksumTable | undefined {
  if (buf.length < CSUM_HEADER_BYTES || buf.readUInt32LE(0) !== CSUM_MAGIC) return undefined
  if (buf.readUInt8(4) !== CSUM_VERSION || buf.readUInt8(5) !== CSUM_BLOCK_SHIFT) return undefined
  const size = Number(buf.readBigUInt64LE(8))
  const blocks = blockCount(size)
  if (buf.length !== CSUM_HEADER_BYTES + blocks * CRC_BYTES) return undefined
  const crcs = new Uint32Array(blocks)
  for (let i = 0; i < blocks; i++) crcs[i] = buf.readUInt32LE(CSUM_HEADER_BYTES + i * CRC_BYTES)
  return { size, crcs }
}

function blockRange(offset: number, length: number): { first: number; end: number } {
  return { first: Math.floor(offset / CSUM_BLOCK_BYTES), end: Math.ceil((offset + length) / CSUM_BLOCK_BYTES) }
}

/** The part of a store the copy of a whole object needs (object-copy.ts). */
export type ObjectCreator = Pick<StoreDriver, 'create' | 'beginCreate'>

export class ChecksumStore implements StoreDriver {
  /** Told of every object found corrupt here (after the read that found it answered EIO). */
  onCorrupt: (key: bigint, detail: string) => void = () => undefined
  /** Mismatches found since start (metrics). */
  mismatches = 0
  private readonly queue = new KeyedQueue<bigint>()
  /** key → its table, or null when it has none; in use order (the oldest first). */
  private readonly tables = new Map<bigint, ChecksumTable | null>()
  /** The CRC bytes of the tables in `tables`. */
  private tableBytes = 0
  /** Counts the table changes: a table loaded while one changed is not cached (it may be old). */
  private tableChanges = 0
  private readonly intent: IntentLog
  /**
   * Objects whose table in memory is newer than its file. A table changes in memory only, under
   * the object's intent mark; its file is written when the mark is cleaned (syncTables), before
   * a stale move, or when the table leaves the cache: a write costs no system call for it.
   */
  private readonly unwritten = new Set<bigint>()
  private readonly log: Logger
  private tableIoLoggedMs = 0
  /** Objects being rewritten from another copy (replace), with how many rewrites are queued. */
  private readonly replacing = new Map<bigint, number>()
  /** Objects whose checksums are being recomputed from their bytes (after a crash). */
  private readonly recomputing = new Set<bigint>()

  constructor(
    readonly inner: StoreDriver,
    private readonly opts: ChecksumStoreOptions,
  ) {
    this.log = opts.log
    this.intent = new IntentLog({ dir: opts.dir, nosync: opts.nosync, syncChecksums: (keys) => this.syncTables(keys) })
  }

  // ---- passed through ----------------------------------------------------------------------

  get name(): string {
    return this.inner.name
  }
  get diskCount(): number {
    return this.inner.diskCount
  }
  get onDiskFailure(): (diskPath: string, disksLeft: number) => void {
    return this.inner.onDiskFailure
  }
  set onDiskFailure(f: (diskPath: string, disksLeft: number) => void) {
    this.inner.onDiskFailure = f
  }
  useLayout(layout: StoreLayout): Promise<void> {
    return this.inner.useLayout(layout)
  }
  exists(oid: bigint): boolean {
    return this.inner.exists(oid)
  }
  list(): bigint[] {
    return this.inner.list()
  }
  usedBytes(): bigint {
    return this.inner.usedBytes()
  }
  diskStats(): DiskStats[] {
    return this.inner.diskStats()
  }
  hasStale(oid: bigint, epoch: number): boolean {
    return this.inner.hasStale(oid, epoch)
  }
  listStale(): bigint[] {
    return this.inner.listStale()
  }
  recordedSpace(): bigint {
    return this.inner.recordedSpace()
  }
  usage(): Promise<DiskUsage[]> {
    return this.inner.usage()
  }
  capacity(): Promise<{ size: bigint; used: bigint }> {
    return this.inner.capacity()
  }
  plug(paths: readonly string[]): number {
    return this.inner.plug(paths)
  }
  unplug(paths: readonly string[], onLost: (count: number) => void): number {
    return this.inner.unplug(paths, onLost)
  }
  rebalanced(): Promise<void> {
    return this.inner.rebalanced()
  }
  fileOf(oid: bigint): string | undefined {
    return this.inner.fileOf?.(oid)
  }
  /** The store's flush; the objects it made durable may then lose their intent marks. */
  async flush(): Promise<void> {
    const unstable = this.intent.unstableSnapshot()
    await this.inner.flush()
    this.intent.flushed(unstable)
  }
  async mutationsSettled(): Promise<void> {
    await this.queue.settled()
    await this.inner.mutationsSettled()
  }

  // ---- start, format -----------------------------------------------------------------------

  async init(): Promise<void> {
    await this.inner.init()
    await fsp.mkdir(this.opts.dir, { recursive: true })
    this.tables.clear()
    this.tableBytes = 0
    this.unwritten.clear()
    this.tableChanges++
    const dirty = await this.intent.recover()
    for (const key of dirty) await this.dropTables(key, { stale: true })
    await this.intent.reset()
    await this.dropOutdated()
    const live = dirty.filter((key) => this.inner.exists(key))
    if (dirty.length > 0) {
      this.log.warn(`checksums: ${dirty.length} object(s) were being written when sheep stopped; ${live.length} recomputed from their bytes`)
    }
    for (const key of live) this.recomputing.add(key)
    void this.recomputeAll(live)
  }

  async purge(): Promise<void> {
    await this.inner.purge()
    await fsp.rm(this.opts.dir, { recursive: true, force: true })
    await fsp.mkdir(this.opts.dir, { recursive: true })
    this.tables.clear()
    this.tableBytes = 0
    this.unwritten.clear()
    this.tableChanges++
    await this.intent.reset()
  }

  /** Lets the mutations under way finish, makes every checksum durable and empties the intent log. */
  writeBackLogStats(): WriteBackLogStats | undefined {
    return this.inner.writeBackLogStats?.()
  }

  async close(): Promise<void> {
    this.intent.stop()
    await this.queue.settled()
    await this.intent.cleanAll()
    // none should be left (every changed table is marked, and the clean above wrote them)
    for (const key of [...this.unwritten]) this.writeTableNow(key)
    await this.inner.close?.()
  }

  /**
   * Drops the checksum files that cannot be trusted: those of objects no longer here, and those
   * older than their object file (someone wrote the object without updating them).
   */
  private async dropOutdated(): Promise<void> {
    if (!this.inner.fileOf) return
    const names = await fsp.readdir(this.opts.dir)
    let outdated = 0
    for (let i = 0; i < names.length; i += FILE_BATCH) {
      await Promise.all(
        names.slice(i, i + FILE_BATCH).map(async (name) => {
          const key = parseKeyFileName(name)
          if (key === undefined) return
          const data = this.inner.fileOf?.(key)
          const csum = path.join(this.opts.dir, name)
          if (data === undefined) return fsp.rm(csum, { force: true })
          const [d, c] = await Promise.all([fsp.stat(data, { bigint: true }), fsp.stat(csum, { bigint: true })]).catch(() => [undefined, undefined])
          if (d && c && d.mtimeNs <= c.mtimeNs) return
          outdated++
          await fsp.rm(csum, { force: true })
        }),
      )
    }
    if (outdated > 0)
      this.log.warn(
        `checksums: ${outdated} object(s) changed without their checksums (written by another program?); they are served unverified until established again`,
      )
  }

  private async recomputeAll(keys: bigint[]): Promise<void> {
    for (const key of keys) {
      try {
        await this.establish(key)
      } catch (e) {
        this.log.error(`checksums: recomputing ${keyFileName(key)} failed: ${String(e)}`)
      } finally {
        this.recomputing.delete(key)
      }
    }
  }

  // ---- reads -------------------------------------------------------------------------------

  read(oid: bigint, offset: number, length: number, opts?: ReadOptions): Promise<Buffer | number> {
    const now = this.readNow(oid, offset, length, opts)
    if (now instanceof Buffer) return Promise.resolve(now)
    const pool = opts?.pool
    // bytes the page cache did not hold just now are not looked for there again
    const uncached = now === NOT_CACHED
    return this.readVerified(oid, offset, length, (o, l, crcs) => this.inner.read(oid, o, l, { crcs, pool, uncached }), false, pool)
  }

  readNow(key: bigint, offset: number, length: number, opts?: Pick<ReadOptions, 'pool' | 'lone'>): Buffer | typeof NOT_CACHED | undefined {
    if (!this.inner.readNow) return undefined
    const table = this.table(key)
    if (table instanceof Promise) return undefined
    const pool = opts?.pool
    const lone = opts?.lone
    if (table === null) return this.inner.readNow(key, offset, length, { pool, lone })
    const { first, end } = blockRange(offset, length)
    if (end - first > NOW_CRCS.out.length) return undefined
    const start = first * CSUM_BLOCK_BYTES
    const data = this.inner.readNow(key, start, end * CSUM_BLOCK_BYTES - start, { pool, lone, crcs: NOW_CRCS })
    if (data === NOT_CACHED || data === undefined) return data
    if (firstBadBlock(table, data, first, NOW_CRCS.out) >= 0) {
      // a mismatch is looked at again, and reported, the long way; these bytes are never served
      if (pool?.lends(data)) pool.release(data)
      return undefined
    }
    return data.subarray(offset - start, offset - start + length)
  }

  readAfterMutations(oid: bigint, offset: number, length: number): Promise<Buffer | number> {
    return this.queue.run(oid, () => this.readVerified(oid, offset, length, (o, l, crcs) => this.inner.readAfterMutations(oid, o, l, { crcs }), true))
  }

  async readStale(oid: bigint, epoch: number, offset: number, length: number): Promise<Buffer | number> {
    const table = await this.loadTable(this.staleFile(oid, epoch))
    const got = await this.readChecked(table, offset, length, async (o, l, c) => {
      const data = await this.inner.readStale(oid, epoch, o, l)
      if (c && typeof data !== 'number') crc32Blocks(data, c.blockBytes, c.out, 0)
      return data
    })
    if (got !== 'mismatch') return got
    this.reportCorrupt(oid, `stale copy of epoch ${epoch}`)
    return SD_RES_EIO
  }

  /** A read checked against the object's table; `pool`: the one `read` may take its buffer from. */
  private async readVerified(key: bigint, offset: number, length: number, read: BlockRead, serialised: boolean, pool?: BufferPool): Promise<Buffer | number> {
    const cached = this.table(key)
    const table = cached instanceof Promise ? await cached : cached
    const got = await this.readChecked(table, offset, length, read, pool)
    // a file gone while its checksums are still here was deleted behind this sheep's back (a
    // removal or a stale move drops the checksums, in the same queue)
    const gone = got === SD_RES_NO_OBJ && table !== null
    if (got !== 'mismatch' && !gone) return got
    // being rewritten from another copy: known bad, answered at once (see `replace`)
    if (this.replacing.has(key)) return gone ? SD_RES_NO_OBJ : SD_RES_EIO
    // a write (or a removal) may have been half done: look again behind it
    if (!serialised) return this.queue.run(key, () => this.readVerified(key, offset, length, read, true, pool))
    if (gone) {
      this.reportCorrupt(key, 'its file is gone')
      return SD_RES_NO_OBJ
    }
    this.reportCorrupt(key, `bytes ${offset}+${length}`)
    return SD_RES_EIO
  }

  /** Reads whole blocks around the range and checks them; 'mismatch' when one is wrong. */
  private async readChecked(
    table: ChecksumTable | null,
    offset: number,
    length: number,
    read: BlockRead,
    pool?: BufferPool,
  ): Promise<Buffer | number | 'mismatch'> {
    if (!table) return read(offset, length)
    const { first, end } = blockRange(offset, length)
    const start = first * CSUM_BLOCK_BYTES
    const crcs = { blockBytes: CSUM_BLOCK_BYTES, out: new Uint32Array(end - first) }
    const data = await read(start, end * CSUM_BLOCK_BYTES - start, crcs)
    if (typeof data === 'number') return data
    if (firstBadBlock(table, data, first, crcs.out) >= 0) {
      // bytes never served: their buffer can be lent again at once
      if (pool?.lends(data)) pool.release(data)
      return 'mismatch'
    }
    return data.subarray(offset - start, offset - start + length)
  }

  private reportCorrupt(key: bigint, detail: string): void {
    this.mismatches++
    this.log.error(`checksum mismatch: ${keyFileName(key)} (${detail}) is corrupt here; it is not served`)
    this.onCorrupt(key, detail)
  }

  /**
   * Checks every block of the object, feeding its bytes to `consume` (started afresh by
   * `begin` before each try). A mismatch is looked at again behind the object's mutations
   * before it counts.
   */
  async verify(key: bigint, begin: () => (chunk: Buffer) => void = () => () => undefined): Promise<Verdict | number> {
    const once = async (): Promise<Verdict | 'mismatch' | number> => {
      const table = await this.table(key)
      if (!table) return 'unknown'
      const consume = begin()
      const crcs = { blockBytes: CSUM_BLOCK_BYTES, out: new Uint32Array(WALK_CHUNK_BYTES / CSUM_BLOCK_BYTES) }
      for (let at = 0; at < table.size; at += WALK_CHUNK_BYTES) {
        const data = await this.inner.read(key, at, Math.min(WALK_CHUNK_BYTES, table.size - at), { crcs })
        if (typeof data === 'number') return data
        if (firstBadBlock(table, data, at / CSUM_BLOCK_BYTES, crcs.out) >= 0) return 'mismatch'
        consume(data)
      }
      return 'ok'
    }
    const first = await once()
    if (first !== 'mismatch') return first
    if (this.replacing.has(key)) return 'corrupt'
    const again = await this.queue.run(key, once)
    if (again !== 'mismatch') return again
    this.reportCorrupt(key, 'whole object')
    return 'corrupt'
  }

  /** SHA-1 of the whole object (GET_HASH), its blocks checked on the way: EIO when one is wrong. */
  async sha1(oid: bigint): Promise<Buffer | number> {
    let hash = crypto.createHash('sha1')
    const verdict = await this.verify(oid, () => {
      hash = crypto.createHash('sha1')
      return (chunk) => hash.update(chunk)
    })
    if (verdict === 'unknown') return this.inner.sha1(oid)
    if (verdict === 'corrupt') return SD_RES_EIO
    if (typeof verdict === 'number') return verdict
    return hash.digest()
  }

  /** Whether the object has checksums here (false: served unverified). */
  async hasChecksums(key: bigint): Promise<boolean> {
    return (await this.table(key)) !== null
  }

  /**
   * Gives the object checksums computed from its bytes as they are, if their SHA-1 is
   * `expectSha1` (the replicas' majority) or no digest is asked for. Answers whether it did.
   */
  establish(key: bigint, expectSha1?: Buffer): Promise<boolean> {
    return this.queue.run(key, async () => {
      const file = this.inner.fileOf?.(key)
      if (!file) return false
      const size = (await fsp.stat(file)).size
      const hash = crypto.createHash('sha1')
      const crcs = new Uint32Array(blockCount(size))
      for (let at = 0; at < size; at += WALK_CHUNK_BYTES) {
        const data = await this.inner.read(key, at, Math.min(WALK_CHUNK_BYTES, size - at), { crcs: blocksFrom(crcs, at) })
        if (typeof data === 'number') return false
        hash.update(data)
      }
      if (expectSha1 && !hash.digest().equals(expectSha1)) return false
      if (!(await this.mark(key))) return false
      try {
        this.setTable(key, { size, crcs })
      } finally {
        this.intent.release(key)
      }
      return true
    })
  }

  // ---- mutations ---------------------------------------------------------------------------

  write(w: ObjectWrite): Promise<number> {
    return this.queue.run(w.oid, () => this.writeLocked(w))
  }

  private async writeLocked(w: ObjectWrite): Promise<number> {
    // no await where nothing is to be waited for (a cached table, a mark already durable): each
    // costs a turn of the microtask queue, on every write
    const cached = this.table(w.oid)
    const table = cached instanceof Promise ? await cached : cached
    // a write of no bytes changes no block (and has no first and last block to look at)
    if (!table || w.data.length === 0) return this.inner.write(w)
    const end = w.offset + w.data.length
    const size = Math.max(table.size, end)
    const { first, end: endBlock } = blockRange(w.offset, w.data.length)
    // blocks the write covers only in part: their other bytes are read (and checked) first
    const old = new Map<number, Buffer | null>()
    for (const b of first === endBlock - 1 ? [first] : [first, endBlock - 1]) {
      const start = b * CSUM_BLOCK_BYTES
      if (b >= table.crcs.length || (w.offset <= start && end >= Math.min(start + CSUM_BLOCK_BYTES, size))) continue
      const length = Math.min(CSUM_BLOCK_BYTES, table.size - start)
      const bytes = await this.inner.read(w.oid, start, length)
      if (typeof bytes === 'number') return bytes
      old.set(b, crcOf(bytes) === table.crcs[b] ? bytes : null)
    }
    if (!this.intent.markNow(w.oid, w.unstable) && !(await this.mark(w.oid, { unstable: w.unstable }))) return this.inner.write(w)
    try {
      const result = await this.inner.write(w)
      if (result !== SD_RES_SUCCESS) return result
      if (size !== table.size) return (await this.recomputeLocked(w.oid)) ? SD_RES_SUCCESS : SD_RES_EIO
      // changed in place: a read that holds the table meanwhile may see a mismatch, and looks
      // again behind this queue (readVerified), as it would with a new table and new bytes
      const crcs = table.crcs
      for (let b = first; b < endBlock; ) {
        const before = old.get(b)
        if (before === undefined) {
          // covered whole, as every block up to the next one the write covers in part
          let runEnd = b + 1
          while (runEnd < endBlock && !old.has(runEnd)) runEnd++
          setWholeBlockCrcs(crcs, size, w.offset, w.data, b, runEnd)
          b = runEnd
          continue
        }
        // a block that was already wrong keeps its checksum: it stays detectably wrong
        if (before !== null) crcs[b] = crcOf(blockBytes(size, b, w.offset, w.data, before))
        b++
      }
      this.setTable(w.oid, table)
      return SD_RES_SUCCESS
    } finally {
      this.intent.release(w.oid)
    }
  }

  /** Recomputes the object's table from its bytes (an object that grew: rare). */
  private async recomputeLocked(key: bigint): Promise<boolean> {
    const file = this.inner.fileOf?.(key)
    if (!file) {
      await this.dropTables(key)
      return true
    }
    const size = (await fsp.stat(file)).size
    const crcs = new Uint32Array(blockCount(size))
    for (let at = 0; at < size; at += WALK_CHUNK_BYTES) {
      const data = await this.inner.read(key, at, Math.min(WALK_CHUNK_BYTES, size - at), { crcs: blocksFrom(crcs, at) })
      if (typeof data === 'number') return false
    }
    this.setTable(key, { size, crcs })
    return true
  }

  create(w: ObjectWrite, objectSize: number, opts: { ifAbsent?: boolean } = {}): Promise<number> {
    return this.queue.run(w.oid, () => this.createLocked(w, objectSize, opts))
  }

  private async createLocked(w: ObjectWrite, objectSize: number, opts: CreateOptions): Promise<number> {
    if (opts.ifAbsent && this.inner.exists(w.oid)) return SD_RES_SUCCESS
    return this.createMarked(
      w.oid,
      (hook) => this.inner.create(w, objectSize, { ...opts, ...hook }),
      async () => this.setTable(w.oid, tableOf(Math.max(objectSize, w.offset + w.data.length), w.offset, w.data)),
      this.nextAbsent(w.oid),
    )
  }

  /**
   * The data objects after `key` of the same VDI (MARK_AHEAD of them) that this store does not
   * hold: a VDI written sequentially creates them next, and marked along with `key` they find
   * their marks durable (intent-log.ts, `ahead`). Only absent ones, so that a crash can never
   * have the checksums of an object nobody was writing re-established from its bytes.
   */
  private nextAbsent(key: bigint): bigint[] {
    const oid = oidOfKey(key)
    if (!isDataObj(oid)) return []
    const next: bigint[] = []
    for (let i = 1n; i <= MARK_AHEAD && oidToIdx(oid) + Number(i) <= MAX_DATA_INDEX; i++) if (!this.inner.exists(key + i)) next.push(key + i)
    return next
  }

  /**
   * Runs a create (`create`, or a staged create's commit) under the object's intent mark, made
   * durable while the store writes and syncs the new bytes in a temporary file rather than
   * before: the object's bytes change under its name only at the rename that `beforeVisible`
   * precedes, so the mark is still durable before they change, as for every mutation, and the
   * two syncs share the disk's flush (one journal commit) instead of following each other.
   * Then `tables` writes the new object's table, still under the mark. When the mark cannot be
   * written (`mark` dropped the table), the create still runs: the object is served unverified.
   */
  private async createMarked(
    key: bigint,
    create: (hook: Pick<CreateOptions, 'beforeVisible'>) => Promise<number>,
    tables: () => Promise<void>,
    ahead: readonly bigint[] = [],
  ): Promise<number> {
    const marking = this.mark(key, { ahead })
    /** Whether the new bytes were made visible (an `ifAbsent` create may keep the old ones). */
    let visible = false
    const beforeVisible = async () => {
      await marking
      visible = true
    }
    let result: number
    try {
      result = await create({ beforeVisible })
    } catch (e) {
      // the new bytes may be visible, the old table is not theirs: served unverified
      if (visible) await this.dropTables(key).catch(() => undefined)
      if (await marking) this.intent.release(key)
      throw e
    }
    if (!(await marking)) return result
    try {
      if (result === SD_RES_SUCCESS && visible) await tables()
      return result
    } finally {
      this.intent.release(key)
    }
  }

  beginCreate(oid: bigint, objectSize: number): Promise<StagedObject> {
    return this.beginCreateWith(oid, objectSize, false)
  }

  /** A staged create whose checksums are computed from the pieces as they are written. */
  private async beginCreateWith(oid: bigint, objectSize: number, locked: boolean): Promise<StagedObject> {
    const staged = await this.inner.beginCreate(oid, objectSize)
    const table = tableOf(objectSize, 0, Buffer.alloc(0))
    /** Blocks written in part, with their bytes so far (pieces may split a block). */
    const partial = new Map<number, Buffer>()
    const whole = new Set<number>()
    /** A piece overlapped a block already written whole: the table cannot follow (never from copyObject). */
    let untracked = false
    const commit = async (opts: CreateOptions): Promise<number> => {
      if (opts.ifAbsent && this.inner.exists(oid)) return staged.commit(opts)
      return this.createMarked(
        oid,
        (hook) => staged.commit({ ...opts, ...hook }),
        async () => {
          if (untracked) await this.recomputeLocked(oid)
          else this.setTable(oid, table)
        },
      )
    }
    return {
      write: async (offset, data) => {
        await staged.write(offset, data)
        const { first, end } = blockRange(offset, data.length)
        for (let b = first; b < end && b < table.crcs.length; b++) {
          const start = b * CSUM_BLOCK_BYTES
          const blockEnd = Math.min(start + CSUM_BLOCK_BYTES, objectSize)
          if (offset <= start && offset + data.length >= blockEnd) {
            table.crcs[b] = crcOf(data.subarray(start - offset, blockEnd - offset))
            whole.add(b)
            partial.delete(b)
            continue
          }
          if (whole.has(b)) untracked = true
          const bytes = blockBytes(objectSize, b, offset, data, partial.get(b))
          partial.set(b, bytes)
          table.crcs[b] = crcOf(bytes)
        }
      },
      commit: (opts = {}) => (locked ? commit(opts) : this.queue.run(oid, () => commit(opts))),
      abort: () => staged.abort(),
    }
  }

  remove(oid: bigint): Promise<number> {
    return this.queue.run(oid, async () => {
      const result = await this.inner.remove(oid)
      await this.dropTables(oid)
      return result
    })
  }

  /**
   * Rewrites the object from `copy` (read-repair, scrub), holding the object's queue the whole
   * time: a write that arrives meanwhile lands after the copy, whose source may or may not have
   * it already — either way the result has it (writes overwrite, they do not add).
   */
  replace(key: bigint, copy: (store: ObjectCreator) => Promise<number>): Promise<number> {
    // Meanwhile a read that finds this copy wrong answers EIO at once instead of looking again
    // behind the queue: the other holders may be repairing their copies from this one at the
    // same time, each holding its own queue while it reads from the others.
    this.replacing.set(key, (this.replacing.get(key) ?? 0) + 1)
    return this.queue
      .run(key, () =>
        copy({
          create: (w, objectSize, opts) => this.createLocked(w, objectSize, opts ?? {}),
          beginCreate: (oid, objectSize) => this.beginCreateWith(oid, objectSize, true),
        }),
      )
      .finally(() => {
        const left = (this.replacing.get(key) ?? 1) - 1
        if (left > 0) this.replacing.set(key, left)
        else this.replacing.delete(key)
      })
  }

  // ---- the stale area ----------------------------------------------------------------------

  moveToStale(oid: bigint, epoch: number): Promise<void> {
    return this.queue.run(oid, async () => {
      if (this.inner.exists(oid) && (await this.table(oid))) {
        // the stale copy keeps its checksums; they must be durable before the mark can go
        this.writeTableNow(oid)
        if (this.intent.isDirty(oid)) await this.syncTables([oid])
        await fsp.rename(this.tableFile(oid), this.staleFile(oid, epoch)).catch(() => undefined)
      }
      this.forget(oid)
      await this.inner.moveToStale(oid, epoch)
    })
  }

  async purgeStale(): Promise<void> {
    await this.inner.purgeStale()
    const names = await fsp.readdir(this.opts.dir).catch(() => [] as string[])
    await Promise.all(names.filter((n) => STALE_CSUM_FILE.test(n)).map((n) => fsp.rm(path.join(this.opts.dir, n), { force: true })))
  }

  // ---- checksum files ----------------------------------------------------------------------

  private tableFile(key: bigint): string {
    return path.join(this.opts.dir, keyFileName(key))
  }

  private staleFile(key: bigint, epoch: number): string {
    return path.join(this.opts.dir, `${keyFileName(key)}.${epoch}`)
  }

  /**
   * The object's table: from memory without a turn of the event loop when cached (every read
   * asks), else loaded from its file. A hit moves the table to the newest end of the cache only
   * once the cache is three quarters full: below that nothing is evicted, so the order does not
   * matter, and the two map operations per read are saved.
   */
  private table(key: bigint): ChecksumTable | null | Promise<ChecksumTable | null> {
    const cached = this.tables.get(key)
    if (cached === undefined) return this.loadCached(key)
    if (this.cacheOver(0.75)) {
      this.tables.delete(key)
      this.tables.set(key, cached)
    }
    return cached
  }

  private async loadCached(key: bigint): Promise<ChecksumTable | null> {
    if (this.recomputing.has(key)) return null
    const changes = this.tableChanges
    const loaded = await this.loadTable(this.tableFile(key))
    if (changes === this.tableChanges) this.remember(key, loaded)
    return loaded
  }

  private remember(key: bigint, table: ChecksumTable | null): void {
    this.uncache(key)
    this.tables.set(key, table)
    this.tableBytes += table?.crcs.byteLength ?? 0
    // the oldest go (their files written first); the table just remembered stays
    while (this.tables.size > 1 && this.cacheOver(1)) {
      const oldest = this.tables.keys().next().value as bigint
      this.writeTableNow(oldest)
      this.uncache(oldest)
    }
  }

  /** Whether the table cache holds more than `fraction` of its entries or of its bytes. */
  private cacheOver(fraction: number): boolean {
    const maxEntries = this.opts.tableCacheEntries ?? TABLE_CACHE_ENTRIES
    const maxBytes = this.opts.tableCacheBytes ?? TABLE_CACHE_BYTES
    return this.tables.size > maxEntries * fraction || this.tableBytes > maxBytes * fraction
  }

  /** Takes `key`'s table out of the cache and its bytes out of the count. */
  private uncache(key: bigint): void {
    this.tableBytes -= this.tables.get(key)?.crcs.byteLength ?? 0
    this.tables.delete(key)
  }

  /** Drops the table from memory, unwritten or not (the caller drops or moves its file). */
  private forget(key: bigint): void {
    this.tableChanges++
    this.uncache(key)
    this.unwritten.delete(key)
  }

  private async loadTable(file: string): Promise<ChecksumTable | null> {
    let buf: Buffer
    try {
      buf = await fsp.readFile(file)
    } catch (e) {
      // the checksum directory's disk failing must not make the objects unreadable
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.tableIoFailed(e)
      return null
    }
    const table = decodeTable(buf)
    if (!table) this.log.warn(`checksums: ${file} is not a checksum file; its object is served unverified`)
    return table ?? null
  }

  /**
   * Marks `key` dirty in the intent log before a mutation (`intent.release` must follow). When
   * the log cannot be written, the object loses its table instead — served unverified rather
   * than failing the mutation or risking a table that a crash would leave wrong — and false is
   * answered (nothing to release).
   */
  private async mark(key: bigint, opts: { unstable?: boolean; ahead?: readonly bigint[] } = {}): Promise<boolean> {
    try {
      await this.intent.mark(key, opts)
      return true
    } catch (e) {
      this.tableIoFailed(e)
      this.forget(key)
      this.remember(key, null)
      await fsp.rm(this.tableFile(key), { force: true }).catch(() => undefined)
      return false
    }
  }

  /** Logs a failed checksum file access, at most once per TABLE_IO_LOG_INTERVAL_MS. */
  private tableIoFailed(e: unknown): void {
    const now = Date.now()
    if (now - this.tableIoLoggedMs < TABLE_IO_LOG_INTERVAL_MS) return
    this.tableIoLoggedMs = now
    this.log.error(`checksums: ${String(e)}; the objects concerned are served unverified`)
  }

  /**
   * The object's new table, under its intent mark: kept in memory, its file written later
   * (`unwritten`). Until the mark is cleaned, a crash makes the table be recomputed anyway.
   */
  private setTable(key: bigint, table: ChecksumTable): void {
    this.tableChanges++
    this.remember(key, table)
    this.unwritten.add(key)
  }

  /**
   * Writes the object's table file if the table in memory is newer (into the page cache: synced
   * by syncTables). A failure leaves the object without a trusted table — served unverified —
   * rather than a file that may hold an older table.
   */
  private writeTableNow(key: bigint): void {
    if (!this.unwritten.delete(key)) return
    const table = this.tables.get(key)
    if (!table) return
    const file = this.tableFile(key)
    try {
      overwriteFileSync(file, encodeTable(table))
    } catch (e) {
      this.tableIoFailed(e)
      this.tableChanges++
      this.uncache(key)
      this.tables.set(key, null)
      try {
        fs.rmSync(file, { force: true })
      } catch {
        // the directory's disk is failing: the object's mark stays until the clean fails too
      }
    }
  }

  /** Drops the object's table (and, with `stale`, its stale copies' ones). */
  private async dropTables(key: bigint, opts: { stale?: boolean } = {}): Promise<void> {
    this.forget(key)
    await fsp.rm(this.tableFile(key), { force: true })
    // a read that loaded the file before it was gone must not leave its table cached: the object
    // would keep a table without a file, and every read of it would count as corruption (the
    // wire fuzz found it: reads racing a REMOVE_PEER)
    this.forget(key)
    if (!opts.stale) return
    const prefix = `${keyFileName(key)}.`
    const names = await fsp.readdir(this.opts.dir).catch(() => [] as string[])
    await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => fsp.rm(path.join(this.opts.dir, n), { force: true })))
  }

  /**
   * Writes the checksum files of `keys` and makes them durable (before their intent marks are
   * dropped): with several, by one syncfs of their filesystem; else an fdatasync each.
   */
  private async syncTables(keys: bigint[]): Promise<void> {
    for (const key of keys) this.writeTableNow(key)
    if (this.opts.nosync) return
    if (keys.length >= TABLE_SYNCFS_MIN_FILES && syncfsAvailable()) return syncfsDir(this.opts.dir)
    for (let i = 0; i < keys.length; i += TABLE_SYNC_BATCH) {
      await Promise.all(
        keys.slice(i, i + TABLE_SYNC_BATCH).map(async (key) => {
          let fh: fsp.FileHandle
          try {
            fh = await fsp.open(this.tableFile(key), 'r')
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
            throw e
          }
          try {
            await fh.datasync()
          } finally {
            await fh.close()
          }
        }),
      )
    }
  }
}
