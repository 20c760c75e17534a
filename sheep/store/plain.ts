// The plain store: one file per object replica, `<dir>/<oid16>` (behaviour.md §12.3). Creates go
// through `<oid16>.tmp` + rename so a crash never leaves half an object under its real name;
// objects created piece by piece (recovery of objects bigger than one request) go through
// `<oid16>.<n>.tmp` files of their own the same way. Writes are made durable (fdatasync, and the
// directory fsync'd after a create) unless nosync. Mutations of one object are serialised; reads
// are not, except recovery reads, which queue behind the mutations accepted before them.
import { GroupRun, KeyedQueue } from '../../lib/async.js'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'
import type { ObjectWrite, StagedObject, StoreDriver } from './driver.js'

const OID_FILE = /^[0-9a-f]{16}$/
/** Zero runs at least this long are left as holes instead of being written. */
const SPARSE_CHUNK_BYTES = 64 * 1024
const ZERO_CHUNK = Buffer.alloc(SPARSE_CHUNK_BYTES)
/** GET_HASH reads an object in pieces of this size, so hashing a 2 GiB object needs 4 MiB. */
const HASH_READ_CHUNK_BYTES = 4 * 1024 * 1024

export function oidFileName(oid: bigint): string {
  return oid.toString(16).padStart(16, '0')
}

export interface PlainStoreOptions {
  dir: string
  nosync: boolean
}

export class PlainStore implements StoreDriver {
  readonly name = 'plain'
  private readonly sizes = new Map<bigint, number>()
  /** oid → epochs of its stale copies. */
  private readonly stale = new Map<bigint, number[]>()
  private readonly mutations = new KeyedQueue<bigint>()
  private used = 0n
  private readonly dirSync: GroupRun
  /** Numbers the temporary files of staged creates (one sheep per directory: unique enough). */
  private stagedCount = 0

  constructor(private readonly opts: PlainStoreOptions) {
    this.dirSync = new GroupRun(() => syncDir(opts.dir))
  }

  get dir(): string {
    return this.opts.dir
  }

  private get staleDir(): string {
    return path.join(this.opts.dir, '.stale')
  }

  async init(): Promise<void> {
    await fsp.mkdir(this.staleDir, { recursive: true })
    this.sizes.clear()
    this.stale.clear()
    this.used = 0n
    for (const name of await fsp.readdir(this.staleDir)) {
      const m = /^([0-9a-f]{16})\.(\d+)$/.exec(name)
      if (m) this.trackStale(BigInt('0x' + m[1]), Number(m[2]))
      else if (name.endsWith('.tmp')) await fsp.rm(path.join(this.staleDir, name), { force: true })
    }
    for (const entry of await fsp.readdir(this.opts.dir, { withFileTypes: true })) {
      if (!entry.isFile()) continue
      const file = path.join(this.opts.dir, entry.name)
      if (entry.name.endsWith('.tmp')) {
        await fsp.rm(file, { force: true })
      } else if (OID_FILE.test(entry.name)) {
        const st = await fsp.stat(file)
        this.track(BigInt('0x' + entry.name), st.size)
      }
    }
  }

  async purge(): Promise<void> {
    await fsp.rm(this.opts.dir, { recursive: true, force: true })
    await fsp.mkdir(this.staleDir, { recursive: true })
    this.sizes.clear()
    this.stale.clear()
    this.used = 0n
  }

