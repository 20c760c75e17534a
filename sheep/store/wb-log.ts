// The write-back log of one object disk (issue #15). Two kinds of writes are made durable by
// appending their bytes here rather than by syncing their objects:
// - Unstable writes (SD_FLAG_CMD_UNSTABLE, the NBD write-back cache) land in the objects' page
//   cache; a FLUSH must then make them durable. Syncing the objects makes the disk write every
//   scattered page at once while the client waits (three replicas of 64 random 4 KiB writes took
//   13–15 ms here); instead a flush appends the bytes of every range written since the last flush,
//   one sequential write.
// - Small durable writes (file-store.ts, GROUP_COMMIT_MAX_BYTES) are copied into the object's page
//   cache and their record committed here: every record that arrives while the previous append
//   is under way joins the next one (group commit), one write and one device flush for all.
// Appends go through an O_DSYNC descriptor, into a file extended by zeros ahead of them
// (WBLOG_EXTEND_BYTES, written in small pieces through a second descriptor and synced once) so
// that an append changes no file size and needs no journal commit. The
// objects' pages are written back later by a checkpoint: once the log has grown past
// WBLOG_CHECKPOINT_BYTES a new log file is begun and the disk's file system synced (syncfs) in
// the background, after which the old files are removed.
//
// A record names the object's incarnation (inode number and birth time), so it is never applied
// to another file created under the same name later (a create over it, a removal and a
// re-creation, a move between disks); files moved to the stale area (synced first) never come back under a
// live name. A durable write to an object that has records in a live log is logged as well
// (file-store.ts), so that no older record can be replayed over it.
//
// At start-up the logs left behind are read. If the machine has not restarted since they were
// written (the boot id in their header), the page cache kept every write and is newer than the
// log: the disk is synced and the logs removed, nothing replayed (replaying would take back
// writes made after the last flush that the other replicas kept). After a restart (a power
// loss), every record whose incarnation still has the name is written back, in order, and the
// objects synced before the logs go. The object files stay byte for byte what the original
// writes; only a restart of the machine without a clean stop needs this log to be read (the
// original's sheep would not read it).
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { crc32 } from './crc32.js'
import { type Incarnation, syncDir } from './fd-cache.js'
import { writeInPieces } from './native-io.js'

export const WBLOG_DIR = '.wblog'
/** A log past this size is checkpointed: a new file begun, the file system synced, the old one removed. */
export const WBLOG_CHECKPOINT_BYTES = 64 * 1024 * 1024
/** A flush with more bytes than this to log syncs the objects instead (the log stays bounded). */
export const WBLOG_FLUSH_MAX_BYTES = 16 * 1024 * 1024
/**
 * A log file is extended by this many zero bytes, made durable, ahead of its records: a record
 * then overwrites allocated blocks inside the file's size, and its O_DSYNC write needs no journal
 * commit of the file's new size (a durable 4 KiB write through the log costs what one in place does).
 */
export const WBLOG_EXTEND_BYTES = 1024 * 1024
/** After an extension failed (a full disk), appends that need one fail at once for this long. */
export const WBLOG_EXTEND_RETRY_MS = 1000
/** Durable writes committed by one append at most (a group is one writev: IOV_MAX is 1024). */
export const WBLOG_GROUP_MAX_RECORDS = 256

const FILE_MAGIC = Buffer.from('SDWBLOG1')
const BOOT_ID_BYTES = 36
const FILE_HEADER_BYTES = FILE_MAGIC.length + BOOT_ID_BYTES
const RECORD_MAGIC = 0x5744424c
/** magic u32, crc u32 (of the rest of the header and the data), key u64, ino u64, birth ns u64, offset u32, length u32. */
export const WBLOG_RECORD_HEADER_BYTES = 40
const LOG_FILE = /^(\d{12})\.log$/
const ZEROS = Buffer.alloc(WBLOG_EXTEND_BYTES)

export type { Incarnation } from './fd-cache.js'

/** This boot of the machine (a restart changes it). */
export function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim().padEnd(BOOT_ID_BYTES).slice(0, BOOT_ID_BYTES)
  } catch {
    // no boot id: every start is taken for a restart, and the logs are replayed
    return ''.padEnd(BOOT_ID_BYTES, '?')
  }
}

