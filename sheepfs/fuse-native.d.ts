// Type declarations for the parts of fuse-native (a CommonJS module without types) that sheepfs
// uses: the Fuse class, its mount options and the path-based operation callbacks of libfuse 2.
declare module 'fuse-native' {
  namespace Fuse {
    /** What getattr answers; times are Dates or milliseconds since the epoch. */
    interface Stat {
      mode: number
      size?: number
      uid?: number
      gid?: number
      nlink?: number
      ino?: number
      dev?: number
      rdev?: number
      blksize?: number
      blocks?: number
      atime?: Date | number
      mtime?: Date | number
      ctime?: Date | number
    }

    /** A result callback: 0 or a negative errno. */
    type DoneCallback = (result: number) => void
    /** read / write: bytes transferred, or a negative errno. */
    type TransferCallback = (result: number) => void

    interface Operations {
      init?(cb: DoneCallback): void
      getattr?(path: string, cb: (result: number, stat?: Stat) => void): void
      readdir?(path: string, cb: (result: number, names?: string[], stats?: Stat[]) => void): void
      open?(path: string, flags: number, cb: (result: number, fd?: number) => void): void
      create?(path: string, mode: number, cb: (result: number, fd?: number) => void): void
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: TransferCallback): void
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: TransferCallback): void
      flush?(path: string, fd: number, cb: DoneCallback): void
      fsync?(path: string, datasync: number, fd: number, cb: DoneCallback): void
      release?(path: string, fd: number, cb: DoneCallback): void
      truncate?(path: string, size: number, cb: DoneCallback): void
      ftruncate?(path: string, fd: number, size: number, cb: DoneCallback): void
      utimens?(path: string, atime: number, mtime: number, cb: DoneCallback): void
      chmod?(path: string, mode: number, cb: DoneCallback): void
      chown?(path: string, uid: number, gid: number, cb: DoneCallback): void
      mknod?(path: string, mode: number, dev: number, cb: DoneCallback): void
      unlink?(path: string, cb: DoneCallback): void
      rename?(src: string, dest: string, cb: DoneCallback): void
      link?(src: string, dest: string, cb: DoneCallback): void
      symlink?(src: string, dest: string, cb: DoneCallback): void
      mkdir?(path: string, mode: number, cb: DoneCallback): void
      rmdir?(path: string, cb: DoneCallback): void
    }

    interface Options {
      /** Per-operation timeout in ms, or false for none (the default is 15 s). */
      timeout?: number | false
      debug?: boolean
      force?: boolean
      mkdir?: boolean
      fsname?: string
      allowRoot?: boolean
      allowOther?: boolean
    }
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options)
    readonly mnt: string
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    /** The `-o…` argument handed to libfuse, built from the options. */
    protected _fuseOptions(): string
    static unmount(mnt: string, cb: (err: Error | null) => void): void
  }

  export = Fuse
}
