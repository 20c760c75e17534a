// The interface every object store driver implements (behaviour.md §12.3–12.4). Results are
// Sheepdog result codes: a missing object is SD_RES_NO_OBJ, not an exception; an exception
// from a driver means the disk itself failed (EIO). Objects are named by store keys (lib/oid.ts):
// the oid of a replicated object, or the oid and strip index of one strip of an erasure-coded
// one; the `oid` parameters below are such keys.

import type { StoreLayout } from './layout.js'
import type { BufferPool } from '../../lib/buffer-pool.js'

/** One object disk as MD_INFO reports it. */
export interface DiskUsage {
  path: string
  free: bigint
  used: bigint
}

export interface ObjectWrite {
  oid: bigint
  offset: number
  data: Buffer
  /**
   * The write need not be durable when it returns (SD_FLAG_CMD_UNSTABLE: the NBD server's
   * write-back cache), only once a later `flush` returned. Only `write` takes it.
   */
  unstable?: boolean
}

/** How a create (`create`, or a staged create's `commit`) makes the object visible. */
export interface CreateOptions {
  /**
   * Leave an existing object alone (recovery must never overwrite what a client wrote
   * meanwhile); the create then succeeds without effect.
   */
  ifAbsent?: boolean
  /**
   * Awaited once the new bytes are durable in the temporary file, just before they become
   * visible under the object's name: the checksum layer makes its intent mark durable there,
   * in parallel with the data's own sync instead of before it (checksums.ts).
   */
  beforeVisible?: () => Promise<void>
}

/**
 * An object being created piece by piece (objects bigger than one request: recovery, repair).
 * The pieces land in a private temporary file; only `commit` makes the object visible, all at
 * once, so nobody ever sees half of it. Exactly one of `commit` / `abort` must end it.
 */
export interface StagedObject {
  /** Writes `data` at `offset` (inside the object size given to `beginCreate`). */
  write(offset: number, data: Buffer): Promise<void>
  /**
   * Makes the object visible under its name, replacing an existing one unless `ifAbsent`: then
   * an object created meanwhile (by a client) wins and the staged copy is dropped.
   */
  commit(opts?: CreateOptions): Promise<number>
  /** Drops the staged copy. */
  abort(): Promise<void>
}

export interface DiskStats {
  path: string
  objects: number
  bytes: bigint
}

/** Where a read puts the CRC-32 of each block of what it read: out[0] for its first block, … */
export interface BlockCrcs {
  readonly blockBytes: number
  readonly out: Uint32Array
}

/** What a read may be asked for besides the bytes. */
export interface ReadOptions {
  /**
   * The CRC-32 of each `crcs.blockBytes` of the bytes read, written to `crcs.out` (the checksum
   * layer's verification, done where the read is done).
   */
  crcs?: BlockCrcs
  /**
   * A large read may land in a buffer lent by this pool (lib/buffer-pool.ts), which the caller
   * gives back once nothing can read it any more (`pool.lends(buf)` tells). Only for reads whose
   * bytes go nowhere but into one reply: nothing may keep them.
   */
  pool?: BufferPool
  /**
   * The caller just found (readNow answered NOT_CACHED) that the page cache does not hold these
   * bytes: the read goes to the thread pool without asking the page cache once more.
   */
  uncached?: boolean
  /**
   * The sheep serves no other request (Sheep.servingOneRequest): a read of up to 1 MiB that the
   * page cache holds is copied on the event loop, where nothing waits behind it, instead of in
   * the thread pool, whose hand-off and wake-ups cost more than the copy.
   */
  lone?: boolean
}

/** What readNow answers when the page cache did not hold every byte asked for. */
export const NOT_CACHED: unique symbol = Symbol('not cached')

/** Counts of the write-back logs (file-store.ts), since the daemon started. */
export interface WriteBackLogStats {
  /** Flushes that appended to a log. */
  flushesLogged: number
  /** Durable writes committed through a log (group commit) rather than written in place with O_DSYNC. */
  writesCommitted: number
  /** Appends that committed them: writesCommitted / commitGroups writes shared each device flush. */
  commitGroups: number
  /** Objects a flush synced rather than logged (no log here, too much written, a mutation under way…). */
  objectsSynced: number
  /** Bytes appended to the logs (records, headers included). */
  bytesLogged: number
  /** Checkpoints done: a log file's objects synced and the file removed. */
  checkpoints: number
  /** Records written back into their objects at start-up after a restart of the host. */
  recordsWrittenBack: number
}