/** The header of the record of `data` written at `offset` of the object `key` in its incarnation `inc` (its CRC covers `data`): written with the data after it, uncopied. */
export function wbLogRecordHeader(key: bigint, inc: Incarnation, offset: number, data: Buffer): Buffer {
  const head = Buffer.allocUnsafe(WBLOG_RECORD_HEADER_BYTES)
  head.writeUInt32LE(RECORD_MAGIC, 0)
  head.writeBigUInt64LE(key, 8)
  head.writeBigUInt64LE(inc.ino, 16)
  head.writeBigUInt64LE(inc.birthNs, 24)
  head.writeUInt32LE(offset, 32)
  head.writeUInt32LE(data.length, 36)
  head.writeUInt32LE(crc32(data, crc32(head.subarray(8))) >>> 0, 4)
  return head
}

/** A record read back from a log. */
export interface WbLogEntry {
  key: bigint
  inc: Incarnation
  offset: number
  data: Buffer
}

/** The whole records of a log file's body; a torn or damaged tail ends it (the flush it was in never returned). */
export function parseWbLog(body: Buffer): WbLogEntry[] {
  const out: WbLogEntry[] = []
  let at = 0
  while (at + WBLOG_RECORD_HEADER_BYTES <= body.length) {
    if (body.readUInt32LE(at) !== RECORD_MAGIC) break
    const length = body.readUInt32LE(at + 36)
    const end = at + WBLOG_RECORD_HEADER_BYTES + length
    if (end > body.length || crc32(body.subarray(at + 8, end)) >>> 0 !== body.readUInt32LE(at + 4)) break
    out.push({
      key: body.readBigUInt64LE(at + 8),
      inc: { ino: body.readBigUInt64LE(at + 16), birthNs: body.readBigUInt64LE(at + 24) },
      offset: body.readUInt32LE(at + 32),
      data: body.subarray(at + WBLOG_RECORD_HEADER_BYTES, end),
    })
    at = end
  }
  return out
}

/** What the start-up reading of a disk's logs does with a record: write it back (true) or not. */
export type ReplayRecord = (entry: WbLogEntry) => boolean

/** The log of one disk: files `<seq>.log` in `<disk>/.wblog`, written one after another. */
export class DiskWbLog {
  private fd = -1
  /**
   * The same file without O_DSYNC, for its zeros: written in small pieces (native-io.ts) so that
   * the appends over them do not walk large page-cache folios, and synced once after them.
   */
  private zeroFd = -1
  private seq = 0
  private bytes = 0
  /** The file's size: zeros (WBLOG_EXTEND_BYTES at a time) past `bytes`. */
  private allocated = 0
  /** Closed (`close`): appends fail, no new file is begun. */
  private closed = false
  /** When an extension last failed (performance.now() ms): not tried again for WBLOG_EXTEND_RETRY_MS. */
  private extendFailedMs = Number.NEGATIVE_INFINITY
  /** Appends, one after another. */
  private chain: Promise<unknown> = Promise.resolve()
  private checkpointing: Promise<void> | undefined
  private readonly boot = bootId()
  /** Durable writes waiting for the next group's append (`commit`). */
  private readonly pending: Array<{ head: Buffer; data: Buffer; resolve: (seq: number) => void; reject: (e: unknown) => void }> = []
  /** An append of the pending records is queued on `chain` and has not taken them yet. */
  private groupQueued = false

  constructor(
    private readonly diskPath: string,
    /** Makes every write to the disk's file system durable (syncfs). */
    private readonly syncDisk: () => Promise<void>,
    private readonly checkpointBytes = WBLOG_CHECKPOINT_BYTES,
  ) {}

  private get dir(): string {
    return path.join(this.diskPath, WBLOG_DIR)
  }