  moveToStale(oid: bigint, epoch: number): Promise<void> {
    return this.serialise(oid, async () => {
      if (!this.sizes.has(oid)) return
      try {
        await fsp.rename(this.file(oid), this.staleFile(oid, epoch))
      } catch (e) {
        // the stale directory itself went missing (removed by hand): make it again, once
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !fs.existsSync(this.file(oid))) throw e
        await fsp.mkdir(this.staleDir, { recursive: true })
        await fsp.rename(this.file(oid), this.staleFile(oid, epoch))
      }
      this.untrack(oid)
      this.trackStale(oid, epoch)
    })
  }

  hasStale(oid: bigint, epoch: number): boolean {
    return this.stale.get(oid)?.includes(epoch) === true
  }

  async readStale(oid: bigint, epoch: number, offset: number, length: number): Promise<Buffer | number> {
    if (!this.stale.get(oid)?.includes(epoch)) return SD_RES_NO_OBJ
    return readRange(this.staleFile(oid, epoch), offset, length)
  }

  listStale(): bigint[] {
    return [...this.stale.keys()]
  }

  /** Removes every stale copy, one object at a time in its queue; the directory stays. */
  async purgeStale(): Promise<void> {
    await Promise.all(
      [...this.stale.keys()].map((oid) =>
        this.serialise(oid, async () => {
          for (const epoch of this.stale.get(oid) ?? []) await fsp.rm(this.staleFile(oid, epoch), { force: true })
          this.stale.delete(oid)
        }),
      ),
    )
  }

  private staleFile(oid: bigint, epoch: number): string {
    return path.join(this.staleDir, `${oidFileName(oid)}.${epoch}`)
  }

  private trackStale(oid: bigint, epoch: number): void {
    const list = this.stale.get(oid) ?? []
    if (!list.includes(epoch)) list.push(epoch)
    this.stale.set(oid, list)
  }

  /** Asks the disk, not only memory: a replica deleted by hand must show as missing (vdi check -e). */
  exists(oid: bigint): boolean {
    if (!this.sizes.has(oid)) return false
    if (fs.existsSync(this.file(oid))) return true
    this.untrack(oid)
    return false
  }

  async read(oid: bigint, offset: number, length: number): Promise<Buffer | number> {
    if (!this.sizes.has(oid)) return SD_RES_NO_OBJ
    return readRange(this.file(oid), offset, length)
  }

  readAfterMutations(oid: bigint, offset: number, length: number): Promise<Buffer | number> {
    return this.serialise(oid, () => this.read(oid, offset, length))
  }

  write(w: ObjectWrite): Promise<number> {
    return this.serialise(w.oid, async () => {
      if (!this.sizes.has(w.oid)) return SD_RES_NO_OBJ
      const fh = await fsp.open(this.file(w.oid), 'r+')
      try {
        await writeAll(fh, w.data, w.offset)
        if (!this.opts.nosync) await fh.datasync()
        const end = w.offset + w.data.length
        if (end > (this.sizes.get(w.oid) ?? 0)) this.track(w.oid, end)
      } finally {
        await fh.close()
      }
      return SD_RES_SUCCESS
    })
  }

  create(w: ObjectWrite, objectSize: number, opts: { ifAbsent?: boolean } = {}): Promise<number> {
    return this.serialise(w.oid, async () => {
      if (opts.ifAbsent && this.sizes.has(w.oid)) return SD_RES_SUCCESS
      const final = this.file(w.oid)
      const tmp = `${final}.tmp`
      const fh = await fsp.open(tmp, 'w', 0o644)
      const size = Math.max(objectSize, w.offset + w.data.length)
      try {
        try {
          await fh.truncate(size)
          await writeSparse(fh, w.data, w.offset)
          if (!this.opts.nosync) await fh.datasync()
        } finally {
          await fh.close()
        }
      } catch (e) {
        // a full disk (or a failing one) must not keep the half-written copy: it takes space
        await fsp.rm(tmp, { force: true })
        throw e
      }
      await fsp.rename(tmp, final)
      if (!this.opts.nosync) await this.dirSync.run()
      this.track(w.oid, size)
      return SD_RES_SUCCESS
    })
  }

  async beginCreate(oid: bigint, objectSize: number): Promise<StagedObject> {
    const final = this.file(oid)
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
          await end()
          await fsp.rm(tmp, { force: true })
          throw e
        }
        await end()
        return this.serialise(oid, async () => {
          try {
            // a client created it meanwhile: its object is newer than this copy
            if (opts.ifAbsent && this.sizes.has(oid)) {
              await fsp.rm(tmp, { force: true })
              return SD_RES_SUCCESS
            }
            await fsp.rename(tmp, final)
          } catch (e) {
            await fsp.rm(tmp, { force: true })
            throw e
          }
          if (!this.opts.nosync) await this.dirSync.run()
          this.track(oid, objectSize)
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
      if (!this.sizes.has(oid)) return SD_RES_NO_OBJ
      await fsp.rm(this.file(oid), { force: true })
      this.untrack(oid)
      return SD_RES_SUCCESS
    })
  }

  async sha1(oid: bigint): Promise<Buffer | number> {
    const size = this.sizes.get(oid)
    if (size === undefined) return SD_RES_NO_OBJ
    let fh: fsp.FileHandle
    try {
      fh = await fsp.open(this.file(oid), 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return SD_RES_NO_OBJ
      throw e
    }
    try {
      const hash = crypto.createHash('sha1')
      const buf = Buffer.allocUnsafe(Math.min(size, HASH_READ_CHUNK_BYTES))
      for (let at = 0; at < size; at += buf.length) {
        const length = Math.min(buf.length, size - at)
        await readInto(fh, buf, length, at)
        hash.update(buf.subarray(0, length))
      }
      return hash.digest()
    } finally {
      await fh.close()
    }
  }

  list(): bigint[] {
    return [...this.sizes.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  }

  usedBytes(): bigint {
    return this.used
  }

  private file(oid: bigint): string {
    return path.join(this.opts.dir, oidFileName(oid))
  }

  private track(oid: bigint, size: number): void {
    this.used += BigInt(size) - BigInt(this.sizes.get(oid) ?? 0)
    this.sizes.set(oid, size)
  }

  private untrack(oid: bigint): void {
    this.used -= BigInt(this.sizes.get(oid) ?? 0)
    this.sizes.delete(oid)
  }

  /** Runs mutations of one object one after another, in arrival order (queued synchronously). */
  mutationsSettled(): Promise<void> {
    return this.mutations.settled()
  }

  private serialise<T>(oid: bigint, work: () => Promise<T>): Promise<T> {
    return this.mutations.run(oid, work)
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
async function readInto(fh: fsp.FileHandle, buf: Buffer, length: number, offset: number): Promise<void> {
  let filled = 0
  while (filled < length) {
    const { bytesRead } = await fh.read(buf, filled, length - filled, offset + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  if (filled < length) buf.fill(0, filled, length)
}

async function writeAll(fh: fsp.FileHandle, data: Buffer, offset: number): Promise<void> {
  let done = 0
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done)
    done += bytesWritten
  }
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

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
