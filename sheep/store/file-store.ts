// The object store: one file per object replica or erasure-coded strip (`<oid>_<i>`) on one of the node's object disks (md.c), at the
// path its store driver's layout gives (layout.ts: plain or tree, behaviour.md §12.3–12.4).
// Creates go through `<name>.tmp` + rename so a crash never leaves half an object under its real
// name; objects created piece by piece (recovery of objects bigger than one request) go through
// `<name>.<n>.tmp` files of their own the same way. Writes are made durable (fdatasync, and the
// directory fsync'd after a create) unless nosync. Mutations of one object are serialised;
// reads are not, except recovery reads, which queue behind the mutations accepted before them.
//
// Where each object is (which disk) is kept in memory from the start-up scan of every disk, so
// an object found on another disk than its hashed one is still found. Plugging or unplugging a
// disk moves the objects whose disk changed, one at a time in the object's own queue, so a
// write that comes during the move waits for it and lands on the new copy. A disk that fails
// (EIO, its directory removed, its file system unmounted) is taken out: its objects are
// forgotten, the request is answered NETWORK_ERROR so that the gateway tries another replica,
// and `onDiskFailure` lets the node recover them from the other replicas (md_handle_eio).
//
// Object files stay open between requests (fd-cache.ts), opened with O_DSYNC unless nosync, so a
// write of one piece is one pwrite that returns once its data is on the disk (as the original's
// default_write: open(O_DSYNC), pwrite) and a read one pread. Nothing is written to the page
// cache in pieces larger than PAGE_CACHE_PIECE_BYTES (native-io.ts: a small write into the large
// folio a large write leaves costs several times more), so a larger durable write is its pieces
// and an fdatasync, in one job on the thread pool. A durable write of up to
// GROUP_COMMIT_MAX_BYTES is instead copied into the object's page cache and committed through
// the disk's write-back log (wb-log.ts): the writes that arrive together share one O_DSYNC
// append, where each in place would cost a device flush of its own. A cached descriptor keeps
// naming the file it opened, so the store drops it whenever the object's file changes under its
// name (create, move, removal) and when its disk goes; and as an open no longer notices a disk
// directory removed or unmounted under it, a disk whose descriptor is used is checked at most
// every DISK_RECHECK_MS.
//
// An unstable write (the NBD server's write-back cache) goes through a second descriptor, without
// O_DSYNC, and leaves its object in `unsynced` and its byte range in `dirtyRanges`; `flush`
// appends those ranges' bytes to each disk's write-back log (wb-log.ts: one sequential write and
// one fdatasync, the objects' pages written back by the log's checkpoints), or where it cannot
// (no syncfs, a file system without birth times, more than WBLOG_FLUSH_MAX_BYTES to log)
// fdatasyncs the objects (or, with several, syncs each disk's filesystem at once: native-io.ts).
// A move to the stale area syncs first, so the stale copy has every write it was acknowledged with.
import { GroupRun, KeyedQueue } from '../../lib/async.js'
import { BufferPool } from '../../lib/buffer-pool.js'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from '../../lib/log.js'
import { SD_RES_NETWORK_ERROR, SD_RES_NO_OBJ, SD_RES_SUCCESS, SD_RES_UNKNOWN } from '../../lib/proto.js'
import { type Disk, DiskSet, freeSpaceOf, purgeDirectory } from './disks.js'
import { FdCache, type FdLease, fdatasyncFd, preadFd, syncDir } from './fd-cache.js'
import { NOT_CACHED } from './driver.js'
import type { CreateOptions, DiskStats, DiskUsage, ObjectWrite, ReadOptions, StagedObject, StoreDriver, WriteBackLogStats } from './driver.js'
import { parseKeyFileName } from '../../lib/oid.js'
import { DEFAULT_STORE_LAYOUT, type StoreLayout, oidFileName } from './layout.js'
import { crc32Blocks, preadCrc32Blocks } from './crc32.js'
import { PAGE_CACHE_PIECE_BYTES, errnoError, readCachedNow, syncfsAvailable, syncfsDir, writeInPieces, writeInPiecesNow } from './native-io.js'
import { DiskWbLog, type Incarnation, type WbLogEntry, WBLOG_FLUSH_MAX_BYTES, WBLOG_RECORD_HEADER_BYTES, wbLogRecordHeader } from './wb-log.js'

export { oidFileName }

/** A stale copy: `<key file name>.<epoch>`. */
const STALE_FILE = /^([0-9a-f]{16}(?:_\d{1,2})?)\.(\d+)$/
const STALE_DIR = '.stale'
/** Zero runs at least this long are left as holes instead of being written. */
const SPARSE_CHUNK_BYTES = 64 * 1024
const ZERO_CHUNK = Buffer.alloc(SPARSE_CHUNK_BYTES)
/** GET_HASH reads an object in pieces of this size, so hashing a 2 GiB object needs 4 MiB. */
const HASH_READ_CHUNK_BYTES = 4 * 1024 * 1024
/** Objects moved between disks are copied in pieces of this size. */
const MOVE_CHUNK_BYTES = 1024 * 1024
/** A read that finds its object moved meanwhile follows it this many times. */
const READ_FOLLOW_MOVES = 3
/** Passes of a rebalance: objects created on a disk while it was unplugged are caught by the next. */
const REBALANCE_MAX_PASSES = 3
/**
 * A flush with at least this many objects to sync makes each disk's filesystem durable with one
 * syncfs (native-io.ts) instead of one fdatasync per object; fewer are synced one by one (syncfs
 * also writes back whatever else is dirty on that filesystem).
 */
const FLUSH_SYNCFS_MIN_OBJECTS = 4
/** Error codes that mean the disk itself failed, whatever the object. */
const DISK_FAILURE_CODES = new Set(['EIO', 'EROFS', 'ENODEV', 'ENXIO', 'ESTALE', 'EUCLEAN'])
/** Error codes that mean the disk failed when its directory is no longer the one plugged. */
const DISK_GONE_CODES = new Set(['ENOENT', 'ENOTDIR'])
/** Sector size of st_blocks. */
const SECTOR_BYTES = 512n
/**
 * A cached descriptor's disk is checked to be the one plugged (not removed, not unmounted) when
 * it was last checked longer ago than this: one stat per disk every few requests, not per request.
 */
const DISK_RECHECK_MS = 10
/**
 * Unstable writes up to this size are written from the event loop (a copy into the page cache,
 * a few µs) rather than handed to the thread pool: on a busy machine the hand-off and the wake-up
 * of a pool thread cost far more than the copy. Larger ones, and every durable write, use the pool.
 */
const UNSTABLE_INLINE_WRITE_MAX_BYTES = 64 * 1024
/**
 * Durable writes up to this size are committed through the disk's write-back log (group commit):
 * the bytes go to the object's page cache and a record of them to the log, and every record that
 * arrives while the log's previous append is under way shares the next one — one write and one
 * device flush for all of them, where each O_DSYNC write to an object file costs a flush of its
 * own. Larger writes are written in place with O_DSYNC: logged, their bytes would reach the disk
 * twice.
 */
const GROUP_COMMIT_MAX_BYTES = 64 * 1024
/** A disk whose write-back log fails (full) is warned of at most this often. */
const WBLOG_WARN_INTERVAL_MS = 60_000
/**
 * Reads up to this size are first tried on the event loop without waiting for the disk
 * (native-io.ts, readCachedNow: preadv2 with RWF_NOWAIT): served from the page cache they skip the
 * thread pool's two wake-ups; a read the cache cannot serve whole goes to the pool as before.
 */
const CACHED_READ_INLINE_MAX_BYTES = 64 * 1024
/** The same for a read the sheep serves alone (ReadOptions.lone): nothing else waits for the loop. */
const LONE_CACHED_READ_INLINE_MAX_BYTES = 1024 * 1024

