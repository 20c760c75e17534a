// Read-ahead for a volume: the kernel asks for at most 128 KiB per FUSE read and waits for each,
// so a sequential reader served one request per read would wait on a sheep round trip every
// 128 KiB. Instead a sequential reader gets windows of READ_AHEAD_BYTES (one request each,
// aligned to that size) fetched ahead of it; the number of windows in flight starts at one and
// doubles each time the reader goes past a window within half the age limit, up to
// READ_AHEAD_WINDOWS — as the kernel ramps its own read-ahead — so a slow or short reader costs
// little and what is fetched ahead is still fresh when the reader gets there.
// Data older than READ_AHEAD_MAX_AGE_MS is never served: what others write becomes visible to a
// reader that keeps the file open after at most that long. Volume drops every window on a
// write through sheepfs and on a reload (every open).

/** One window: what one request to the sheep fetches for a sequential reader. */
export const READ_AHEAD_BYTES = 4 * 1024 * 1024
/** Windows fetched ahead of a fast sequential reader at most. */
export const READ_AHEAD_WINDOWS = 8
/**
 * Read-ahead data older than this is not served: writes by others (dog, another gateway) become
 * visible to a reader that keeps the file open after at most this long.
 */
export const READ_AHEAD_MAX_AGE_MS = 250

/** Reads a range of the volume from the sheep, into `into` (at least `length` bytes) when given. */
export type RangeFetcher = (offset: number, length: number, into?: Buffer) => Promise<Buffer>

interface Window {
  offset: number
  length: number
  /** What the window's fetch fills (its data is a view of it); reused once the window is retired. */
  buffer: Buffer
  data: Promise<Buffer>
  /** The data once it has arrived (what readNow serves from). */
  ready?: Buffer
  issuedAtMs: number
}

export interface ReadAheadLimits {
  windowBytes: number
  windowsMax: number
  maxAgeMs: number
}

export class ReadAhead {
  /** Contiguous windows, in order, the first one holding the reader's position. */
  private windows: Window[] = []
  private depth = 1
  private lastReadEnd = -1
  /**
   * Buffers of retired windows, for the next windows: allocating 4 MiB per window would mean
   * fresh pages to fault in and V8 collecting garbage for the external memory all the time.
   */
  private readonly spare: Buffer[] = []

  constructor(
    private readonly fetch: RangeFetcher,
    private readonly limits: ReadAheadLimits = { windowBytes: READ_AHEAD_BYTES, windowsMax: READ_AHEAD_WINDOWS, maxAgeMs: READ_AHEAD_MAX_AGE_MS },
  ) {
    if (!(limits.windowBytes > 0 && limits.windowsMax >= 1 && limits.maxAgeMs > 0)) throw new Error(`bad read-ahead limits ${JSON.stringify(limits)}`)
  }

  /** Forgets everything fetched ahead (a write, a reload). */
  invalidate(): void {
    this.retireAll()
    this.depth = 1
  }

  /**
   * read() without a promise, for the common case of a sequential reader whose bytes have
   * arrived already (most FUSE reads): the bytes, or undefined when read() must be called.
   */
  readNow(offset: number, length: number, size: number): Buffer | undefined {
    if (offset !== this.lastReadEnd) return undefined
    const now = Date.now()
    const end = offset + length
    const parts: Buffer[] = []
    let at = offset
    for (const w of this.windows) {
      if (w.offset + w.length <= offset) continue
      if (w.offset > at || w.ready === undefined || now - w.issuedAtMs >= this.limits.maxAgeMs) return undefined
      const to = Math.min(end, w.offset + w.length)
      parts.push(w.ready.subarray(at - w.offset, to - w.offset))
      at = to
      if (at === end) break
    }
    if (at < end) return undefined
    this.lastReadEnd = end
    if (this.passWindowsBefore(offset, true, now)) this.depth = Math.min(this.depth * 2, this.limits.windowsMax)
    this.fillFrom(offset, size)
    return parts.length === 1 ? parts[0] : Buffer.concat(parts)
  }

