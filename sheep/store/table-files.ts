// Checksum files kept open between writes (checksums.ts, docs/integrity.md): a write of an
// object changes a few bytes of its checksum file; with the file kept open that is one pwrite
// instead of open + pwrite + close, every time. The calls are synchronous on purpose: a few
// bytes into the page cache take microseconds, while on libuv's small thread pool they would
// wait behind the data writes' fdatasyncs and add that wait to every write. Nothing here syncs:
// the checksum layer makes the files durable lazily, with descriptors of its own (an async
// fdatasync must not run on a descriptor this cache may close meanwhile).
//
// The checksum layer drops a key whenever the file under its name changes (renamed to the stale
// area, removed, its directory purged). A file removed or replaced by another program is seen as
// the object store's fd cache sees it (fd-cache.ts): a descriptor idle for FD_IDLE_RECHECK_MS is
// checked against its path (same inode?) before it is used again.
import assert from 'node:assert'
import fs from 'node:fs'
import { FD_IDLE_RECHECK_MS } from './fd-cache.js'

/** Checksum files held open; past this the least recently used is closed. */
export const TABLE_FD_CACHE_MAX_OPEN = 128

interface Entry {
  readonly fd: number
  readonly ino: number
  usedMs: number
}

export class TableFiles {
  /** file → its descriptor, least recently used first. */
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly maxOpen = TABLE_FD_CACHE_MAX_OPEN) {
    assert(maxOpen > 0, 'the table fd cache must hold at least one descriptor')
  }

  /** Descriptors held open. */
  get size(): number {
    return this.entries.size
  }

  /** Writes `bytes` at `position` of an existing file; false (nothing written) when there is none. */
  writeAt(file: string, bytes: Uint8Array, position: number): boolean {
    const fd = this.fdOf(file, false)
    if (fd === undefined) return false
    writeAll(fd, bytes, position)
    return true
  }

  /** Makes the file exactly `bytes`, creating it if needed. */
  writeWhole(file: string, bytes: Uint8Array): void {
    const fd = this.fdOf(file, true) as number
    writeAll(fd, bytes, 0)
    fs.ftruncateSync(fd, bytes.length)
  }

  /** The file under this name changed or is gone: its descriptor no longer names it. */
  drop(file: string): void {
    const entry = this.entries.get(file)
    if (!entry) return
    this.entries.delete(file)
    fs.closeSync(entry.fd)
  }

  dropAll(): void {
    for (const file of [...this.entries.keys()]) this.drop(file)
  }

  /** The cached descriptor (checked after idleness), or a new one; undefined: no file and no `create`. */
  private fdOf(file: string, create: boolean): number | undefined {
    const now = performance.now()
    const entry = this.entries.get(file)
    if (entry) {
      this.entries.delete(file)
      if (now - entry.usedMs <= FD_IDLE_RECHECK_MS || fs.statSync(file, { throwIfNoEntry: false })?.ino === entry.ino) {
        entry.usedMs = now
        this.entries.set(file, entry)
        return entry.fd
      }
      fs.closeSync(entry.fd)
    }
    let fd: number
    try {
      fd = fs.openSync(file, create ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDWR, 0o644)
    } catch (e) {
      if (!create && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    try {
      this.entries.set(file, { fd, ino: fs.fstatSync(fd).ino, usedMs: now })
    } catch (e) {
      fs.closeSync(fd)
      throw e
    }
    if (this.entries.size > this.maxOpen) this.drop(this.entries.keys().next().value as string)
    return fd
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done)
  }
}
