// Mounting and unmounting through fuse-native: the libfuse options (always big_writes; direct_io
// unless the page cache is wanted), recovery of a mount point left behind by a sheepfs that was
// killed ("Transport endpoint is not connected"), and noticing through /proc/self/mountinfo
// that someone ran `fusermount -u`.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import Fuse from 'fuse-native'

/** How long mounting may take until the kernel's INIT arrives. */
export const MOUNT_TIMEOUT_MS = 30_000
/** How long an unmount may take before sheepfs exits regardless. */
export const UNMOUNT_TIMEOUT_MS = 10_000
/** How often the mount table is checked for an unmount done from outside. */
export const MOUNT_WATCH_INTERVAL_MS = 500
/** How long `fusermount -u` may run when a stale mount point is cleaned up. */
const FUSERMOUNT_TIMEOUT_MS = 10_000
/** The source column sheepfs mounts show in the mount table. */
export const SHEEPFS_FSNAME = 'sheepfs'

/** Errors that stat answers for a FUSE mount whose daemon is gone. */
const STALE_MOUNT_ERRORS: ReadonlySet<string> = new Set(['ENOTCONN', 'ECONNABORTED'])

export interface MountSettings {
  debug: boolean
  /** Use the kernel page cache (no direct_io). */
  pageCache: boolean
}

/** Fuse with the mount options fuse-native has no switch for. */
class SheepfsFuse extends Fuse {
  constructor(
    mountpoint: string,
    ops: Fuse.Operations,
    opts: Fuse.Options,
    private readonly extraOptions: readonly string[],
  ) {
    super(mountpoint, ops, opts)
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = this.extraOptions.join(',')
    if (extra === '') return base
    return base === '' ? `-o${extra}` : `${base},${extra}`
  }
}

/**
 * libfuse options beyond fsname: big_writes always; direct_io unless the page cache is used.
 * Attributes are never cached, because the informational files change size with every open:
 * fstat of an open one must report the size of the output that open captured, and with the
 * page cache a read past the size known to the kernel must ask again. Names are not cached
 * either, so a volume is gone the moment vdi/unmount is written.
 */
export function extraMountOptions(settings: MountSettings): string[] {
  return [...(settings.pageCache ? [] : ['direct_io']), 'big_writes', 'attr_timeout=0', 'entry_timeout=0']
}

export interface MountEntry {
  id: number
  mountPoint: string
  fsType: string
  source: string
}

/** Undoes the octal escapes (\040 for a space …) of mountinfo fields. */
function unescapeMountField(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** The mount table of this process's namespace. */
export function readMountTable(): MountEntry[] {
  let text: string
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const entries: MountEntry[] = []
  for (const line of text.split('\n')) {
    const fields = line.split(' ')
    const dash = fields.indexOf('-')
    if (fields.length < 5 || dash < 0) continue
    entries.push({
      id: Number(fields[0]),
      mountPoint: unescapeMountField(fields[4] as string),
      fsType: fields[dash + 1] ?? '',
      source: unescapeMountField(fields[dash + 2] ?? ''),
    })
  }
  return entries
}

/** The newest sheepfs mount at `mountpoint`, if any. */
export function findSheepfsMount(mountpoint: string): MountEntry | undefined {
  let found: MountEntry | undefined
  for (const entry of readMountTable()) {
    if (entry.mountPoint === mountpoint && entry.fsType.startsWith('fuse') && entry.source === SHEEPFS_FSNAME) found = entry
  }
  return found
}

/**
 * Cleans up a mount point whose FUSE daemon died (stat fails with ENOTCONN): lazily unmounts it
 * so it can be mounted again. Answers true when it did.
 */
export function recoverStaleMount(mountpoint: string): boolean {
  try {
    fs.statSync(mountpoint)
    return false
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? ''
    if (!STALE_MOUNT_ERRORS.has(code)) return false
  }
  const r = spawnSync('fusermount', ['-u', '-z', mountpoint], { encoding: 'utf8', timeout: FUSERMOUNT_TIMEOUT_MS })
  if (r.status !== 0) {
    throw new Error(`${mountpoint} is a stale mount and fusermount -u failed: ${(r.stderr || r.error?.message || '').trim()}`)
  }
  return true
}

export interface Mounted {
  mountpoint: string
  /** The mount's id in /proc/self/mountinfo. */
  mountId: number | undefined
  /** Unmounts (fusermount -u -z), bounded by UNMOUNT_TIMEOUT_MS; never throws. */
  unmount(): Promise<string | undefined>
}

/** Mounts `ops` at `mountpoint`; resolves once the kernel has sent INIT. */
export function mountFuse(mountpoint: string, ops: Fuse.Operations, settings: MountSettings): Promise<Mounted> {
  // the operations time themselves out (fs.ts); fuse-native's own timer would answer while a
  // late read still meant to fill the kernel's buffer
  const fuse = new SheepfsFuse(mountpoint, ops, { debug: settings.debug, fsname: SHEEPFS_FSNAME, timeout: false }, extraMountOptions(settings))
  return new Promise<Mounted>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mounting on ${mountpoint} took longer than ${MOUNT_TIMEOUT_MS} ms`)), MOUNT_TIMEOUT_MS)
    fuse.mount((err) => {
      clearTimeout(timer)
      if (err) {
        reject(new Error(`cannot mount on ${mountpoint}: ${err.message}`))
        return
      }
      resolve({
        mountpoint,
        mountId: findSheepfsMount(mountpoint)?.id,
        unmount: () =>
          new Promise<string | undefined>((done) => {
            const unmountTimer = setTimeout(() => done(`unmount took longer than ${UNMOUNT_TIMEOUT_MS} ms`), UNMOUNT_TIMEOUT_MS)
            fuse.unmount((unmountError) => {
              clearTimeout(unmountTimer)
              done(unmountError ? unmountError.message : undefined)
            })
          }),
      })
    })
  })
}

/** Calls `onGone` once the mount `mountId` has left the mount table (checked every interval). */
export function watchMount(mountId: number, onGone: () => void): { stop(): void } {
  const timer = setInterval(() => {
    if (!readMountTable().some((entry) => entry.id === mountId)) {
      clearInterval(timer)
      onGone()
    }
  }, MOUNT_WATCH_INTERVAL_MS)
  return { stop: () => clearInterval(timer) }
}
