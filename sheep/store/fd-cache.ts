// Open object files kept open between requests (issue #15): a 4 KiB read or write is one pread or
// pwrite on the libuv pool instead of open + I/O + close (three or four pool trips). The file
// store owns the rules for when a descriptor no longer names the object: it drops the key after
// every rename over the object, move to the stale area, removal and move between disks, and the
// whole disk when the disk is unplugged or fails (so an unmount is not kept busy), and everything
// on purge or a change of layout.
//
// A descriptor in use by a request is never closed under it: a dropped or evicted entry closes
// once its last user releases it (closing earlier could hand its number to another open while
// a pool thread still reads through it). An open that raced with a drop (it may have opened the
// file the drop replaced) serves its one request and is not cached: every drop bumps a
// generation that an open compares before and after.
//
// A file removed or replaced by hand (an operator, a test deleting a replica for `dog vdi check`)
// is not a drop the store knows of: a descriptor idle for FD_IDLE_RECHECK_MS is checked against
// its path (same inode?) before it is used again, so such a change is seen by the next request
// that comes after a pause. A descriptor in continuous use is not checked. Most of those checks
// are answered by the object's directory instead of its file: a file removed, renamed or
// replaced changes its directory's mtime, so a directory whose mtime is older than the
// descriptor's last verification (by more than a coarse file-system clock can lag) cannot have
// had the object replaced since. The directory is stat'ed at most once per FD_IDLE_RECHECK_MS
// whatever the number of descriptors, where a large VDI written at random had every request
// stat its object's file (~10 µs of a replica's main thread per request, session 17's profiles).
import assert from 'node:assert'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'

/** Object files kept open per store; past this the least recently used idle ones are closed. */
export const OBJECT_FD_CACHE_MAX_OPEN = 512
/** A descriptor unused for longer than this is checked against its path before its next use. */
export const FD_IDLE_RECHECK_MS = 20
/**
 * A directory mtime this much older than a descriptor's verification proves no change since:
 * file systems stamp times from a coarse clock (a jiffy, up to 10 ms) that lags the wall clock.
 */
export const DIR_MTIME_SLACK_MS = 1_000

/** What a directory's mtime said, and when it was asked. */
interface DirCheck {
  /** performance.now() of the stat. */
  checkedMs: number
  /** The directory's mtime (wall clock ms) then; NaN if the stat failed. */
  mtimeMs: number
}

/** The file an object's name held when it was opened: its inode and birth time (wb-log.ts's records name it). */
export interface Incarnation {
  ino: bigint
  birthNs: bigint
}

/** One descriptor lent to a request; `release` exactly once when the request is done with it. */
export interface FdLease {
  readonly fd: number
  /** The file opened; undefined where the file system keeps no birth time. */
  readonly incarnation: Incarnation | undefined
  release(): void
}

interface Entry<D> {
  readonly fd: number
  readonly disk: D
  /** The inode opened: the path must still name it. */
  readonly ino: number
  readonly incarnation: Incarnation | undefined
  /** Date.now() before the open or the last stat that found the path still naming `ino`. */
  verifiedWallMs: number
  /** performance.now() of the last lease. */
  usedMs: number
  users: number
  /** Out of the cache: closes when its last user releases it. */
  dropped: boolean
}

export class FdCache<K, D> {
  /** In least-recently-used-first order: a hit moves its entry to the end. */
  private readonly entries = new Map<K, Entry<D>>()
  /** Directories of cached objects (a disk's, or a tree layout's subdirectories): bounded by the layout. */
  private readonly dirs = new Map<string, DirCheck>()
  private generation = 0

  /**
   * @param flags open(2) flags of every descriptor (O_RDWR, and O_DSYNC when writes must be durable).
   * @param maxOpen idle descriptors beyond this are closed, oldest first.
   */
  constructor(
    private readonly flags: number,
    private readonly maxOpen = OBJECT_FD_CACHE_MAX_OPEN,
  ) {
    assert(maxOpen > 0, 'the fd cache must hold at least one descriptor')
  }

  /** Descriptors held open (idle or in use). */
  get size(): number {
    return this.entries.size
  }

  /**
   * The cached descriptor of `key` on `disk`, or undefined (not cached, cached on another disk,
   * or idle and `file` no longer names what it opened).
   */
  hit(key: K, disk: D, file: string): FdLease | undefined {
    const entry = this.entries.get(key)
    if (!entry || entry.disk !== disk) return undefined
    if (performance.now() - entry.usedMs > FD_IDLE_RECHECK_MS && !this.stillNamed(entry, file)) {
      this.retire(key, entry)
      return undefined
    }
    this.entries.delete(key)
    this.entries.set(key, entry)
    return this.lend(entry)
  }