  /**
   * Reads the logs left by an earlier run: after a restart of the machine each record is offered
   * to `replay` (which writes it back), then the disk is synced and the logs removed, durably: a
   * log that came back after another power loss would write old records over newer bytes.
   * Returns the number of records written back.
   */
  async recover(replay: ReplayRecord): Promise<number> {
    let names: string[]
    try {
      names = (await fsp.readdir(this.dir)).filter((n) => LOG_FILE.test(n)).sort()
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0
      throw e
    }
    let replayed = 0
    for (const name of names) {
      const file = await fsp.readFile(path.join(this.dir, name))
      if (file.length < FILE_HEADER_BYTES || !file.subarray(0, FILE_MAGIC.length).equals(FILE_MAGIC)) continue
      if (file.toString('latin1', FILE_MAGIC.length, FILE_HEADER_BYTES) === this.boot) continue
      for (const entry of parseWbLog(file.subarray(FILE_HEADER_BYTES))) if (replay(entry)) replayed++
    }
    if (names.length > 0) {
      await this.syncDisk()
      for (const name of names) await fsp.rm(path.join(this.dir, name), { force: true })
      await syncDir(this.dir)
      this.seq = Math.max(this.seq, ...names.map((n) => Number(LOG_FILE.exec(n)?.[1])))
    }
    return replayed
  }

  /** Appends records (each a header and its data, as buffers one after another) and makes them durable; they are written back at start-up if the machine restarts before a checkpoint. */
  append(records: Buffer[]): Promise<number> {
    const run = this.chain.then(() => this.appendNow(records))
    this.chain = run.catch(() => undefined)
    return run
  }

