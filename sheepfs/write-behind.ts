// Write-behind for a volume: the kernel hands sheepfs one write of at most 128 KiB at a time
// (libfuse 2) and waits for each, so writing every one through — a fsync'd write on every
// replica — caps a sequential writer at a fraction of `dog vdi write`. Here a write is answered
// once it is buffered; a run of contiguous writes is sent to the sheep as whole object pieces
// (up to the VDI's object size) in the background, several at once, as dog does.
//
// What still holds: fsync and close (FUSE flush) return only after everything buffered before
// them is on every replica, and report a failure of any of it; a write that overlaps one
// still being sent waits for it, so writes land in order; a buffered run is sent after at most
// WRITE_BEHIND_MAX_AGE_MS, so dog sees sheepfs's writes that soon even while the file stays open
// (and at once after close or fsync). Reads flush first (Volume), so a volume reads back what
// was written through it.

/** A buffered run is sent to the sheep this long after its first write at the latest. */
export const WRITE_BEHIND_MAX_AGE_MS = 100
/** Bytes buffered or being sent per volume; a write beyond it waits for room. */
export const WRITE_BEHIND_MAX_BYTES = 32 * 1024 * 1024

/** Sends one piece to the sheep (VdiHandle.write); resolves once every replica has it. */
export type WriteSender = (offset: number, data: Buffer) => Promise<void>

/** The run of contiguous writes not sent yet. */
interface Run {
  offset: number
  chunks: Buffer[]
  length: number
  timer: NodeJS.Timeout
}

/** A piece being sent: its byte range and its completion. */
interface Sending {
  start: number
  end: number
  done: Promise<void>
}

export interface WriteBehindLimits {
  maxAgeMs: number
  maxBytes: number
}

export class WriteBehind {
  private run: Run | undefined
  private readonly sending = new Set<Sending>()
  private sendingBytes = 0
  /** The first failure of a background send, reported by the next write, flush or fsync. */
  private failure: unknown

  constructor(
    private readonly send: WriteSender,
    /** The VDI's object size now: a run is sent as soon as it reaches an object boundary. */
    private readonly objectSize: () => number,
    private readonly limits: WriteBehindLimits = { maxAgeMs: WRITE_BEHIND_MAX_AGE_MS, maxBytes: WRITE_BEHIND_MAX_BYTES },
  ) {
    if (!(limits.maxAgeMs > 0 && limits.maxBytes > 0)) throw new Error(`bad write-behind limits ${JSON.stringify(limits)}`)
  }

  /** Anything buffered or still being sent. */
  get pending(): boolean {
    return this.run !== undefined || this.sending.size > 0
  }

  /**
   * Takes a write (the caller must not change `data` afterwards). Resolves once it is buffered,
   * after waiting for room when WRITE_BEHIND_MAX_BYTES are already pending. Throws the failure
   * of an earlier background send, once.
   */
  async write(offset: number, data: Buffer): Promise<void> {
    this.reportFailure()
    if (data.length === 0) return
    if (this.run && offset !== this.run.offset + this.run.length) this.sendRun()
    if (this.run) {
      this.run.chunks.push(data)
      this.run.length += data.length
    } else {
      const timer = setTimeout(() => this.sendRun(), this.limits.maxAgeMs)
      timer.unref()
      this.run = { offset, chunks: [data], length: data.length, timer }
    }
    this.sendCompleteObjects()
    while (this.sending.size > 0 && this.sendingBytes + (this.run?.length ?? 0) > this.limits.maxBytes) {
      await Promise.race([...this.sending].map((s) => s.done))
    }
  }

  /**
   * Sends what is buffered and waits until everything sent so far is done. fsync and close
   * (`report`) also get the failure of a background send, once; reads and reloads leave it for them.
   */
  async flush(report: boolean): Promise<void> {
    this.sendRun()
    // only what is being sent now: a writer going on meanwhile must not hold the flush up (a
    // later send overlapping one of these waits for it anyway)
    await Promise.all([...this.sending].map((s) => s.done))
    if (report) this.reportFailure()
  }

  /** Sends the whole objects at the front of the run; the rest stays buffered. */
  private sendCompleteObjects(): void {
    const run = this.run
    if (!run) return
    const objectSize = this.objectSize()
    const end = run.offset + run.length
    const lastBoundary = Math.floor(end / objectSize) * objectSize
    if (lastBoundary <= run.offset) return
    if (lastBoundary === end) {
      this.sendRun()
      return
    }
    const all = Buffer.concat(run.chunks, run.length)
    const cut = lastBoundary - run.offset
    this.startSending(run.offset, all.subarray(0, cut))
    run.offset = lastBoundary
    run.chunks = [all.subarray(cut)]
    run.length = all.length - cut
  }

  /** Sends the buffered run, if any, now. */
  private sendRun(): void {
    const run = this.run
    if (!run) return
    this.run = undefined
    clearTimeout(run.timer)
    this.startSending(run.offset, run.chunks.length === 1 ? run.chunks[0]! : Buffer.concat(run.chunks, run.length))
  }

  /** Starts sending a range once every overlapping send before it is done (writes stay in order). */
  private startSending(offset: number, data: Buffer): void {
    const end = offset + data.length
    const before = [...this.sending].filter((s) => s.start < end && offset < s.end).map((s) => s.done)
    const entry: Sending = { start: offset, end, done: Promise.resolve() }
    this.sending.add(entry)
    this.sendingBytes += data.length
    entry.done = (async () => {
      try {
        if (before.length > 0) await Promise.all(before)
        await this.send(offset, data)
      } catch (error) {
        this.failure ??= error
      } finally {
        this.sending.delete(entry)
        this.sendingBytes -= data.length
      }
    })()
  }

  private reportFailure(): void {
    if (this.failure === undefined) return
    const failure = this.failure
    this.failure = undefined
    throw failure
  }
}