/** How large a read may be to be tried on the event loop (readNow). */
function inlineReadMaxBytes(opts: ReadOptions | undefined): number {
  return opts?.lone ? LONE_CACHED_READ_INLINE_MAX_BYTES : CACHED_READ_INLINE_MAX_BYTES
}

interface Location {
  readonly disk: Disk
  readonly size: number
}

export interface FileStoreOptions {
  /** Object disks; the first path of a single-disk node is `<base>/obj`. */
  disks: readonly string[]
  nosync: boolean
  log: Logger
  layout?: StoreLayout
  /** Where each disk's write-back log is checkpointed (wb-log.ts; tests make it small). */
  wbLogCheckpointBytes?: number
  /** false: flushes sync the objects instead of logging them (tests of that path). */
  writeBackLog?: boolean
  /** false: durable writes are written in place with O_DSYNC, never committed through the log. */
  groupCommit?: boolean
}

export class FileStore implements StoreDriver {
  readonly disks: DiskSet
  private layoutNow: StoreLayout
  private readonly objects = new Map<bigint, Location>()
  /** oid → epoch → the disk of that stale copy. */
  private readonly stale = new Map<bigint, Map<number, Disk>>()
  private readonly mutations = new KeyedQueue<bigint>()
  private used = 0n
  private readonly dirSyncs = new Map<string, GroupRun>()
  /** Open object files, by store key (O_DSYNC unless nosync). */
  private readonly fds: FdCache<bigint, Disk>
  /** Open object files for unstable writes (no O_DSYNC; the same cache when nosync). */
  private readonly unstableFds: FdCache<bigint, Disk>
  /** Objects with unstable writes not yet made durable, and their disk. */
  private readonly unsynced = new Map<bigint, Disk>()
  /** Syncs under way (flushes', a stale move's): the objects they took out of `unsynced` are not durable yet. */
  private readonly syncsUnderWay = new Set<Promise<void>>()
  /** Each disk's write-back log (none when nosync or without syncfs). */
  private readonly wbLogs = new Map<Disk, DiskWbLog>()
  /** The byte ranges of the unstable writes since the last flush, per object: what a flush logs. */
  private readonly dirtyRanges = new Map<bigint, Array<[number, number]>>()
  private dirtyBytes = 0
  /** More than WBLOG_FLUSH_MAX_BYTES were written since the last flush: the next one syncs instead of logging. */
  private dirtyOverflow = false
  /**
   * Objects with records in a write-back log not checkpointed yet, and that log file's number
   * (Infinity while the append is under way): a durable write to one of them is logged too, so
   * that no older record of it can be written back over it after a restart.
   */
  private readonly logged = new Map<bigint, { disk: Disk; seq: number }>()
  private readonly wbStats: WriteBackLogStats = {
    flushesLogged: 0,
    writesCommitted: 0,
    commitGroups: 0,
    objectsSynced: 0,
    bytesLogged: 0,
    checkpoints: 0,
    recordsWrittenBack: 0,
  }
  /** `close` began: no write-back log is used or begun any more. */
  private logsClosed = false
  /** When each disk's failing log was last warned of (performance.now() ms). */
  private readonly logWarnedMs = new Map<Disk, number>()
  /** When each disk was last found intact (performance.now() ms). */
  private readonly diskCheckedMs = new Map<Disk, number>()
  /** Numbers the temporary files of staged creates (one sheep per directory: unique enough). */
  private stagedCount = 0
  private rebalancing: Promise<void> = Promise.resolve()
  private readonly log: Logger
  /** Told (once per disk, after the request that found it) that a disk failed and was taken out. */
  onDiskFailure: (diskPath: string, disksLeft: number) => void = () => undefined

  constructor(private readonly opts: FileStoreOptions) {
    this.log = opts.log
    this.layoutNow = opts.layout ?? DEFAULT_STORE_LAYOUT
    this.disks = new DiskSet(opts.log)
    this.fds = new FdCache(fs.constants.O_RDWR | (opts.nosync ? 0 : fs.constants.O_DSYNC))
    this.unstableFds = opts.nosync ? this.fds : new FdCache(fs.constants.O_RDWR)
    for (const p of opts.disks) {
      const added = this.disks.add(p, { purge: false })
      if (typeof added === 'string') this.log.error(added)
    }
    if (this.disks.size === 0) throw new Error("There isn't any available disk!")
  }

  get name(): string {
    return this.layoutNow.name
  }

  get layout(): StoreLayout {
    return this.layoutNow
  }

  get diskCount(): number {
    return this.disks.size
  }

  recordedSpace(): bigint {
    return this.disks.space()
  }

  /** The first disk's directory (single-disk nodes: `<base>/obj`). */
  get dir(): string {
    return (this.disks.list()[0] as Disk).path
  }

  /** Switches the store driver (format, or a new node joining a formatted cluster), scanning afresh. */
  async useLayout(layout: StoreLayout): Promise<void> {
    if (layout === this.layoutNow) return
    this.layoutNow = layout
    await this.init()
  }

  async init(): Promise<void> {
    this.dropAllFds()
    await this.closeWbLogs()
    this.objects.clear()
    this.stale.clear()
    this.used = 0n
    for (const disk of [...this.disks.list()]) {
      try {
        await this.scanDisk(disk)
        const replayed = await this.wbLogOf(disk)?.recover((entry) => this.replayRecord(disk, entry))
        if (replayed) this.log.warn(`${disk.path}: ${replayed} write(s) written back from the write-back log after a restart`)
        this.wbStats.recordsWrittenBack += replayed ?? 0
      } catch (e) {
        this.log.error(`${disk.path}: ${e instanceof Error ? e.message : String(e)}; the disk is not used`)
        this.forgetDisk(disk)
      }
    }
    if (this.disks.size === 0) throw new Error("There isn't any available disk!")
  }

  private async prepareDisk(disk: Disk): Promise<void> {
    await fsp.mkdir(path.join(disk.path, STALE_DIR), { recursive: true })
    for (const dir of this.layoutNow.dirs) await fsp.mkdir(path.join(disk.path, dir), { recursive: true })
  }

  /** Finds the disk's objects and stale copies; leftover temporary files are removed. */
  private async scanDisk(disk: Disk): Promise<void> {
    await this.prepareDisk(disk)
    const staleDir = path.join(disk.path, STALE_DIR)
    for (const name of await fsp.readdir(staleDir)) {
      const m = STALE_FILE.exec(name)
      const key = m ? parseKeyFileName(m[1] as string) : undefined
      if (m && key !== undefined) this.trackStale(key, Number(m[2]), disk)
      else if (name.endsWith('.tmp')) await fsp.rm(path.join(staleDir, name), { force: true })
    }
    for (const dir of this.layoutNow.dirs) {
      for (const entry of await fsp.readdir(path.join(disk.path, dir), { withFileTypes: true })) {
        if (!entry.isFile()) continue
        const file = path.join(disk.path, dir, entry.name)
        if (entry.name.endsWith('.tmp')) await fsp.rm(file, { force: true })
        else {
          const key = parseKeyFileName(entry.name)
          if (key !== undefined) await this.found(key, disk, file)
        }
      }
    }
  }

  /** An object found by the scan; a second copy (a move cut short by a crash) keeps the hashed disk's. */
  private async found(oid: bigint, disk: Disk, file: string): Promise<void> {
    const st = await fsp.stat(file)
    const other = this.objects.get(oid)
    if (other && other.disk !== disk) {
      const keep = this.disks.diskFor(oid) === disk ? disk : other.disk
      const drop = keep === disk ? other.disk : disk
      this.log.warn(`${oidFileName(oid)} is on ${other.disk.path} and ${disk.path}: the copy on ${drop.path} is removed`)
      await fsp.rm(this.objectFile(drop, oid), { force: true })
      if (keep === other.disk) return
    }
    this.track(oid, disk, st.size)
  }

