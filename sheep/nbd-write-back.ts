// The NBD server's volatile write cache and request ordering, one per exported VDI and shared by
// every connection to it (sheep/nbd.ts). NBD_FLAG_SEND_FLUSH and SEND_FUA promise a write-back
// cache: a plain WRITE may be acknowledged before it is durable, FLUSH returns only once every
// write acknowledged before it is durable, a write with FUA is durable before its reply.
//
// Here a plain WRITE is acknowledged once it is queued: its payload is held in memory and sent
// to the sheep in the background (a VdiHandle write, answered once every replica has it on disk),
// with far more writes in flight than one client's queue depth. FLUSH waits for every write
// queued before it, on any connection of the export (which is what makes CAN_MULTI_CONN safe),
// and fails when one of them failed since the connection's previous FLUSH: a lost write is
// logged and reported, never silently dropped. Nothing acknowledged before a FLUSH that returned
// lives only in this process's memory, so a sheep killed with -9 afterwards loses none of it.
//
// Ordering: a request waits for every earlier request of the export whose range it overlaps when
// either of them writes, so overlapping writes land in order and a read, BLOCK_STATUS or TRIM
// sees every write acknowledged before it.
import { invariant } from '../lib/errors.js'

const MiB = 1024 * 1024

/** Payload bytes acknowledged but not yet on every replica, per NBD server; reading requests waits beyond. */
export const NBD_WRITE_BACK_MAX_DIRTY_BYTES = 64 * MiB
/** Writes acknowledged but not yet on every replica, per NBD server; reading requests waits beyond. */
export const NBD_WRITE_BACK_MAX_WRITES = 256

/**
 * What every export of one server holds acknowledged but unwritten, against the limits above:
 * one budget for all of them keeps the daemon's memory bounded however many VDIs are exported.
 */
export class WriteBackBudget {
  private bytes = 0
  private writes = 0
  private waiters: Array<() => void> = []

  /** True while one more write may be queued (one write always may). */
  hasRoom(): boolean {
    return this.writes === 0 || (this.writes < NBD_WRITE_BACK_MAX_WRITES && this.bytes < NBD_WRITE_BACK_MAX_DIRTY_BYTES)
  }

  /** Resolves when hasRoom() may have turned true. */
  waitForRoom(): Promise<void> {
    if (this.hasRoom()) return Promise.resolve()
    return new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  take(length: number): void {
    this.writes++
    this.bytes += length
  }

  give(length: number): void {
    this.writes--
    this.bytes -= length
    invariant(this.writes >= 0 && this.bytes >= 0, 'write-back accounting went negative')
    for (const wake of this.waiters.splice(0)) wake()
  }
}

/** One request in the export's ordering. */
interface Entry {
  start: bigint
  end: bigint
  writes: boolean
  /** Settles (never rejects) once the request is finished and out of the ordering. */
  done: Promise<void>
}

/** Called once for each background write that failed (the failure is also counted). */
export type WriteBackFailure = (offset: bigint, length: number, error: unknown) => void

export class ExportQueue {
  private readonly active = new Set<Entry>()
  private dirtyBytes = 0
  private failed = 0
  /** Writes registered so far (background or not): a FLUSH's drain says how many it covers. */
  private writesRegistered = 0

  constructor(
    private readonly onFailure: WriteBackFailure,
    private readonly budget = new WriteBackBudget(),
  ) {}

  /** Background writes that failed so far; a connection's FLUSH fails when this grew since its last one. */
  get failures(): number {
    return this.failed
  }

  /** Bytes acknowledged and not yet written to every replica. */
  get pendingBytes(): number {
    return this.dirtyBytes
  }

  /** True while the server's budget takes one more write. */
  hasRoom(): boolean {
    return this.budget.hasRoom()
  }

  /** Resolves when hasRoom() may have turned true. */
  waitForRoom(): Promise<void> {
    return this.budget.waitForRoom()
  }

  /** Runs `task` once every earlier conflicting request is done; its result or failure is the caller's. */
  run<T>(start: bigint, end: bigint, writes: boolean, task: () => Promise<T>): Promise<T> {
    invariant(start <= end, `request range ${start}..${end} is reversed`)
    const before = this.conflicting(start, end, writes)
    const result = before.length === 0 ? task() : Promise.all(before).then(task)
    if (writes) this.writesRegistered++
    const entry: Entry = { start, end, writes, done: Promise.resolve() }
    const forget = () => {
      this.active.delete(entry)
    }
    entry.done = result.then(forget, forget)
    this.active.add(entry)
    return result
  }

  /**
   * Queues a write to run in the background, in order with the requests around it; the caller
   * may acknowledge it at once. A failure is counted and reported through onFailure.
   */
  defer(start: bigint, length: number, task: () => Promise<void>): void {
    this.budget.take(length)
    this.dirtyBytes += length
    const written = this.run(start, start + BigInt(length), true, task)
    void written
      .catch((error: unknown) => {
        this.failed++
        this.onFailure(start, length, error)
      })
      .finally(() => {
        this.dirtyBytes -= length
        this.budget.give(length)
      })
  }

  /**
   * Resolves once every write registered before the call (background or not) is finished, with
   * their count: the first that many writes of the export are finished then.
   */
  async drain(): Promise<number> {
    const registered = this.writesRegistered
    const writes = [...this.active].filter((e) => e.writes).map((e) => e.done)
    await Promise.all(writes)
    return registered
  }

  /** True when no request is queued or running. */
  get idle(): boolean {
    return this.active.size === 0
  }

  private conflicting(start: bigint, end: bigint, writes: boolean): Promise<void>[] {
    const out: Promise<void>[] = []
    for (const e of this.active) {
      if ((e.writes || writes) && e.start < end && start < e.end) out.push(e.done)
    }
    return out
  }
}

/**
 * Syncs shared by the requests that need them (NBD FLUSH): a request needs a sync begun once the
 * export's first `finished` writes were finished. It joins the sync under way if that one began
 * with at least as many finished; else it shares the next, begun once the one under way is done,
 * with every other request of the moment. A client sends FLUSHes in bursts (fio, one into every
 * free slot of its queue) with no write between them: the whole burst costs one sync, where a
 * sync begun after each request's arrival would cost two.
 */
export class CoveringSync {
  private current: { covers: number; done: Promise<void> } | undefined
  private next: { covers: number; done: Promise<void> } | undefined

  constructor(private readonly work: () => Promise<void>) {}

  run(finished: number): Promise<void> {
    if (this.current && this.current.covers >= finished) return this.current.done
    if (!this.current) return this.begin(finished)
    if (this.next) {
      this.next.covers = Math.max(this.next.covers, finished)
      return this.next.done
    }
    const after = this.current.done.catch(() => undefined)
    const next: { covers: number; done: Promise<void> } = {
      covers: finished,
      done: after.then((): Promise<void> => {
        this.next = undefined
        return this.begin(next.covers)
      }),
    }
    this.next = next
    return next.done
  }

  private begin(covers: number): Promise<void> {
    const run = {
      covers,
      done: this.work().finally(() => {
        if (this.current === run) this.current = undefined
      }),
    }
    this.current = run
    return run.done
  }
}