  /**
   * Opens `file` (the object `key` on `disk`) and caches it unless `cache` says the disk no longer
   * takes new ones or a drop came meanwhile. Errors of open(2) are the caller's.
   */
  async open(key: K, disk: D, file: string, cache: () => boolean): Promise<FdLease> {
    const before = this.generation
    const verifiedWallMs = Date.now()
    const fd = await openFd(file, this.flags)
    let st: fs.BigIntStats
    try {
      st = fs.fstatSync(fd, { bigint: true })
    } catch (e) {
      closeFd(fd)
      throw e
    }
    const incarnation = st.birthtimeNs === 0n ? undefined : { ino: st.ino, birthNs: st.birthtimeNs }
    const entry: Entry<D> = { fd, disk, ino: Number(st.ino), incarnation, verifiedWallMs, usedMs: 0, users: 0, dropped: false }
    const other = this.entries.get(key)
    if (this.generation !== before || !cache()) entry.dropped = true
    else if (other && other.disk === disk) {
      // another request opened it meanwhile: use that one, close ours
      closeFd(fd)
      return this.lend(other)
    } else {
      if (other) this.retire(key, other)
      this.entries.set(key, entry)
      this.evict()
    }
    return this.lend(entry)
  }

  /** The object's file was renamed over, moved or removed: its descriptor no longer names it. */
  drop(key: K): void {
    this.generation++
    const entry = this.entries.get(key)
    if (entry) this.retire(key, entry)
  }

  /** Every descriptor on `disk` (unplugged or failed). */
  dropDisk(disk: D): void {
    this.generation++
    for (const [key, entry] of [...this.entries]) if (entry.disk === disk) this.retire(key, entry)
  }

  /** Every descriptor (purge, another layout). */
  dropAll(): void {
    this.generation++
    this.dirs.clear()
    for (const [key, entry] of [...this.entries]) this.retire(key, entry)
  }

  /** Whether `file` still names the inode `entry` opened: asked of its directory first. */
  private stillNamed(entry: Entry<D>, file: string): boolean {
    if (this.dirUnchangedSince(path.dirname(file), entry.verifiedWallMs)) return true
    const wallMs = Date.now()
    if (fs.statSync(file, { throwIfNoEntry: false })?.ino !== entry.ino) return false
    entry.verifiedWallMs = wallMs
    return true
  }

  /** Whether `dir` has had no entry added, removed or renamed since `wallMs` (its mtime, stat'ed at most every FD_IDLE_RECHECK_MS). */
  private dirUnchangedSince(dir: string, wallMs: number): boolean {
    const now = performance.now()
    let check = this.dirs.get(dir)
    if (!check || now - check.checkedMs > FD_IDLE_RECHECK_MS) {
      check = { checkedMs: now, mtimeMs: fs.statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? Number.NaN }
      this.dirs.set(dir, check)
    }
    return check.mtimeMs < wallMs - DIR_MTIME_SLACK_MS
  }

  private lend(entry: Entry<D>): FdLease {
    entry.users++
    entry.usedMs = performance.now()
    let released = false
    return {
      fd: entry.fd,
      incarnation: entry.incarnation,
      release: () => {
        assert(!released, 'an fd lease was released twice')
        released = true
        entry.users--
        if (entry.dropped && entry.users === 0) closeFd(entry.fd)
      },
    }
  }

  private retire(key: K, entry: Entry<D>): void {
    this.entries.delete(key)
    entry.dropped = true
    if (entry.users === 0) closeFd(entry.fd)
  }

  /** Closes idle descriptors, oldest first, while more than maxOpen are held. */
  private evict(): void {
    if (this.entries.size <= this.maxOpen) return
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxOpen) break
      if (entry.users === 0) this.retire(key, entry)
    }
  }
}

function openFd(file: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, (err, fd) => (err ? reject(err) : resolve(fd))))
}

/** Closing an object file cannot lose data (every write was made durable, or nosync asked for none). */
function closeFd(fd: number): void {
  fs.close(fd, () => undefined)
}

/** Reads into `buf[at, at+length)` from `position`: the count of bytes read (0 at the end of the file). */
export function preadFd(fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n))))
}

export function fdatasyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

/** Makes a directory's entries durable (a file created, renamed or removed in it). */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