  async purge(): Promise<void> {
    this.dropAllFds()
    await this.closeWbLogs()
    for (const disk of this.disks.list()) {
      purgeDirectory(disk.path)
      await this.prepareDisk(disk)
    }
    this.objects.clear()
    this.stale.clear()
    this.used = 0n
  }

  // ---- the stale area --------------------------------------------------------------------------

  moveToStale(oid: bigint, epoch: number): Promise<void> {
    return this.serialise(oid, async () => {
      const loc = this.objects.get(oid)
      if (!loc) return
      const to = this.staleFile(loc.disk, oid, epoch)
      const failed = await this.onDisk(loc.disk, async () => {
        // the stale copy must have every write acknowledged with this epoch, unstable ones too,
        // and those whose durability is a log's record: the log is never replayed into it
        if (this.unsynced.has(oid)) await this.underWay(this.syncObject(oid, loc.disk))
        if (this.logged.has(oid)) await this.syncLogged(oid, loc.disk)
        try {
          await fsp.rename(this.objectFile(loc.disk, oid), to)
        } catch (e) {
          // the stale directory itself went missing (removed by hand): make it again, once
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !fs.existsSync(this.objectFile(loc.disk, oid))) throw e
          await fsp.mkdir(path.dirname(to), { recursive: true })
          await fsp.rename(this.objectFile(loc.disk, oid), to)
        }
        return SD_RES_SUCCESS
      })
      // a failed disk took the object with it: it is no longer live here either way
      if (failed !== SD_RES_SUCCESS) return
      this.untrack(oid)
      this.trackStale(oid, epoch, loc.disk)
    })
  }

  hasStale(oid: bigint, epoch: number): boolean {
    return this.stale.get(oid)?.has(epoch) === true
  }

  async readStale(oid: bigint, epoch: number, offset: number, length: number): Promise<Buffer | number> {
    const disk = this.stale.get(oid)?.get(epoch)
    if (!disk) return SD_RES_NO_OBJ
    return this.onDisk(disk, () => readRange(this.staleFile(disk, oid, epoch), offset, length))
  }

  listStale(): bigint[] {
    return [...this.stale.keys()]
  }

  /** Removes every stale copy, one object at a time in its queue; the directories stay. */
  async purgeStale(): Promise<void> {
    await Promise.all(
      [...this.stale.keys()].map((oid) =>
        this.serialise(oid, async () => {
          for (const [epoch, disk] of this.stale.get(oid) ?? []) await fsp.rm(this.staleFile(disk, oid, epoch), { force: true })
          this.stale.delete(oid)
        }),
      ),
    )
  }

  private staleFile(disk: Disk, oid: bigint, epoch: number): string {
    return path.join(disk.path, STALE_DIR, `${oidFileName(oid)}.${epoch}`)
  }

  private trackStale(oid: bigint, epoch: number, disk: Disk): void {
    const copies = this.stale.get(oid) ?? new Map<number, Disk>()
    copies.set(epoch, disk)
    this.stale.set(oid, copies)
  }

  // ---- objects ---------------------------------------------------------------------------------

  /** Asks the disk, not only memory: a replica deleted by hand must show as missing (vdi check -e). */
  exists(oid: bigint): boolean {
    const loc = this.objects.get(oid)
    if (!loc) return false
    if (fs.existsSync(this.objectFile(loc.disk, oid))) return true
    if (this.objects.get(oid) !== loc) return this.objects.has(oid)
    if (!this.disks.intact(loc.disk)) this.diskFailed(loc.disk, 'its directory is gone')
    else this.untrack(oid)
    return false
  }

  readNow(oid: bigint, offset: number, length: number, opts?: ReadOptions): Buffer | typeof NOT_CACHED | undefined {
    if (length > inlineReadMaxBytes(opts)) return undefined
    const loc = this.objects.get(oid)
    if (!loc) return undefined
    const lease = this.fds.hit(oid, loc.disk, this.objectFile(loc.disk, oid))
    if (!lease) return undefined
    try {
      // a disk found gone, like any failure, is for read() to find and report
      if (!this.diskStillThere(loc.disk)) return undefined
      const pooled = opts?.pool && BufferPool.fits(length) ? opts.pool.acquire(length) : undefined
      const buf = pooled ?? Buffer.allocUnsafe(length)
      if (!readCachedNow(lease.fd, buf, offset)) {
        if (pooled) opts?.pool?.release(pooled)
        return NOT_CACHED
      }
      if (opts?.crcs) crc32Blocks(buf, opts.crcs.blockBytes, opts.crcs.out, 0)
      return buf
    } finally {
      lease.release()
    }
  }

  async read(oid: bigint, offset: number, length: number, opts?: ReadOptions): Promise<Buffer | number> {
    const now = opts?.uncached ? NOT_CACHED : this.readNow(oid, offset, length, opts)
    if (now instanceof Buffer) return now
    // what the page cache did not hold a moment ago goes straight to the thread pool
    const tryCache = now !== NOT_CACHED
    for (let follow = 0; ; follow++) {
      const loc = this.objects.get(oid)
      if (!loc) return SD_RES_NO_OBJ
      const got = await this.onDisk(loc.disk, () => this.readObject(oid, loc.disk, offset, length, opts, tryCache))
      if (got !== SD_RES_NO_OBJ) return got
      // moved to another disk meanwhile (plug, unplug): read it there
      const now = this.objects.get(oid)
      if (now && now !== loc && follow < READ_FOLLOW_MOVES) continue
      return this.missing(loc.disk)
    }
  }

  /** Reads through the object's cached descriptor; SD_RES_NO_OBJ when its file is not there. */
  private async readObject(
    oid: bigint,
    disk: Disk,
    offset: number,
    length: number,
    opts: ReadOptions | undefined,
    tryCache: boolean,
  ): Promise<Buffer | number> {
    const lease = await this.lease(oid, disk)
    if (typeof lease === 'number') return lease
    const crcs = opts?.crcs
    const pooled = opts?.pool && BufferPool.fits(length) ? opts.pool.acquire(length) : undefined
    const buf = pooled ?? Buffer.allocUnsafe(length)
    try {
      // what the page cache holds is read here: a trip to the thread pool costs more than the copy
      if (tryCache && length <= inlineReadMaxBytes(opts) && readCachedNow(lease.fd, buf, offset)) {
        if (crcs) crc32Blocks(buf, crcs.blockBytes, crcs.out, 0)
        return buf
      }
      if (crcs && preadCrc32Blocks) {
        // checksummed on the pool thread as it reads, not on the event loop after
        const n = await preadCrc32Blocks(lease.fd, buf, offset, crcs.blockBytes, crcs.out)
        if (n < 0) throw errnoError(-n, `read of ${oidFileName(oid)}`)
        return buf
      }
      await readFdInto(lease.fd, buf, length, offset)
      if (crcs) crc32Blocks(buf, crcs.blockBytes, crcs.out, 0)
      return buf
    } catch (e) {
      // no thread-pool call holds the buffer any more: the read finished, badly
      if (pooled) opts?.pool?.release(pooled)
      throw e
    } finally {
      lease.release()
    }
  }

  /**
   * The object's open descriptor on `disk`: SD_RES_NO_OBJ when its file is not there,
   * SD_RES_NETWORK_ERROR when the disk was found gone (and taken out).
   */
  private async lease(oid: bigint, disk: Disk, fds = this.fds): Promise<FdLease | number> {
    const hit = fds.hit(oid, disk, this.objectFile(disk, oid))
    if (hit) {
      if (this.diskStillThere(disk)) return hit
      hit.release()
      this.diskFailed(disk, 'its directory is gone')
      return SD_RES_NETWORK_ERROR
    }
    try {
      return await fds.open(oid, disk, this.objectFile(disk, oid), () => this.disks.has(disk))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return SD_RES_NO_OBJ
      throw e
    }
  }

  /** Whether `disk` is still the directory plugged, asking the file system at most every DISK_RECHECK_MS. */
  private diskStillThere(disk: Disk): boolean {
    const now = performance.now()
    if (now - (this.diskCheckedMs.get(disk) ?? Number.NEGATIVE_INFINITY) < DISK_RECHECK_MS) return true
    if (!this.disks.has(disk) || !this.disks.intact(disk)) return false
    this.diskCheckedMs.set(disk, now)
    return true
  }

  /**
   * Makes every unstable write that returned before the call durable: the objects written since
   * the last flush are synced here, and the syncs other flushes started earlier — which took
   * their objects out of `unsynced` — are waited for, since the writes they cover returned before
   * this call too. A burst of flushes (an NBD client sends one per free slot of its queue) thus
   * costs one sync, and none of them returns before the data it promises is on disk.
   */
  async flush(): Promise<void> {
    const waits = [...this.syncsUnderWay]
    let objects = [...this.unsynced]
    if (objects.length > 0) {
      if (this.dirtyOverflow) this.forgetDirtyRanges()
      else {
        const logged = this.logFlush(objects)
        if (logged) waits.push(this.underWay(logged.appended))
        objects = logged?.rest ?? objects
      }
    }
    if (objects.length > 0) waits.push(this.underWay(this.syncFlush(objects)))
    await Promise.all(waits)
  }

  /** A clean stop: each disk's write-back log checkpointed (the disk synced, the log removed). */
  async close(): Promise<void> {
    // from here on writes go in place (the daemon has stopped serving before it closes the store)
    this.logsClosed = true
    for (const [disk, log] of [...this.wbLogs]) {
      await log.checkpointNow().catch((e: unknown) => this.log.error(`${disk.path}: checkpointing the write-back log: ${String(e)}`))
      await log.close()
    }
  }

  writeBackLogStats(): WriteBackLogStats {
    return { ...this.wbStats }
  }

  /** A flush of `objects` by syncing them: each, or with several each disk's file system. */
  private syncFlush(objects: Array<[bigint, Disk]>): Promise<void> {
    this.wbStats.objectsSynced += objects.length
    for (const [oid] of objects) this.dropDirtyRanges(oid)
    return objects.length >= FLUSH_SYNCFS_MIN_OBJECTS && syncfsAvailable() ? this.flushFilesystems(objects) : this.syncObjects(objects)
  }

  /**
   * A flush by the write-back logs: the bytes of every range written since the last flush are read
   * from the page cache and appended to their disk's log, all in this turn, so that a durable write
   * coming after finds its object `logged` and appends its own record after these. Objects that
   * cannot be logged (no log, no ranges, a mutation under way, a descriptor not at hand, no birth
   * time) are left in `rest` for a sync; undefined when nothing was logged.
   */
  private logFlush(objects: Array<[bigint, Disk]>): { appended: Promise<void>; rest: Array<[bigint, Disk]> } | undefined {
    const rest: Array<[bigint, Disk]> = []
    const byDisk = new Map<Disk, { records: Buffer[]; oids: Array<[bigint, Disk]> }>()
    for (const [oid, disk] of objects) {
      if (this.unsynced.get(oid) !== disk) continue
      // an object with a mutation under way is synced instead: its bytes may be half written
      const log = this.wbLogOf(disk)
      const records = log && !this.mutations.busy(oid) ? this.recordsOf(oid, disk) : undefined
      if (!records) {
        rest.push([oid, disk])
        continue
      }
      this.unsynced.delete(oid)
      this.logged.set(oid, { disk, seq: Number.POSITIVE_INFINITY })
      let batch = byDisk.get(disk)
      if (!batch) {
        batch = { records: [], oids: [] }
        byDisk.set(disk, batch)
      }
      batch.records.push(...records)
      batch.oids.push([oid, disk])
    }
    if (byDisk.size === 0) return rest.length === objects.length ? undefined : { appended: Promise.resolve(), rest }
    const appended = Promise.all(
      [...byDisk].map(async ([disk, { records, oids }]) => {
        const log = this.wbLogOf(disk) as DiskWbLog
        let seq: number
        try {
          seq = await log.append(records)
          this.wbStats.flushesLogged++
          for (const rec of records) this.wbStats.bytesLogged += rec.length
        } catch (e) {
          this.warnLogFailure(disk, `the write-back log failed (${String(e)}); flushed objects are synced instead`)
          for (const [oid] of oids) if (!this.unsynced.has(oid)) this.unsynced.set(oid, disk)
          await this.syncFlush(oids)
          // records of these objects from earlier flushes would be written back over what was
          // just synced after a restart of the host: the log is checkpointed
          await log.checkpointNow()
          return
        }
        for (const [oid] of oids) {
          const now = this.logged.get(oid)
          if (now && now.disk === disk && now.seq === Number.POSITIVE_INFINITY) this.logged.set(oid, { disk, seq })
        }
      }),
    ).then(() => undefined)
    return { appended, rest }
  }

  /**
   * The log records of `oid`'s ranges written since the last flush, read now from the page cache
   * through its cached descriptor; undefined when it cannot be logged (its ranges are then
   * dropped: the object is synced instead).
   */
  private recordsOf(oid: bigint, disk: Disk): Buffer[] | undefined {
    const ranges = this.dirtyRanges.get(oid)
    if (!ranges) return undefined
    this.dropDirtyRanges(oid)
    const lease = this.unstableFds.hit(oid, disk, this.objectFile(disk, oid))
    if (!lease) return undefined
    try {
      const inc = lease.incarnation
      if (!inc) return undefined
      // each record as its header and its bytes, written by one writev: no copy into a record
      return mergedRanges(ranges).flatMap(([start, end]) => {
        const data = Buffer.allocUnsafe(end - start)
        let filled = 0
        while (filled < data.length) {
          const n = fs.readSync(lease.fd, data, filled, data.length - filled, start + filled)
          if (n === 0) break
          filled += n
        }
        const bytes = data.subarray(0, filled)
        return [wbLogRecordHeader(oid, inc, start, bytes), bytes]
      })
    } catch {
      return undefined
    } finally {
      lease.release()
    }
  }

  /** The log of `disk`, made on first use; undefined when there is none (nosync, no syncfs). */
  private wbLogOf(disk: Disk): DiskWbLog | undefined {
    if (this.opts.nosync || this.opts.writeBackLog === false || this.logsClosed || !syncfsAvailable() || !this.disks.has(disk)) return undefined
    let log = this.wbLogs.get(disk)
    if (!log) {
      const made = new DiskWbLog(disk.path, () => syncfsDir(disk.path), this.opts.wbLogCheckpointBytes)
      made.onCheckpoint = (seq, done) =>
        done.then(
          () => {
            this.wbStats.checkpoints++
            for (const [oid, at] of [...this.logged]) if (at.disk === disk && at.seq <= seq) this.logged.delete(oid)
          },
          (e: unknown) => this.log.warn(`${disk.path}: a checkpoint of the write-back log failed: ${String(e)}`),
        )
      made.onGroup = () => void this.wbStats.commitGroups++
      this.wbLogs.set(disk, made)
      log = made
    }
    return log
  }

  private async closeWbLogs(): Promise<void> {
    const logs = [...this.wbLogs.values()]
    this.wbLogs.clear()
    this.logged.clear()
    this.forgetDirtyRanges()
    await Promise.all(logs.map((log) => log.close()))
  }

  private forgetDirtyRanges(): void {
    this.dirtyRanges.clear()
    this.dirtyBytes = 0
    this.dirtyOverflow = false
  }

  /** Notes an unstable write's range for the next flush's log (until too much is noted). */
  private noteDirty(oid: bigint, offset: number, length: number): void {
    if (this.dirtyOverflow || length === 0) return
    this.dirtyBytes += length
    if (this.dirtyBytes > WBLOG_FLUSH_MAX_BYTES) {
      this.dirtyRanges.clear()
      this.dirtyOverflow = true
      return
    }
    const ranges = this.dirtyRanges.get(oid)
    if (ranges) ranges.push([offset, offset + length])
    else this.dirtyRanges.set(oid, [[offset, offset + length]])
  }

  /**
   * After a durable write to an object with records in a log not checkpointed yet: the write is
   * logged too, after them, so that a restart never writes an older record back over it. If it
   * cannot be, the log is checkpointed (every record it holds is then on disk and none is replayed).
   */
  private async logDurableWrite(oid: bigint, disk: Disk, inc: Incarnation | undefined, offset: number, data: Buffer): Promise<void> {
    const log = this.wbLogOf(disk)
    if (!log) return
    try {
      if (!inc) throw new Error('no birth time')
      const seq = await log.append([wbLogRecordHeader(oid, inc, offset, data), data])
      const now = this.logged.get(oid)
      if (now && now.disk === disk && now.seq < seq) this.logged.set(oid, { disk, seq })
    } catch (e) {
      this.log.warn(`${disk.path}: logging a durable write failed (${String(e)}); checkpointing the write-back log`)
      await log.checkpointNow()
    }
  }

  /**
   * The log a durable write of `length` bytes to `oid` is committed through, or undefined when it
   * is written in place: no log (nosync, no syncfs, turned off), or a large write to an object
   * without records in a log (one with records must be logged after them anyway).
   */
  private groupCommitLog(oid: bigint, disk: Disk, length: number): DiskWbLog | undefined {
    if (this.opts.groupCommit === false) return undefined
    if (length > GROUP_COMMIT_MAX_BYTES && !this.logged.has(oid)) return undefined
    return this.wbLogOf(disk)
  }

  /**
   * A durable write by group commit: the bytes into the object's page cache, then a record of
   * them appended to the disk's log with the other writes of the moment, durable when this
   * returns. The object's pages reach its file at the log's next checkpoint (or sooner, by the
   * kernel). If the log fails, the object is synced instead.
   */
  private async commitDurableWrite(w: ObjectWrite, disk: Disk, log: DiskWbLog, fd: number, inc: Incarnation): Promise<void> {
    if (w.data.length <= UNSTABLE_INLINE_WRITE_MAX_BYTES) writeInPiecesNow(fd, w.data, w.offset)
    else await writeInPieces(fd, w.data, w.offset, false)
    let seq: number
    try {
      seq = await log.commit(wbLogRecordHeader(w.oid, inc, w.offset, w.data), w.data)
    } catch (e) {
      this.warnLogFailure(disk, `the write-back log failed (${String(e)}); durable writes are synced in place instead`)
      await fdatasyncFd(fd)
      // older records of the object would be written back over this write after a restart of
      // the host: the log is checkpointed (its records' objects synced, its files removed)
      if (this.logged.has(w.oid)) await log.checkpointNow()
      return
    }
    this.wbStats.writesCommitted++
    this.wbStats.bytesLogged += WBLOG_RECORD_HEADER_BYTES + w.data.length
    const now = this.logged.get(w.oid)
    if (!now || now.disk !== disk || now.seq < seq) this.logged.set(w.oid, { disk, seq })
  }

  /** A failing log (a full disk) warns once a minute per disk, not once per write. */
  private warnLogFailure(disk: Disk, text: string): void {
    const now = performance.now()
    const last = this.logWarnedMs.get(disk)
    if (last !== undefined && now - last < WBLOG_WARN_INTERVAL_MS) return
    this.logWarnedMs.set(disk, now)
    this.log.warn(`${disk.path}: ${text}`)
  }

  /** Start-up: a record of a log left before a restart, written back if its object file is still that incarnation. */
  private replayRecord(disk: Disk, entry: WbLogEntry): boolean {
    const loc = this.objects.get(entry.key)
    if (!loc || loc.disk !== disk) return false
    const fd = fs.openSync(this.objectFile(disk, entry.key), 'r+')
    try {
      const st = fs.fstatSync(fd, { bigint: true })
      if (st.birthtimeNs === 0n || st.ino !== entry.inc.ino || st.birthtimeNs !== entry.inc.birthNs) return false
      writeInPiecesNow(fd, entry.data, entry.offset)
      // the file's times as they were: the checksum layer takes an object newer than its table
      // for one written by another program, and this is the write the table was made for
      fs.futimesSync(fd, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9)
      const end = entry.offset + entry.data.length
      if (end > loc.size) this.track(entry.key, disk, end)
      return true
    } finally {
      fs.closeSync(fd)
    }
  }

  /** Counts a sync that took objects out of `unsynced` as under way (a flush waits for it) until it settles. */
  private underWay(sync: Promise<void>): Promise<void> {
    this.syncsUnderWay.add(sync)
    const done = () => this.syncsUnderWay.delete(sync)
    sync.then(done, done)
    return sync
  }

  /** An fdatasync for each object (a flush of a few). */
  private async syncObjects(objects: Array<[bigint, Disk]>): Promise<void> {
    await Promise.all(
      objects.map(async ([oid, disk]) => {
        const r = await this.onDisk(disk, () => this.syncObject(oid, disk))
        if (r === SD_RES_NETWORK_ERROR) throw Object.assign(new Error(`${disk.path} failed with unstable writes of ${oidFileName(oid)}`), { code: 'EIO' })
      }),
    )
  }

  /**
   * A flush of many objects: one syncfs per disk instead of an fdatasync (a disk cache flush)
   * per object. Writes that complete from here on are the next flush's; a disk whose syncfs
   * failed keeps its objects unsynced (and is taken out when the error says the disk failed).
   */
  private async flushFilesystems(objects: Array<[bigint, Disk]>): Promise<void> {
    const byDisk = new Map<Disk, bigint[]>()
    for (const [oid, disk] of objects) {
      if (this.unsynced.get(oid) !== disk) continue
      this.unsynced.delete(oid)
      byDisk.set(disk, [...(byDisk.get(disk) ?? []), oid])
    }
    await Promise.all(
      [...byDisk].map(async ([disk, oids]) => {
        let r: number | undefined
        try {
          r = await this.onDisk(disk, async () => void (await syncfsDir(disk.path)))
        } catch (e) {
          for (const oid of oids) if (!this.unsynced.has(oid)) this.unsynced.set(oid, disk)
          throw e
        }
        if (r === SD_RES_NETWORK_ERROR) throw Object.assign(new Error(`${disk.path} failed with unstable writes of ${oids.length} object(s)`), { code: 'EIO' })
      }),
    )
  }

  /** fdatasync of an object with unstable writes; one removed or replaced meanwhile needs none. */
  private async syncObject(oid: bigint, disk: Disk): Promise<void> {
    if (this.unsynced.get(oid) !== disk) return
    // writes that come from here on are the next flush's
    this.unsynced.delete(oid)
    const lease = await this.lease(oid, disk, this.unstableFds)
    if (lease === SD_RES_NO_OBJ) return
    if (typeof lease === 'number') throw Object.assign(new Error(`${disk.path} failed with unstable writes of ${oidFileName(oid)}`), { code: 'EIO' })
    try {
      await fdatasyncFd(lease.fd)
    } catch (e) {
      if (!this.unsynced.has(oid)) this.unsynced.set(oid, disk)
      throw e
    } finally {
      lease.release()
    }
  }

  /** fdatasync of an object whose writes a log holds (before it leaves its name: the log would not find it). */
  private async syncLogged(oid: bigint, disk: Disk): Promise<void> {
    const lease = await this.lease(oid, disk)
    if (typeof lease === 'number') return
    try {
      await fdatasyncFd(lease.fd)
    } finally {
      lease.release()
    }
  }

  /** The file holding the object now (checksums.ts compares its age with its checksums'). */
  fileOf(oid: bigint): string | undefined {
    const loc = this.objects.get(oid)
    return loc && this.objectFile(loc.disk, oid)
  }

  readAfterMutations(oid: bigint, offset: number, length: number, opts?: ReadOptions): Promise<Buffer | number> {
    return this.serialise(oid, () => this.read(oid, offset, length, opts))
  }

  write(w: ObjectWrite): Promise<number> {
    return this.serialise(w.oid, async () => {
      const loc = this.objects.get(w.oid)
      if (!loc) return SD_RES_NO_OBJ
      return this.onDisk(loc.disk, async () => {
        const unstable = w.unstable === true && !this.opts.nosync
        const log = unstable ? undefined : this.groupCommitLog(w.oid, loc.disk, w.data.length)
        // a durable write of more than one piece is fdatasync'd after its pieces: through an
        // O_DSYNC descriptor each piece would flush the disk
        const synced = !unstable && !log && !this.opts.nosync && w.data.length > PAGE_CACHE_PIECE_BYTES
        const lease = await this.lease(w.oid, loc.disk, unstable || log || synced ? this.unstableFds : this.fds)
        if (lease === SD_RES_NO_OBJ) return this.missing(loc.disk)
        if (typeof lease === 'number') return lease
        try {
          if (log && lease.incarnation) await this.commitDurableWrite(w, loc.disk, log, lease.fd, lease.incarnation)
          else if (unstable) {
            if (w.data.length <= UNSTABLE_INLINE_WRITE_MAX_BYTES) writeInPiecesNow(lease.fd, w.data, w.offset)
            else await writeInPieces(lease.fd, w.data, w.offset, false)
            this.unsynced.set(w.oid, loc.disk)
            this.noteDirty(w.oid, w.offset, w.data.length)
          } else if (log) {
            // a file system without birth times to name the file by in a record: synced in place
            await writeInPieces(lease.fd, w.data, w.offset, true)
          } else {
            // durable when it returns: synced after its pieces, or one piece through a descriptor
            // that is O_DSYNC unless nosync
            await writeInPieces(lease.fd, w.data, w.offset, synced)
            if (this.logged.size > 0 && this.logged.has(w.oid)) await this.logDurableWrite(w.oid, loc.disk, lease.incarnation, w.offset, w.data)
          }
        } finally {
          lease.release()
        }
        const end = w.offset + w.data.length
        if (end > loc.size) this.track(w.oid, loc.disk, end)
        return SD_RES_SUCCESS
      })
    })
  }

  create(w: ObjectWrite, objectSize: number, opts: CreateOptions = {}): Promise<number> {
    return this.serialise(w.oid, async () => {
      if (opts.ifAbsent && this.objects.has(w.oid)) return SD_RES_SUCCESS
      const disk = this.targetDisk(w.oid)
      const final = this.objectFile(disk, w.oid)
      const tmp = `${final}.tmp`
      const size = Math.max(objectSize, w.offset + w.data.length)
      return this.onDisk(disk, async () => {
        const fh = await fsp.open(tmp, 'w', 0o644)
        try {
          try {
            await fh.truncate(size)
            await writeSparse(fh, w.data, w.offset)
            if (!this.opts.nosync) await fh.datasync()
          } finally {
            await fh.close()
          }
          await opts.beforeVisible?.()
          await fsp.rename(tmp, final)
        } catch (e) {
          // a full disk (or a failing one) must not keep the half-written copy: it takes space,
          // and every further failed create would leave one more
          await fsp.rm(tmp, { force: true }).catch(() => undefined)
          throw e
        }
        if (!this.opts.nosync) await this.syncDir(path.dirname(final))
        await this.replaced(w.oid, disk, size)
        return SD_RES_SUCCESS
      })
    })
  }

  async beginCreate(oid: bigint, objectSize: number): Promise<StagedObject> {
    const disk = this.targetDisk(oid)
    const final = this.objectFile(disk, oid)
    const tmp = `${final}.${++this.stagedCount}.tmp`
    const fh = await fsp.open(tmp, 'w', 0o644)
    try {
      await fh.truncate(objectSize)
    } catch (e) {
      await fh.close()
      await fsp.rm(tmp, { force: true })
      throw e
    }
    /** Bytes below this may have been written: zeros there must be written, not skipped. */
    let writtenEnd = 0
    let ended = false
    const end = async (): Promise<void> => {
      if (ended) throw new Error(`staged create of ${oidFileName(oid)} already ended`)
      ended = true
      await fh.close()
    }
    return {
      write: async (offset, data) => {
        if (ended || offset < 0 || offset + data.length > objectSize) {
          throw new Error(`staged write of ${data.length} bytes at ${offset} outside ${oidFileName(oid)} (${objectSize} bytes)`)
        }
        // above everything written so far the file is still a hole: zeros can stay one
        if (offset >= writtenEnd) await writeSparse(fh, data, offset)
        else await writeAll(fh, data, offset)
        writtenEnd = Math.max(writtenEnd, offset + data.length)
      },
      commit: async (opts = {}) => {
        try {
          if (!this.opts.nosync && !ended) await fh.datasync()
        } catch (e) {
          // removed even when closing fails too: a full disk must not keep the copy
          await end().catch(() => undefined)
          await fsp.rm(tmp, { force: true })
          throw e
        }
        await end()
        return this.serialise(oid, async () => {
          try {
            // a client created it meanwhile: its object is newer than this copy
            if (opts.ifAbsent && this.objects.has(oid)) {
              await fsp.rm(tmp, { force: true })
              return SD_RES_SUCCESS
            }
            // its disk was taken out meanwhile: the copy goes with it, and recovery tries again
            if (!this.disks.has(disk)) throw new Error(`${disk.path} was unplugged during the create of ${oidFileName(oid)}`)
            await opts.beforeVisible?.()
            await fsp.rename(tmp, final)
          } catch (e) {
            await fsp.rm(tmp, { force: true })
            throw e
          }
          if (!this.opts.nosync) await this.syncDir(path.dirname(final))
          await this.replaced(oid, disk, objectSize)
          return SD_RES_SUCCESS
        })
      },
      abort: async () => {
        if (ended) return
        await end()
        await fsp.rm(tmp, { force: true })
      },
    }
  }

  remove(oid: bigint): Promise<number> {
    return this.serialise(oid, async () => {
      const loc = this.objects.get(oid)
      if (!loc) return SD_RES_NO_OBJ
      const result = await this.onDisk(loc.disk, async () => {
        await fsp.rm(this.objectFile(loc.disk, oid), { force: true })
        return SD_RES_SUCCESS
      })
      if (result === SD_RES_SUCCESS) this.untrack(oid)
      return result
    })
  }

  async sha1(oid: bigint): Promise<Buffer | number> {
    const loc = this.objects.get(oid)
    if (!loc) return SD_RES_NO_OBJ
    return this.onDisk(loc.disk, async () => {
      let fh: fsp.FileHandle
      try {
        fh = await fsp.open(this.objectFile(loc.disk, oid), 'r')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.missing(loc.disk)
        throw e
      }
      try {
        const hash = crypto.createHash('sha1')
        const buf = Buffer.allocUnsafe(Math.min(loc.size, HASH_READ_CHUNK_BYTES))
        for (let at = 0; at < loc.size; at += buf.length) {
          const length = Math.min(buf.length, loc.size - at)
          await readInto(fh, buf, length, at)
          hash.update(buf.subarray(0, length))
        }
        return hash.digest()
      } finally {
        await fh.close()
      }
    })
  }

  list(): bigint[] {
    return [...this.objects.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  }

  usedBytes(): bigint {
    return this.used
  }

  diskStats(): DiskStats[] {
    const stats = new Map<Disk, DiskStats>(this.disks.list().map((disk) => [disk, { path: disk.path, objects: 0, bytes: 0n }]))
    for (const { disk, size } of this.objects.values()) {
      const entry = stats.get(disk)
      if (!entry) continue
      entry.objects++
      entry.bytes += BigInt(size)
    }
    return [...stats.values()]
  }

  /** Resolves once every mutation queued so far has finished. */
  mutationsSettled(): Promise<void> {
    return this.mutations.settled()
  }

  // ---- capacity (md_get_info, md_get_size) -----------------------------------------------------

  /**
   * Each disk's free bytes and the bytes its objects occupy (allocated blocks; temporary files
   * and the stale area not counted), in disk order. A disk that cannot be measured reports 0.
   */
  async usage(): Promise<DiskUsage[]> {
    return Promise.all(
      this.disks.list().map(async (disk) => {
        try {
          return { path: disk.path, free: freeSpaceOf(disk.path), used: await this.allocatedBytes(disk) }
        } catch {
          return { path: disk.path, free: 0n, used: 0n }
        }
      }),
    )
  }

  /** Node capacity as the original measures it: free space plus what the objects occupy, over every disk. */
  async capacity(): Promise<{ size: bigint; used: bigint }> {
    let size = 0n
    let used = 0n
    for (const d of await this.usage()) {
      size += d.free + d.used
      used += d.used
    }
    return { size, used }
  }

  private async allocatedBytes(disk: Disk): Promise<bigint> {
    let used = 0n
    for (const dir of this.layoutNow.dirs) {
      const names = await fsp.readdir(path.join(disk.path, dir)).catch(() => [] as string[])
      for (const name of names) {
        if (parseKeyFileName(name) === undefined) continue
        const st = await fsp.stat(path.join(disk.path, dir, name), { bigint: true }).catch(() => undefined)
        if (st?.isFile()) used += st.blocks * SECTOR_BYTES
      }
    }
    return used
  }

  // ---- plugging and unplugging disks (md_plug_disks, md_unplug_disks) --------------------------

  /**
   * Adds disks (each purged first, as the original does). Answers SD_RES_UNKNOWN when none could
   * be added; otherwise the objects that now belong on the new disks move there in the background.
   */
  plug(paths: readonly string[]): number {
    const before = this.disks.size
    for (const p of paths) {
      const added = this.disks.add(p, { purge: true })
      if (typeof added === 'string') {
        this.log.error(added)
        this.log.error(`failed to add ${p}`)
        continue
      }
      fs.mkdirSync(path.join(added.path, STALE_DIR), { recursive: true })
      for (const dir of this.layoutNow.dirs) fs.mkdirSync(path.join(added.path, dir), { recursive: true })
    }
    if (this.disks.size === before) return SD_RES_UNKNOWN
    this.rebalance()
    return SD_RES_SUCCESS
  }

  /**
   * Takes disks out. Answers SD_RES_UNKNOWN when none of them was plugged. Their objects and stale
   * copies move to the remaining disks in the background; what cannot be read from them is
   * forgotten and reported through `onLost` (the node recovers it from other replicas).
   */
  unplug(paths: readonly string[], onLost: (count: number) => void): number {
    let removed = 0
    for (const p of paths) {
      const disk = this.disks.find(p)
      if (!disk) {
        this.log.error(`invalid path ${p}`)
        continue
      }
      this.disks.remove(disk)
      this.fds.dropDisk(disk)
      this.unstableFds.dropDisk(disk)
      removed++
    }
    if (removed === 0) return SD_RES_UNKNOWN
    if (this.disks.size === 0) {
      this.objects.clear()
      this.stale.clear()
      this.used = 0n
    } else this.rebalance(onLost)
    return SD_RES_SUCCESS
  }

  /** Resolves when the moves of the plugs and unplugs so far are done. */
  rebalanced(): Promise<void> {
    return this.rebalancing
  }

  private rebalance(onLost: (count: number) => void = () => undefined): void {
    this.rebalancing = this.rebalancing.then(async () => {
      let lost = 0
      let moved = 0
      for (let pass = 0; pass < REBALANCE_MAX_PASSES; pass++) {
        const misplaced = [...this.objects].filter(([oid, loc]) => loc.disk !== this.disks.diskFor(oid)).map(([oid]) => oid)
        const strays = [...this.stale].filter(([, copies]) => [...copies.values()].some((d) => !this.disks.has(d))).map(([oid]) => oid)
        if (misplaced.length === 0 && strays.length === 0) break
        for (const oid of misplaced) {
          const r = await this.serialise(oid, () => this.moveObject(oid))
          if (r === 'moved') moved++
          if (r === 'lost') lost++
        }
        for (const oid of strays) lost += await this.serialise(oid, () => this.moveStaleCopies(oid))
      }
      this.log.info(`multi-disk: ${moved} object(s) moved to their disks${lost > 0 ? `, ${lost} lost with their disk` : ''}`)
      if (lost > 0) onLost(lost)
    })
  }

  /** Moves one object to the disk it belongs on now (in its queue: no write is lost meanwhile). */
  private async moveObject(oid: bigint): Promise<'moved' | 'lost' | 'stays'> {
    const loc = this.objects.get(oid)
    const to = this.disks.diskFor(oid)
    if (!loc || !to || loc.disk === to) return 'stays'
    const from = this.objectFile(loc.disk, oid)
    try {
      await copyFileSparse(from, this.objectFile(to, oid), this.opts.nosync)
    } catch (e) {
      if (this.disks.has(loc.disk) && !isReadFailure(e, from)) {
        this.log.error(`moving ${oidFileName(oid)} to ${to.path} failed: ${String(e)}`)
        return 'stays'
      }
      // unplugged and unreadable: it goes with its disk
      this.log.error(`${oidFileName(oid)} cannot be read from ${loc.disk.path}: ${String(e)}`)
      this.untrack(oid)
      return 'lost'
    }
    this.dropFds(oid)
    this.track(oid, to, loc.size)
    await fsp.rm(from, { force: true }).catch(() => undefined)
    return 'moved'
  }

  /** Moves the stale copies of `oid` that are on unplugged disks; answers how many were lost. */
  private async moveStaleCopies(oid: bigint): Promise<number> {
    const copies = this.stale.get(oid)
    const to = this.disks.diskFor(oid)
    let lost = 0
    for (const [epoch, disk] of copies ?? []) {
      if (this.disks.has(disk) || !to) continue
      const from = this.staleFile(disk, oid, epoch)
      try {
        await copyFileSparse(from, this.staleFile(to, oid, epoch), this.opts.nosync)
        copies?.set(epoch, to)
        await fsp.rm(from, { force: true }).catch(() => undefined)
      } catch (e) {
        this.log.error(`stale ${oidFileName(oid)}.${epoch} cannot be read from ${disk.path}: ${String(e)}`)
        copies?.delete(epoch)
        lost++
      }
    }
    if (copies?.size === 0) this.stale.delete(oid)
    return lost
  }

  // ---- disk failures (md_handle_eio) -----------------------------------------------------------

  /**
   * Runs `work` on `disk`; an error that means the disk failed takes the disk out and answers
   * NETWORK_ERROR (the requester tries again, elsewhere); other errors are thrown (ENOSPC →
   * NO_SPACE, at the boundary).
   */
  private async onDisk<T>(disk: Disk, work: () => Promise<T>): Promise<T | number> {
    try {
      return await work()
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? ''
      if (DISK_FAILURE_CODES.has(code) || (DISK_GONE_CODES.has(code) && !this.disks.intact(disk))) {
        this.diskFailed(disk, String(e))
        return SD_RES_NETWORK_ERROR
      }
      throw e
    }
  }

  /** An object file that is not there: NO_OBJ, or NETWORK_ERROR when its disk is gone. */
  private missing(disk: Disk): number {
    if (!this.disks.has(disk) || this.disks.intact(disk)) return SD_RES_NO_OBJ
    this.diskFailed(disk, 'its directory is gone')
    return SD_RES_NETWORK_ERROR
  }

  private diskFailed(disk: Disk, reason: string): void {
    if (!this.disks.has(disk)) return
    this.log.error(`${disk.path} failed (${reason}): taken out of the multi-disk array`)
    this.forgetDisk(disk)
    const left = this.disks.size
    setImmediate(() => this.onDiskFailure(disk.path, left))
  }

  /** Removes the disk and everything this store knew was on it. */
  private forgetDisk(disk: Disk): void {
    this.disks.remove(disk)
    this.fds.dropDisk(disk)
    this.unstableFds.dropDisk(disk)
    void this.wbLogs.get(disk)?.close()
    this.wbLogs.delete(disk)
    this.diskCheckedMs.delete(disk)
    for (const [oid, loc] of [...this.objects]) if (loc.disk === disk) this.untrack(oid)
    for (const [oid, copies] of [...this.stale]) {
      for (const [epoch, d] of [...copies]) if (d === disk) copies.delete(epoch)
      if (copies.size === 0) this.stale.delete(oid)
    }
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private targetDisk(oid: bigint): Disk {
    const disk = this.disks.diskFor(oid)
    if (!disk) throw Object.assign(new Error('no disks available'), { code: 'EIO' })
    return disk
  }

  private objectFile(disk: Disk, oid: bigint): string {
    return path.join(disk.path, this.layoutNow.objectPath(oid))
  }

  /** The object now lives on `disk` with `size` bytes; a copy left on another disk is removed. */
  private async replaced(oid: bigint, disk: Disk, size: number): Promise<void> {
    const before = this.objects.get(oid)
    // the name now holds another file than a descriptor opened before
    this.dropFds(oid)
    this.track(oid, disk, size)
    if (before && before.disk !== disk) await fsp.rm(this.objectFile(before.disk, oid), { force: true }).catch(() => undefined)
  }

  /** The object's file changed under its name (or is gone): its descriptors no longer name it. */
  private dropFds(oid: bigint): void {
    this.fds.drop(oid)
    this.unstableFds.drop(oid)
    this.unsynced.delete(oid)
    // another incarnation (or none) now: the log's records of this one are never written back to it
    this.logged.delete(oid)
    this.dropDirtyRanges(oid)
  }

  /** The object's unstable ranges need no logging (it is synced, or gone). */
  private dropDirtyRanges(oid: bigint): void {
    const ranges = this.dirtyRanges.get(oid)
    if (!ranges) return
    for (const [start, end] of ranges) this.dirtyBytes -= end - start
    this.dirtyRanges.delete(oid)
  }

  private dropAllFds(): void {
    this.fds.dropAll()
    this.unstableFds.dropAll()
    this.unsynced.clear()
  }

  private track(oid: bigint, disk: Disk, size: number): void {
    this.used += BigInt(size) - BigInt(this.objects.get(oid)?.size ?? 0)
    this.objects.set(oid, { disk, size })
  }

  private untrack(oid: bigint): void {
    this.dropFds(oid)
    this.used -= BigInt(this.objects.get(oid)?.size ?? 0)
    this.objects.delete(oid)
  }

  private syncDir(dir: string): Promise<void> {
    let run = this.dirSyncs.get(dir)
    if (!run) {
      run = new GroupRun(() => syncDir(dir))
      this.dirSyncs.set(dir, run)
    }
    return run.run()
  }

  /** Runs mutations of one object one after another, in arrival order (queued synchronously). */
  private serialise<T>(oid: bigint, work: () => Promise<T>): Promise<T> {
    return this.mutations.run(oid, work)
  }
}

/** Whether `e` came from reading `from` (not from writing the new copy). */
function isReadFailure(e: unknown, from: string): boolean {
  return (e as { readFailed?: string }).readFailed === from
}

/**
 * Copies `from` to `to` through `<to>.tmp` + rename, leaving zero runs as holes (a sparse object
 * stays sparse). An error reading `from` is marked with `readFailed`.
 */
async function copyFileSparse(from: string, to: string, nosync: boolean): Promise<void> {
  let src: fsp.FileHandle
  try {
    src = await fsp.open(from, 'r')
  } catch (e) {
    throw Object.assign(e as Error, { readFailed: from })
  }
  const tmp = `${to}.tmp`
  try {
    const { size } = await src.stat()
    const dst = await fsp.open(tmp, 'w', 0o644)
    try {
      await dst.truncate(size)
      const buf = Buffer.allocUnsafe(Math.min(MOVE_CHUNK_BYTES, Math.max(size, 1)))
      for (let at = 0; at < size; at += buf.length) {
        const length = Math.min(buf.length, size - at)
        try {
          await readInto(src, buf, length, at)
        } catch (e) {
          throw Object.assign(e as Error, { readFailed: from })
        }
        await writeSparse(dst, buf.subarray(0, length), at)
      }
      if (!nosync) await dst.datasync()
    } finally {
      await dst.close()
    }
    // a move does not change the bytes: the copy keeps the age its checksums are compared with
    const st = await src.stat()
    await fsp.utimes(tmp, st.atime, st.mtime)
    await fsp.rename(tmp, to)
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined)
    throw e
  } finally {
    await src.close()
  }
}