  /**
   * Appends one durable write's record (its header and data, `wbLogRecordHeader`) with every
   * other one committed meanwhile: the records that arrive while an append is under way share
   * the next one, a single write and device flush for all of them (group commit). Resolves with
   * the log file's number once the record is durable.
   */
  commit(head: Buffer, data: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      this.pending.push({ head, data, resolve, reject })
      if (!this.groupQueued) this.queueGroup()
    })
  }

  private queueGroup(): void {
    this.groupQueued = true
    const run = this.chain.then(() => this.appendGroup())
    this.chain = run.catch(() => undefined)
  }

  private async appendGroup(): Promise<void> {
    this.groupQueued = false
    const group = this.pending.splice(0, WBLOG_GROUP_MAX_RECORDS)
    if (this.pending.length > 0) this.queueGroup()
    try {
      const seq = await this.appendNow(group.flatMap((c) => [c.head, c.data]))
      this.onGroup?.(group.length)
      for (const c of group) c.resolve(seq)
    } catch (e) {
      for (const c of group) c.reject(e)
    }
  }

  private async appendNow(parts: Buffer[]): Promise<number> {
    // a write that took this log before it was closed syncs its object instead
    if (this.closed) throw new Error('the write-back log is closed')
    if (this.fd < 0) await this.begin()
    const fd = this.fd
    const seq = this.seq
    let length = 0
    for (const p of parts) length += p.length
    const size = Math.ceil((this.bytes + length) / WBLOG_EXTEND_BYTES) * WBLOG_EXTEND_BYTES
    if (this.allocated < size && performance.now() - this.extendFailedMs < WBLOG_EXTEND_RETRY_MS) {
      throw Object.assign(new Error('the log could not grow a moment ago (disk full?)'), { code: 'ENOSPC' })
    }
    try {
      while (this.allocated < size) {
        const zeros = ZEROS.subarray(0, Math.min(size - this.allocated, ZEROS.length))
        await writeInPieces(this.zeroFd, zeros, this.allocated, true)
        this.allocated += zeros.length
      }
    } catch (e) {
      // a full disk: the zeros written before the failure must not keep the last free space
      // from the objects
      await new Promise<void>((resolve) => fs.ftruncate(fd, this.allocated, () => resolve()))
      this.extendFailedMs = performance.now()
      throw e
    }
    // the descriptor is O_DSYNC: durable when the write returns
    this.bytes += await writevAll(fd, parts, this.bytes)
    if (this.bytes >= this.checkpointBytes) await this.checkpoint()
    return seq
  }

  /**
   * A new file (its header durable at once: the descriptor is O_DSYNC), its name durable in the
   * directory (syncing a file does not make its directory entry durable).
   */
  private async begin(): Promise<void> {
    if ((await fsp.mkdir(this.dir, { recursive: true })) !== undefined) await syncDir(this.diskPath)
    this.seq++
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_DSYNC
    const file = path.join(this.dir, `${String(this.seq).padStart(12, '0')}.log`)
    const fd = fs.openSync(file, flags, 0o644)
    let zeroFd = -1
    try {
      zeroFd = fs.openSync(file, fs.constants.O_RDWR)
      await writevAll(fd, [FILE_MAGIC, Buffer.from(this.boot, 'latin1')], 0)
      await syncDir(this.dir)
    } catch (e) {
      fs.closeSync(fd)
      if (zeroFd >= 0) fs.closeSync(zeroFd)
      throw e
    }
    this.fd = fd
    this.zeroFd = zeroFd
    this.bytes = FILE_HEADER_BYTES
    this.allocated = FILE_HEADER_BYTES
  }

  /**
   * Begins a new file and syncs the disk in the background; the files before it are removed once
   * that sync is done. A checkpoint still under way is waited for first: the log never holds more
   * than two files' worth.
   */
  private async checkpoint(): Promise<void> {
    await this.checkpointing
    const old = this.seq
    fs.closeSync(this.fd)
    fs.closeSync(this.zeroFd)
    this.fd = -1
    this.zeroFd = -1
    // a failed sync keeps the old files (and their records) and fails the next append, whose
    // flush then syncs its objects instead
    const run = this.syncDisk().then(() => this.removeUpTo(old))
    const tracked: Promise<void> = run.finally(() => {
      if (this.checkpointing === tracked) this.checkpointing = undefined
    })
    tracked.catch(() => undefined)
    this.checkpointing = tracked
    this.onCheckpoint?.(old, run)
  }

  /** A checkpoint now, waited for (a record that could not be appended must not leave older ones to replay). */
  checkpointNow(): Promise<void> {
    const run = this.chain.then(async () => {
      if (this.fd >= 0) await this.checkpoint()
      await this.checkpointing
    })
    this.chain = run.catch(() => undefined)
    return run
  }

  /** Told of each append of committed writes, with their number. */
  onGroup: ((writes: number) => void) | undefined

  /** Told of each checkpoint: records of files up to `seq` are no longer needed once `done` settles. */
  onCheckpoint: ((seq: number, done: Promise<void>) => void) | undefined

  /**
   * Removes the files up to `seq`, durably before the caller forgets which objects they name: a
   * file that came back after a power loss would write its old records over bytes written since.
   */
  private async removeUpTo(seq: number): Promise<void> {
    for (const name of await fsp.readdir(this.dir)) {
      const m = LOG_FILE.exec(name)
      if (m && Number(m[1]) <= seq) await fsp.rm(path.join(this.dir, name), { force: true })
    }
    await syncDir(this.dir)
  }

  /**
   * Stops writing (the disk is gone, or everything is purged); nothing is removed. The file is
   * closed after the appends already queued: closed under a pool thread's write, its number could
   * be given to another file that would then receive the log's bytes.
   */
  close(): Promise<void> {
    const run = this.chain.then(() => {
      if (this.fd >= 0) fs.close(this.fd, () => undefined)
      if (this.zeroFd >= 0) fs.close(this.zeroFd, () => undefined)
      this.fd = -1
      this.zeroFd = -1
      this.bytes = 0
      this.closed = true
    })
    this.chain = run
    return run
  }
}

/** Writes `parts` one after another from `position`, whatever the kernel takes per call: the bytes written. */
function writevAll(fd: number, parts: Buffer[], position: number): Promise<number> {
  let total = 0
  for (const p of parts) total += p.length
  return new Promise((resolve, reject) => {
    const step = (rest: Buffer[], done: number): void => {
      if (done === total) {
        resolve(total)
        return
      }
      fs.writev(fd, rest, position + done, (err, n) => {
        if (err) {
          reject(err)
          return
        }
        // a short write (rare): go on from the first byte not written
        let skip = n
        let i = 0
        while (i < rest.length && skip >= (rest[i] as Buffer).length) skip -= (rest[i++] as Buffer).length
        const left = rest.slice(i)
        if (skip > 0) left[0] = (left[0] as Buffer).subarray(skip)
        step(left, done + n)
      })
    }
    step(parts, 0)
  })
}
