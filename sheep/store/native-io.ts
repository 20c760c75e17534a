// The object store's system calls that Node lacks, through the optional native addon
// (native/storeio, built at npm install):
// - syncfs(2): one call makes every write to a filesystem durable, with one disk cache flush,
//   where fdatasync needs a call — and a flush — per file. The store's flush uses it once it
//   has several objects to sync (file-store.ts); without the addon it fdatasyncs them one by one.
// - preadv2(2) with RWF_NOWAIT: a read the page cache can serve whole is served on the event
//   loop, without the thread pool's two wake-ups; one it cannot goes to the pool (without the
//   addon, every read does).
import fs from 'node:fs'
import os from 'node:os'
import { loadAddon } from '../../lib/native-addon.js'

interface StoreIoAddon {
  /** 0, or the errno of the call. */
  syncfs(fd: number): Promise<number>
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
