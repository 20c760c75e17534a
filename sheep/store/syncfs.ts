// syncfs(2) through the optional native addon (native/syncfs, built at npm install): one call
// makes every write to a filesystem durable, with one disk cache flush, where fdatasync needs a
// call — and a flush — per file. The store's flush uses it once it has several objects to sync
// (file-store.ts); without the addon it fdatasyncs them one by one, as before.
import fs from 'node:fs'
import os from 'node:os'
import { loadAddon } from '../../lib/native-addon.js'

interface SyncfsAddon {
  /** 0, or the errno of the call. */
  syncfs(fd: number): Promise<number>
}

let addon: SyncfsAddon | null | undefined

function syncfsAddon(): SyncfsAddon | null {
  if (addon === undefined) {
    const loaded = loadAddon<SyncfsAddon>('syncfs', 'sheepdog_syncfs')
    addon = loaded instanceof Error ? null : loaded
  }
  return addon
}

export function syncfsAvailable(): boolean {
  return syncfsAddon() !== null
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]))

/** Makes every write to the filesystem holding `dir` durable; throws an errno error (code EIO …). */
export async function syncfsDir(dir: string): Promise<void> {
  const native = syncfsAddon()
  if (!native) throw new Error('syncfs is not available')
  const fd = await new Promise<number>((resolve, reject) => fs.open(dir, 'r', (err, fd) => (err ? reject(err) : resolve(fd))))
  try {
    const errno = await native.syncfs(fd)
    if (errno !== 0) {
      const code = ERRNO_NAMES.get(errno) ?? `errno ${errno}`
      throw Object.assign(new Error(`syncfs of ${dir}: ${code}`), { code, errno: -errno })
    }
  } finally {
    fs.close(fd, () => undefined)
  }
}