  /** Reads `length` bytes at `offset` of a volume of `size` bytes (the range lies within it). */
  async read(offset: number, length: number, size: number): Promise<Buffer> {
    const sequential = offset === this.lastReadEnd
    this.lastReadEnd = offset + length
    const now = Date.now()
    const keptUp = this.passWindowsBefore(offset, sequential, now)
    const first = this.windows[0]
    const covered = first !== undefined && first.offset <= offset && now - first.issuedAtMs < this.limits.maxAgeMs
    if (!covered && !keptUp) {
      this.invalidate()
      if (!sequential || length >= this.limits.windowBytes) return this.fetch(offset, length)
    } else if (!covered) {
      this.retireAll()
    }
    if (keptUp) this.depth = Math.min(this.depth * 2, this.limits.windowsMax)
    this.fillFrom(offset, size)
    return this.serve(offset, length)
  }

  /**
   * Retires the windows that end before `offset`; true when the reader went past one within
   * half the age limit: twice as many windows ahead will still be fresh when it gets to them.
   */
  private passWindowsBefore(offset: number, sequential: boolean, now: number): boolean {
    let keptUp = false
    while (this.windows.length > 0 && this.windows[0]!.offset + this.windows[0]!.length <= offset) {
      const done = this.windows.shift()!
      this.retire(done)
      keptUp ||= sequential && now - done.issuedAtMs < this.limits.maxAgeMs / 2
    }
    return keptUp
  }

  /** Issues windows until `depth` are in flight (the first starting at `offset` when none are). */
  private fillFrom(offset: number, size: number): void {
    while (this.windows.length < this.depth) {
      const last = this.windows.at(-1)
      const start = last ? last.offset + last.length : offset
      if (start >= size) return
      const end = Math.min(size, (Math.floor(start / this.limits.windowBytes) + 1) * this.limits.windowBytes)
      const buffer = this.spare.pop() ?? Buffer.allocUnsafeSlow(this.limits.windowBytes)
      const window: Window = { offset: start, length: end - start, buffer, data: this.fetch(start, end - start, buffer), issuedAtMs: Date.now() }
      // (the rejection handler also keeps a window nobody reads from being an unhandled rejection)
      window.data.then(
        (data) => {
          window.ready = data
        },
        () => undefined,
      )
      this.windows.push(window)
    }
  }

  private retireAll(): void {
    for (const w of this.windows) this.retire(w)
    this.windows = []
  }

  /**
   * A window nobody will serve from again: its buffer is reused once its fetch has settled (the
   * socket fills it until then) and, one macrotask later, once every read that was handed a view
   * of it has copied its bytes out (fs.ts copies in the same microtask run that answers).
   */
  private retire(w: Window): void {
    const giveBack = (): void => {
      setImmediate(() => {
        if (this.spare.length < this.limits.windowsMax) this.spare.push(w.buffer)
      })
    }
    w.data.then(giveBack, giveBack)
  }

  /** The range out of the windows covering it (one window usually; a copy when it spans two). */
  private async serve(offset: number, length: number): Promise<Buffer> {
    // the windows are picked before any await: a concurrent read may shift or replace the list
    const covering = this.windows.filter((w) => w.offset < offset + length && offset < w.offset + w.length)
    const parts: Buffer[] = []
    try {
      for (const w of covering) {
        const data = await w.data
        const from = Math.max(offset, w.offset) - w.offset
        const to = Math.min(offset + length, w.offset + w.length) - w.offset
        parts.push(data.subarray(from, to))
      }
    } catch (error) {
      this.invalidate()
      throw error
    }
    const total = parts.reduce((sum, p) => sum + p.length, 0)
    if (total < length) {
      // the windows end before the range does (the volume's end moved): read the rest directly
      parts.push(await this.fetch(offset + total, length - total))
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  }
}
