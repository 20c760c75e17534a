// The object store's system calls that Node lacks, through the optional native addon
// (native/storeio, built at npm install):
// - syncfs(2): one call makes every write to a filesystem durable, with one disk cache flush,
//   where fdatasync needs a call — and a flush — per file. The store's flush uses it once it
//   has several objects to sync (file-store.ts); without the addon it fdatasyncs them one by one.
// - writes in pieces (PAGE_CACHE_PIECE_BYTES), all in one trip to the thread pool: see writeInPieces.
// - preadv2(2) with RWF_NOWAIT: a read the page cache can serve whole is served on the event
//   loop, without the thread pool's two wake-ups; one it cannot goes to the pool (without the
//   addon, every read does).
import fs from 'node:fs'
import os from 'node:os'
import { loadAddon } from '../../lib/native-addon.js'

interface StoreIoAddon {
  /** 0, or the errno of the call. */
  syncfs(fd: number): Promise<number>
  /** Every byte written in pieces of at most pieceBytes, then fdatasync when asked: 0, or the errno of the call that failed. */
  pwritePieces(fd: number, buffer: Uint8Array, position: number, pieceBytes: number, datasync: boolean): Promise<number>
  /** preadv2(RWF_NOWAIT) on the calling thread: bytes read, or -errno (-EAGAIN: not all cached). */
  preadNoWait(fd: number, buffer: Uint8Array, offset: number): number
}

let addon: StoreIoAddon | null | undefined

function storeIoAddon(): StoreIoAddon | null {
  if (addon === undefined) {
    const loaded = loadAddon<StoreIoAddon>('storeio', 'sheepdog_storeio')
    addon = loaded instanceof Error ? null : loaded
  }
  return addon
}

export function syncfsAvailable(): boolean {
  return storeIoAddon() !== null
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

/** An error like Node's own for `errno` (code 'EIO' …), so callers can tell a failing disk. */
export function errnoError(errno: number, what: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `errno ${errno}`
  return Object.assign(new Error(`${what}: ${code}`), { code, errno: -errno })
}

/** Makes every write to the filesystem holding `dir` durable; throws an errno error (code EIO …). */
export async function syncfsDir(dir: string): Promise<void> {
  const native = storeIoAddon()
  if (!native) throw new Error('syncfs is not available')
  const fd = await new Promise<number>((resolve, reject) => fs.open(dir, 'r', (err, fd) => (err ? reject(err) : resolve(fd))))
  try {
    const errno = await native.syncfs(fd)
    if (errno !== 0) throw errnoError(errno, `syncfs of ${dir}`)
  } finally {
    fs.close(fd, () => undefined)
  }
}

/**
 * Whether reads from the page cache can be had on the event loop: cleared without the addon, or
 * once the kernel refuses RWF_NOWAIT (too old, or a filesystem without it) for good.
 */
let noWaitReads = true

/**
 * Fills `buf` from `offset` of `fd` without waiting for the disk, on the calling thread:
 * true when the page cache held every byte, false when the read must go to the thread pool
 * (not cached, a short file, an error, or no support here).
 */
export function readCachedNow(fd: number, buf: Buffer, offset: number): boolean {
  if (!noWaitReads) return false
  const native = storeIoAddon()
  if (!native) {
    noWaitReads = false
    return false
  }
  const n = native.preadNoWait(fd, buf, offset)
  if (n === -os.constants.errno.EOPNOTSUPP || n === -os.constants.errno.EINVAL || n === -os.constants.errno.ENOSYS) noWaitReads = false
  return n === buf.length
}

/**
 * The largest write(2) the store makes into the page cache. The kernel gives a buffered write
 * folios as large as the write (ext4 since Linux 6.16), and a later 4 KiB write into a large
 * folio walks every block of it: measured here, 12–34 µs per 4 KiB write into folios left by
 * 1–4 MiB writes, 6 µs after 64 KiB ones, 4 µs after 4 KiB ones — on the event loop of every
 * replica, since small writes are copied there. Larger pieces cost large writes less (a cached
 * 1 MiB write: 80 µs in one piece, 145 µs in 64 KiB pieces).
 */
export const PAGE_CACHE_PIECE_BYTES = 64 * 1024

/**
 * Writes all of `data` at `position` of `fd` in pieces of at most PAGE_CACHE_PIECE_BYTES, then
 * fdatasyncs `fd` when `datasync` (durable when this returns: pieces through an O_DSYNC
 * descriptor would each flush the disk). One job on the thread pool with the addon, one per
 * piece without it. Throws an errno error (code ENOSPC, EIO …).
 */
export async function writeInPieces(fd: number, data: Buffer, position: number, datasync: boolean): Promise<void> {
  const native = storeIoAddon()
  if (native) {
    const errno = await native.pwritePieces(fd, data, position, PAGE_CACHE_PIECE_BYTES, datasync)
    if (errno !== 0) throw errnoError(errno, `write of ${data.length} bytes at ${position}`)
    return
  }
  let done = 0
  while (done < data.length) {
    const length = Math.min(PAGE_CACHE_PIECE_BYTES, data.length - done)
    done += await new Promise<number>((resolve, reject) => fs.write(fd, data, done, length, position + done, (err, n) => (err ? reject(err) : resolve(n))))
  }
  if (datasync) await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())))
}

/** writeInPieces on the calling thread, without a sync: for small writes into the page cache only. */
export function writeInPiecesNow(fd: number, data: Buffer, position: number): void {
  let done = 0
  while (done < data.length) done += fs.writeSync(fd, data, done, Math.min(PAGE_CACHE_PIECE_BYTES, data.length - done), position + done)
}