export interface StoreDriver {
  /** The store driver (layout) in use: `plain` or `tree`. */
  readonly name: string
  /** Switches to another store driver (format; a new node joining a formatted cluster) and scans afresh. */
  useLayout(layout: StoreLayout): Promise<void>
  /** Prepare directories, drop leftover `.tmp` files, and return the objects found. */
  init(): Promise<void>
  /** Remove every object and stale copy (cluster format). */
  purge(): Promise<void>
  exists(oid: bigint): boolean
  /** Reads `length` bytes at `offset`; bytes past the end of the file read as zeros. */
  read(oid: bigint, offset: number, length: number, opts?: ReadOptions): Promise<Buffer | number>
  /**
   * Like `read`, but only after every mutation of the object queued before it (writes, creates,
   * a move to the stale area): a recovery read must see each write that was accepted before it.
   * An object moved to the stale area meanwhile reads as SD_RES_NO_OBJ.
   */
  readAfterMutations(oid: bigint, offset: number, length: number, opts?: ReadOptions): Promise<Buffer | number>
  /**
   * `read` done at once, on the calling thread, when it can be without waiting: a small read of
   * an object whose file is open and whose bytes the page cache holds (and, with checksums, that
   * match them). NOT_CACHED when the page cache did not hold the bytes (`read` with `uncached`
   * then goes straight to the thread pool); undefined when it cannot be for another reason (not
   * open, a mismatch, a failing disk): `read` then does it and reports what is wrong. A whole
   * async read costs several µs of promise hops more than the read itself.
   */
  readNow?(oid: bigint, offset: number, length: number, opts?: ReadOptions): Buffer | typeof NOT_CACHED | undefined
  /** Overwrites part of an existing object; SD_RES_NO_OBJ if it is absent. */
  write(w: ObjectWrite): Promise<number>
  /**
   * Makes every unstable write that returned before the call durable (SD_OP_SYNC_PEER); throws
   * when one of them cannot be (a failed disk).
   */
  flush(): Promise<void>
  /**
   * Creates the object atomically (temp file + rename) at its full `objectSize`, with `data` at
   * `offset`; unwritten parts read as zeros. An existing object is replaced, unless `ifAbsent`
   * (recovery must never overwrite what a client wrote meanwhile): then it is left alone.
   */
  create(w: ObjectWrite, objectSize: number, opts?: CreateOptions): Promise<number>
  /**
   * Starts creating `oid` at its full `objectSize` (unwritten parts read as zeros) from pieces
   * written later; several may be staged for one oid at once, each in its own temporary file.
   */
  beginCreate(oid: bigint, objectSize: number): Promise<StagedObject>
  remove(oid: bigint): Promise<number>
  /** The file holding the object, for drivers that keep one file per object (checksums.ts). */
  fileOf?(oid: bigint): string | undefined
  /** SHA-1 of the whole stored object (GET_HASH), read a piece at a time. */
  sha1(oid: bigint): Promise<Buffer | number>
  /** Every object id stored here, ascending. */
  list(): bigint[]
  /**
   * Resolves once every mutation queued so far has finished: a listing taken after it includes
   * the objects whose creation was accepted before (recovery's object lists, the stale moves).
   */
  mutationsSettled(): Promise<void>
  /** Bytes used by stored objects. */
  usedBytes(): bigint
  /** Per object disk, from memory (no disk access): its path, objects and their bytes (metrics). */
  diskStats(): DiskStats[]
  /** A clean stop: everything written made durable, nothing left for the next start to read back. */
  close?(): Promise<void>
  /** What the write-back logs of the NBD FLUSHes did since start (wb-log.ts), for the metrics. */
  writeBackLogStats?(): WriteBackLogStats | undefined

  // ---- the stale area (behaviour.md §7.2): replicas this node no longer holds, kept per epoch
  /**
   * Moves a live object to the stale area, named with `epoch`: the last epoch at which this node
   * held it, so the copy has every write of that epoch (docs/recovery.md).
   */
  moveToStale(oid: bigint, epoch: number): Promise<void>
  /** Whether a stale copy named with exactly `epoch` exists. */
  hasStale(oid: bigint, epoch: number): boolean
  /** Reads the stale copy named with exactly `epoch`; SD_RES_NO_OBJ if there is none. */
  readStale(oid: bigint, epoch: number, offset: number, length: number): Promise<Buffer | number>
  /** Every oid with a stale copy. */
  listStale(): bigint[]
  /** Drops the whole stale area (after the cluster finished recovering). */
  purgeStale(): Promise<void>

  // ---- the object disks (md.c): capacity, plug and unplug, failures
  /** Number of object disks in use. */
  readonly diskCount: number
  /** Sum of the disks' capacities recorded at first use (the node's capacity at its first start). */
  recordedSpace(): bigint
  /** Each disk's free bytes and the bytes its objects occupy (MD_INFO). */
  usage(): Promise<DiskUsage[]>
  /** Free space plus what the objects occupy, over every disk (STAT_SHEEP, reweight). */
  capacity(): Promise<{ size: bigint; used: bigint }>
  /** Adds disks (MD_PLUG); SD_RES_UNKNOWN when none was added. Objects move in the background. */
  plug(paths: readonly string[]): number
  /** Takes disks out (MD_UNPLUG); SD_RES_UNKNOWN when none was plugged. Objects move in the background. */
  unplug(paths: readonly string[], onLost: (count: number) => void): number
  /** Resolves once the moves of the plugs and unplugs so far are done. */
  rebalanced(): Promise<void>
  /** Told that a disk failed and was taken out, with the number of disks left. */
  onDiskFailure: (diskPath: string, disksLeft: number) => void
}
