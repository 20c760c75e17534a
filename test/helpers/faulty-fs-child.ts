// The process behind a fault-injecting disk (test/helpers/faulty-fs.ts): a FUSE pass-through of
// BACKING at MOUNTPOINT (mounted as sheepfs mounts, big_writes and direct_io) that answers EIO
// to the operations its parent arms over IPC. It runs in a process of its own so that a test
// may touch the mount synchronously without waiting on its own event loop.
// Usage (forked with IPC): faulty-fs-child.ts BACKING MOUNTPOINT
import fs from 'node:fs'
import path from 'node:path'
import type Fuse from 'fuse-native'
import { mountFuse } from '../../sheepfs/mount.js'

/** The operations a fault can be armed on. */
export type FaultOp = 'read' | 'write' | 'fsync' | 'create' | 'open' | 'rename' | 'unlink' | 'readdir' | 'getattr'

/** EIO for `op` on files whose path (inside the disk) matches `match`, `times` times (-1: until disarmed). */
export interface FaultRule {
  op: FaultOp
  match: string
  times: number
}

export type ParentMessage = { arm: FaultRule } | { disarm: true } | { unmount: true }
export type ChildMessage = { mounted: true } | { armed: true } | { injected: number } | { error: string } | { unmounted: true }

const [backing, mountpoint] = process.argv.slice(2) as [string, string]
const EIO = -5
let rules: Array<FaultRule & { re: RegExp }> = []
let injected = 0
const send = (m: ChildMessage) => process.send?.(m)

/** True (and the rule used once) when `op` on `p` must fail. */
function fault(op: FaultOp, p: string): boolean {
  const rule = rules.find((r) => r.op === op && r.re.test(p) && r.times !== 0)
  if (!rule) return false
  if (rule.times > 0) rule.times--
  injected++
  return true
}

const real = (p: string) => path.join(backing, p)
/** The negative errno FUSE wants (node's errno is negative already on Linux). */
const errno = (e: unknown): number => {
  const n = (e as NodeJS.ErrnoException).errno
  return typeof n === 'number' && n < 0 ? n : EIO
}
const statOf = (s: fs.Stats): Fuse.Stat => ({
  mode: s.mode,
  size: s.size,
  uid: s.uid,
  gid: s.gid,
  nlink: s.nlink,
  ino: s.ino,
  blksize: s.blksize,
  blocks: s.blocks,
  atime: s.atime,
  mtime: s.mtime,
  ctime: s.ctime,
})
/** Runs a node callback-style call and answers FUSE: 0 or the negative errno. */
const done = (cb: (r: number) => void) => (e: NodeJS.ErrnoException | null) => cb(e ? errno(e) : 0)

const ops: Fuse.Operations & Record<string, unknown> = {
  getattr: (p, cb) => {
    if (fault('getattr', p)) return cb(EIO)
    fs.lstat(real(p), (e, s) => (e ? cb(errno(e)) : cb(0, statOf(s))))
  },
  fgetattr: (p: string, fd: number, cb: (r: number, s?: Fuse.Stat) => void) => fs.fstat(fd, (e, s) => (e ? cb(errno(e)) : cb(0, statOf(s)))),
  access: (_p: string, _mode: number, cb: (r: number) => void) => cb(0),
  statfs: (_p: string, cb: (r: number, s?: unknown) => void) => {
    try {
      const s = fs.statfsSync(backing)
      cb(0, {
        bsize: s.bsize,
        frsize: s.bsize,
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
        files: s.files,
        ffree: s.ffree,
        favail: s.ffree,
        namemax: 255,
      })
    } catch (e) {
      cb(errno(e))
    }
  },
  readdir: (p, cb) => {
    if (fault('readdir', p)) return cb(EIO)
    fs.readdir(real(p), (e, names) => (e ? cb(errno(e)) : cb(0, names)))
  },
  open: (p, flags, cb) => {
    if (fault('open', p)) return cb(EIO)
    fs.open(real(p), flags, (e, fd) => (e ? cb(errno(e)) : cb(0, fd)))
  },
  create: (p, mode, cb) => {
    if (fault('create', p)) return cb(EIO)
    fs.open(real(p), fs.constants.O_CREAT | fs.constants.O_RDWR, mode, (e, fd) => (e ? cb(errno(e)) : cb(0, fd)))
  },
  read: (p, fd, buf, len, pos, cb) => {
    if (fault('read', p)) return cb(EIO)
    fs.read(fd, buf, 0, len, pos, (e, n) => cb(e ? errno(e) : n))
  },
  write: (p, fd, buf, len, pos, cb) => {
    if (fault('write', p)) return cb(EIO)
    fs.write(fd, buf, 0, len, pos, (e, n) => cb(e ? errno(e) : n))
  },
  flush: (_p, _fd, cb) => cb(0),
  fsync: (p, _datasync, fd, cb) => {
    if (fault('fsync', p)) return cb(EIO)
    fs.fsync(fd, done(cb))
  },
  fsyncdir: (_p: string, _datasync: number, _fd: number, cb: (r: number) => void) => cb(0),
  release: (_p, fd, cb) => fs.close(fd, done(cb)),
  truncate: (p, size, cb) => fs.truncate(real(p), size, done(cb)),
  ftruncate: (_p, fd, size, cb) => fs.ftruncate(fd, size, done(cb)),
  utimens: (p, atime, mtime, cb) => fs.utimes(real(p), new Date(atime), new Date(mtime), done(cb)),
  chmod: (p, mode, cb) => fs.chmod(real(p), mode, done(cb)),
  chown: (p, uid, gid, cb) => fs.chown(real(p), uid, gid, done(cb)),
  unlink: (p, cb) => {
    if (fault('unlink', p)) return cb(EIO)
    fs.unlink(real(p), done(cb))
  },
  rename: (src, dest, cb) => {
    if (fault('rename', src) || fault('rename', dest)) return cb(EIO)
    fs.rename(real(src), real(dest), done(cb))
  },
  link: (src, dest, cb) => fs.link(real(src), real(dest), done(cb)),
  mkdir: (p, mode, cb) => fs.mkdir(real(p), mode, done(cb)),
  rmdir: (p, cb) => fs.rmdir(real(p), done(cb)),
}

const mounted = await mountFuse(mountpoint, ops, { debug: false, pageCache: false })
send({ mounted: true })
process.on('message', (m: ParentMessage) => {
  if ('arm' in m) {
    rules.push({ ...m.arm, re: new RegExp(m.arm.match) })
    send({ armed: true })
  } else if ('disarm' in m) {
    rules = []
    send({ injected })
  } else if ('unmount' in m) {
    void mounted.unmount().then((error) => {
      if (error) send({ error })
      send({ unmounted: true })
      process.exit(0)
    })
  }
})
