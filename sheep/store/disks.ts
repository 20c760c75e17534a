// The object disks of one sheep (the original's sheep/store/md.c, "multi-disk"): each disk is a
// directory, usually the mount point of its own file system. Objects are spread over the disks
// by consistent hashing: every disk has one virtual disk per 16 MiB of its capacity, hashed from
// its path with sd_hash / sd_hash_next, and an object lives on the first virtual disk at or
// after sd_hash_oid(oid) (wrapping round) — the original's placement, so a directory it wrote
// is read where it expects. A disk's capacity is the free space it had when first used,
// recorded in its `user.md.size` extended attribute (u64, host order) so the placement does not
// move as the disk fills up.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { sdHash, sdHashNext, sdHashOid } from '../../lib/hash.js'
import { oidOfKey } from '../../lib/oid.js'
import type { Logger } from '../../lib/log.js'

/** Capacity one virtual disk stands for (MD_VDISK_SIZE). */
export const MD_VDISK_BYTES = 16n * 1024n * 1024n
/** Disks one sheep can have: MD_INFO has room for this many (sd_md_info). */
export const MD_MAX_DISKS = 64
/** The extended attribute holding a disk's capacity. */
export const MD_SIZE_XATTR = 'user.md.size'
const MD_SIZE_XATTR_BYTES = 8
/** How long the attribute tools may take (they run once per disk, when it is plugged). */
const XATTR_TOOL_TIMEOUT_MS = 10_000

export interface Disk {
  /** The directory, without trailing slashes (as given: it is hashed as the original hashes it). */
  readonly path: string
  /** Capacity recorded at first use: weighs the disk's share of objects. */
  readonly space: bigint
  /** Identity of the directory when plugged: removing it or unmounting its file system changes it. */
  readonly dev: bigint
  readonly ino: bigint
}

/** Free bytes of the file system holding `dir` (statvfs f_bavail × block size). */
export function freeSpaceOf(dir: string): bigint {
  const st = fs.statfsSync(dir, { bigint: true })
  return st.bavail * st.bsize
}

export function trimTrailingSlashes(p: string): string {
  let out = p
  while (out.length > 1 && out.endsWith('/')) out = out.slice(0, -1)
  return out
}

export class DiskSet {
  /** In path order (the original keeps its disks in a tree sorted with strcmp). */
  private disks: Disk[] = []
  /** Virtual disk hashes, ascending, and the disk each belongs to. */
  private vdiskHashes: bigint[] = []
  private vdiskOwners: Disk[] = []

  constructor(private readonly log: Logger) {}

  list(): readonly Disk[] {
    return this.disks
  }

  get size(): number {
    return this.disks.length
  }

  has(disk: Disk): boolean {
    return this.disks.includes(disk)
  }

  find(p: string): Disk | undefined {
    const key = trimTrailingSlashes(p)
    return this.disks.find((d) => d.path === key)
  }

  /** Sum of the disks' recorded capacities (md_init_space). */
  space(): bigint {
    return this.disks.reduce((sum, d) => sum + d.space, 0n)
  }

  /**
   * Adds a disk: creates the directory, purges it if asked (a disk plugged at run time), records
   * its capacity. Returns the reason when it cannot be used (the caller logs it).
   */
  add(p: string, opts: { purge: boolean }): Disk | string {
    const diskPath = trimTrailingSlashes(p)
    if (this.find(diskPath)) return `duplicate path ${diskPath}`
    if (this.disks.length >= MD_MAX_DISKS) return `too many disks: at most ${MD_MAX_DISKS}`
    try {
      fs.mkdirSync(diskPath, { recursive: true })
      if (opts.purge) purgeDirectory(diskPath)
      const space = this.recordedSpace(diskPath)
      if (space === 0n) return `${diskPath} has no space`
      const st = fs.statSync(diskPath, { bigint: true })
      const disk: Disk = { path: diskPath, space, dev: st.dev, ino: st.ino }
      this.disks = [...this.disks, disk].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      this.rebuildVdisks()
      this.log.info(`${diskPath}, vdisk nr ${vdiskCount(disk)}, total disk ${this.disks.length}`)
      return disk
    } catch (e) {
      return `can't use ${diskPath}: ${e instanceof Error ? e.message : String(e)}`
    }
  }

  remove(disk: Disk): boolean {
    if (!this.has(disk)) return false
    this.disks = this.disks.filter((d) => d !== disk)
    this.rebuildVdisks()
    this.log.info(`${disk.path} from multi-disk array`)
    return true
  }

  /** The disk `oid` belongs on; undefined when no disk is left. */
  diskFor(oid: bigint): Disk | undefined {
    const hashes = this.vdiskHashes
    if (hashes.length === 0) return undefined
    // every strip of an object goes to the object's disk, as md.c hashes the oid alone
    const h = sdHashOid(oidOfKey(oid))
    let lo = 0
    let hi = hashes.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((hashes[mid] as bigint) < h) lo = mid + 1
      else hi = mid
    }
    return this.vdiskOwners[lo === hashes.length ? 0 : lo]
  }

  /** Whether the disk's directory is still the one plugged (not removed, not unmounted). */
  intact(disk: Disk): boolean {
    try {
      const st = fs.statSync(disk.path, { bigint: true })
      return st.dev === disk.dev && st.ino === disk.ino && st.isDirectory()
    } catch {
      return false
    }
  }

  private rebuildVdisks(): void {
    const pairs: Array<[bigint, Disk]> = []
    for (const disk of this.disks) {
      let h = sdHash(Buffer.from(disk.path))
      const nr = vdiskCount(disk)
      for (let i = 0; i < nr; i++) {
        h = sdHashNext(h)
        pairs.push([h, disk])
      }
    }
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    this.vdiskHashes = pairs.map((p) => p[0])
    this.vdiskOwners = pairs.map((p) => p[1])
  }

  /**
   * The capacity recorded in the disk's `user.md.size`, recorded now (the free space) when it
   * has none. Node has no call for extended attributes: getfattr/setfattr (attr) do it; without
   * them the free space is used and not recorded, and the log says so.
   */
  private recordedSpace(diskPath: string): bigint {
    const got = spawnSync('getfattr', ['--absolute-names', '--only-values', '-n', MD_SIZE_XATTR, diskPath], { timeout: XATTR_TOOL_TIMEOUT_MS })
    if (got.error) {
      this.log.warn(`multi-disk: cannot read ${MD_SIZE_XATTR} of ${diskPath} (${got.error.message}); its capacity is its free space now`)
      return freeSpaceOf(diskPath)
    }
    if (got.status === 0 && got.stdout.length === MD_SIZE_XATTR_BYTES) return got.stdout.readBigUInt64LE(0)
    const space = freeSpaceOf(diskPath)
    const value = Buffer.alloc(MD_SIZE_XATTR_BYTES)
    value.writeBigUInt64LE(space)
    const set = spawnSync('setfattr', ['-n', MD_SIZE_XATTR, '-v', `0x${value.toString('hex')}`, diskPath], { timeout: XATTR_TOOL_TIMEOUT_MS })
    if (set.error || set.status !== 0) {
      this.log.warn(
        `multi-disk need xattr feature for path: ${diskPath} (${set.error?.message ?? set.stderr.toString().trim()}); its capacity is its free space now`,
      )
    }
    return space
  }
}

function vdiskCount(disk: Disk): number {
  return Number((disk.space + MD_VDISK_BYTES - 1n) / MD_VDISK_BYTES)
}

/** Removes everything inside `dir`, keeping `dir` itself (it may be a mount point). */
export function purgeDirectory(dir: string): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true })
}