/** Reads `length` bytes at `offset`; bytes past the end of the file read as zeros. */
async function readRange(file: string, offset: number, length: number): Promise<Buffer | number> {
  let fh: fsp.FileHandle
  try {
    fh = await fsp.open(file, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return SD_RES_NO_OBJ
    throw e
  }
  try {
    const buf = Buffer.allocUnsafe(length)
    await readInto(fh, buf, length, offset)
    return buf
  } finally {
    await fh.close()
  }
}

/** Fills the first `length` bytes of `buf` from `offset`; bytes past the end of the file read as zeros. */
async function readFdInto(fd: number, buf: Buffer, length: number, offset: number): Promise<void> {
  let filled = 0
  while (filled < length) {
    const n = await preadFd(fd, buf, filled, length - filled, offset + filled)
    if (n === 0) break
    filled += n
  }
  if (filled < length) buf.fill(0, filled, length)
}

/** Fills the first `length` bytes of `buf` from `offset`; bytes past the end of the file read as zeros. */
async function readInto(fh: fsp.FileHandle, buf: Buffer, length: number, offset: number): Promise<void> {
  let filled = 0
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, offset + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  if (filled < length) buf.fill(0, filled, length)
}

function writeAll(fh: fsp.FileHandle, data: Buffer, offset: number): Promise<void> {
  return writeInPieces(fh.fd, data, offset, false)
}

/** Writes `data` at `offset` into a freshly truncated file, skipping all-zero chunks (holes read as zeros). */
async function writeSparse(fh: fsp.FileHandle, data: Buffer, offset: number): Promise<void> {
  let runStart = -1
  for (let at = 0; at < data.length; at += SPARSE_CHUNK_BYTES) {
    const end = Math.min(at + SPARSE_CHUNK_BYTES, data.length)
    const zero = data.compare(ZERO_CHUNK, 0, end - at, at, end) === 0
    if (!zero && runStart < 0) runStart = at
    if (zero && runStart >= 0) {
      await writeAll(fh, data.subarray(runStart, at), offset + runStart)
      runStart = -1
    }
  }
  if (runStart >= 0) await writeAll(fh, data.subarray(runStart), offset + runStart)
}

/** Ranges sorted, overlapping and adjacent ones merged into one. */
function mergedRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0])
  const out: Array<[number, number]> = []
  for (const [start, end] of sorted) {
    const last = out[out.length - 1]
    if (last && start <= last[1]) last[1] = Math.max(last[1], end)
    else out.push([start, end])
  }
  return out
}
