// The write-intent log of the checksum layer (checksums.ts, docs/integrity.md), in the spirit of
// md-RAID's write-intent bitmap: before the first mutation of an object, its store key is
// appended to `intent.log` and the append made durable; only then may the object's bytes and its
// checksums change (a create's bytes change at its rename: checksums.ts overlaps the append's
// sync with the sync of the temporary file). The mark is cleared lazily: once an object has had
// no mutation for a while, its checksum file is written and made durable (`syncChecksums`) and
// a clean record (`-KEY`) appended after its mark — without a sync: a clean record lost in a
// crash only makes its object look dirty, and a dirty object's checksums are re-established,
// never trusted; a later mark of the same key comes after it in the file, and its own sync
// makes the records before it durable too. The log is rewritten with the dirty keys alone
// (durably: temporary file, rename) only when it has grown past INTENT_LOG_COMPACT_BYTES.
// After a crash, every key
// still in the log is an object whose data and checksums may disagree because a write was in
// progress, not because the data went bad: its checksums are re-established instead of trusted.
//
// A write the store does not sync (the NBD write-back cache's) keeps its mark until a store
// flush made it durable: dropped earlier, a power loss could leave old bytes under new checksums.
//
// The cost is one durable append per object that turns dirty (shared by every object turning
// dirty at the same moment), not one per write: an object written again and again stays dirty.
import fsp from 'node:fs/promises'
import path from 'node:path'
import { GroupRun } from '../../lib/async.js'
import { keyFileName, parseKeyFileName } from '../../lib/oid.js'

export const INTENT_LOG_FILE = 'intent.log'
/** An object is marked clean after this long without a mutation. */
export const INTENT_CLEAN_IDLE_MS = 2_000
/** How often the log looks for objects to mark clean. */
export const INTENT_CLEAN_INTERVAL_MS = 1_000
/** The log is rewritten with only the dirty keys once its marks and clean records take this much. */
export const INTENT_LOG_COMPACT_BYTES = 1 << 20
/** A line of the log: a key (its mark), or `-` and a key (its clean record). */
const CLEAN_PREFIX = '-'

interface Entry {
  /** Mutations under way. */
  inflight: number
  /** Counts mutations: a clean may drop the entry only if no mutation began since it looked. */
  gen: number
  /** Settles once the key is durably in the log. */
  durable: Promise<void> | undefined
  /** `durable` has resolved: a mark needs no wait (`markNow`). */
  settled: boolean
  lastMs: number
  /**
   * A write without sync (SD_FLAG_CMD_UNSTABLE) may not be on disk yet: the mark stays until a
   * flush made it durable, or a power loss could leave old bytes under new checksums.
   */
  unstable: boolean
  /** Counts unstable mutations: a flush clears `unstable` only if none began since it looked. */
  unstableGen: number
}

function newEntry(): Entry {
  return { inflight: 0, gen: 0, durable: undefined, settled: false, lastMs: Date.now(), unstable: false, unstableGen: 0 }
}

export interface IntentLogOptions {
  dir: string
  nosync: boolean
  /** Makes the checksum files of these keys durable (before their marks are dropped). */
  syncChecksums: (keys: bigint[]) => Promise<void>
}

export class IntentLog {
  private readonly entries = new Map<bigint, Entry>()
  /** Keys waiting for the next durable append. */
  private pending: bigint[] = []
  private readonly appendRun = new GroupRun(() => this.serial(() => this.appendPending()))
  /** Every change of the file, one after another. */
  private chain: Promise<unknown> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined
  private cleaning = false
  /** The log file's length as this process wrote it. */
  private bytes = 0

  constructor(private readonly opts: IntentLogOptions) {}

  private get file(): string {
    return path.join(this.opts.dir, INTENT_LOG_FILE)
  }

  /**
   * The keys left in the log by the previous run (a crash, or a stop before they were marked
   * clean), read once at start; the log is then emptied (the caller has dealt with them first).
   */
  async recover(): Promise<bigint[]> {
    let text = ''
    try {
      text = await fsp.readFile(this.file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    }
    // the records in order: a mark makes a key dirty, a clean record after it clean again; a
    // line a crash tore is no key at all and is skipped (a torn clean record leaves its key dirty)
    const keys = new Set<bigint>()
    for (const raw of text.split('\n')) {
      const line = raw.trim()
      const cleaned = line.startsWith(CLEAN_PREFIX)
      const key = parseKeyFileName(cleaned ? line.slice(CLEAN_PREFIX.length) : line)
      if (key === undefined) continue
      if (cleaned) keys.delete(key)
      else keys.add(key)
    }
    return [...keys]
  }

  /** Starts afresh with an empty log (after `recover`'s keys were dealt with, or a purge). */
  async reset(): Promise<void> {
    this.entries.clear()
    this.pending = []
    await this.serial(() => this.rewrite([]))
    if (!this.timer) {
      this.timer = setInterval(() => void this.clean(), INTENT_CLEAN_INTERVAL_MS)
      this.timer.unref()
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Whether `key` may have a mutation whose checksums are not durable yet. */
  isDirty(key: bigint): boolean {
    return this.entries.has(key)
  }

  /**
   * `mark` done at once, for a key whose mark is already durable (an object written again while
   * dirty: nearly every write): true. False when the caller must await `mark` instead.
   */
  markNow(key: bigint, unstable = false): boolean {
    const e = this.entries.get(key)
    if (!e?.settled) return false
    e.inflight++
    e.gen++
    if (unstable) {
      e.unstable = true
      e.unstableGen++
    }
    return true
  }

  /**
   * Marks `key` dirty (durably) before a mutation; `release` must follow once it is done.
   * `unstable`: the mutation is not synced by the store (its mark then waits for a flush).
   * `ahead`: keys with no mark yet that are marked in the same append when this mark needs one,
   * with no mutation of their own: a sequential writer's next objects, whose creates then find
   * their marks durable and wait for no sync of the log. Unused, they are cleaned once idle
   * like any other (a crash meanwhile only has their checksums established from their bytes).
   */
  async mark(key: bigint, opts: { unstable?: boolean; ahead?: readonly bigint[] } = {}): Promise<void> {
    let e = this.entries.get(key)
    if (!e) {
      e = newEntry()
      this.entries.set(key, e)
    }
    e.inflight++
    e.gen++
    if (opts.unstable) {
      e.unstable = true
      e.unstableGen++
    }
    if (!e.durable) {
      const marked = [e]
      this.pending.push(key)
      for (const next of opts.ahead ?? []) {
        if (this.entries.has(next)) continue
        const entry = newEntry()
        this.entries.set(next, entry)
        this.pending.push(next)
        marked.push(entry)
      }
      const durable = this.appendRun.run()
      for (const entry of marked) {
        entry.durable = durable.then(
          () => {
            entry.settled = true
          },
          (err) => {
            entry.durable = undefined
            throw err
          },
        )
      }
      // an ahead mark that could not be written is forgotten (the key itself retries, and
      // reports the error: nobody waits for the ahead marks)
      durable.catch(() => {
        for (const next of opts.ahead ?? []) {
          const entry = this.entries.get(next)
          if (entry && entry.durable === undefined && entry.gen === 0) this.entries.delete(next)
        }
      })
      for (const entry of marked) if (entry !== e) entry.durable?.catch(() => undefined)
    }
    try {
      await e.durable
    } catch (err) {
      this.release(key)
      throw err
    }
  }

  /**
   * The objects with unstable mutations that have all returned, taken before a store flush: the
   * flush makes exactly these durable (a mutation still under way may miss it).
   */
  unstableSnapshot(): Map<bigint, number> {
    const snapshot = new Map<bigint, number>()
    for (const [key, e] of this.entries) if (e.unstable && e.inflight === 0) snapshot.set(key, e.unstableGen)
    return snapshot
  }

  /** After a store flush: the snapshot's objects are durable unless written unstably again since. */
  flushed(snapshot: ReadonlyMap<bigint, number>): void {
    for (const [key, gen] of snapshot) {
      const e = this.entries.get(key)
      if (e && e.unstableGen === gen) e.unstable = false
    }
  }

  release(key: bigint): void {
    const e = this.entries.get(key)
    if (!e) return
    e.inflight = Math.max(0, e.inflight - 1)
    e.lastMs = Date.now()
  }

  /** Drops the marks of objects idle for INTENT_CLEAN_IDLE_MS, once their checksums are durable. */
  async clean(now = Date.now(), idleMs = INTENT_CLEAN_IDLE_MS): Promise<void> {
    if (this.cleaning) return
    this.cleaning = true
    try {
      const candidates = [...this.entries].filter(([, e]) => e.inflight === 0 && !e.unstable && e.durable !== undefined && now - e.lastMs >= idleMs)
      if (candidates.length === 0) return
      const gens = new Map(candidates.map(([key, e]) => [key, e.gen]))
      await Promise.all(candidates.map(([, e]) => e.durable))
      // an ahead mark never followed by a mutation has no checksums to make durable
      await this.opts.syncChecksums([...gens].filter(([, gen]) => gen > 0).map(([key]) => key))
      await this.serial(async () => {
        const cleaned: bigint[] = []
        for (const [key, gen] of gens) {
          const e = this.entries.get(key)
          if (e && e.inflight === 0 && !e.unstable && e.gen === gen) {
            this.entries.delete(key)
            cleaned.push(key)
          }
        }
        if (this.bytes < INTENT_LOG_COMPACT_BYTES) {
          await this.append(cleaned.map((k) => `${CLEAN_PREFIX}${keyFileName(k)}\n`).join(''), false)
          return
        }
        // what stays: every key whose mark is (or is being made) durable; keys still pending
        // are appended after this rewrite, by the run queued behind it
        const pendingNow = new Set(this.pending)
        await this.rewrite([...this.entries.keys()].filter((k) => !pendingNow.has(k)))
      })
    } catch {
      // the marks stay: they are dropped at a later try (or re-established after a restart)
    } finally {
      this.cleaning = false
    }
  }

  /**
   * At a clean stop: every idle object marked clean, and the log rewritten with what is left
   * (nothing, when no mutation is under way), so the next start has no records to read.
   */
  async cleanAll(): Promise<void> {
    await this.clean(Number.POSITIVE_INFINITY, 0)
    await this.serial(async () => {
      const pendingNow = new Set(this.pending)
      await this.rewrite([...this.entries.keys()].filter((k) => !pendingNow.has(k)))
    })
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work)
    this.chain = run.catch(() => undefined)
    return run
  }

  private async appendPending(): Promise<void> {
    const keys = this.pending
    this.pending = []
    if (keys.length === 0) return
    await this.append(keys.map((k) => `${keyFileName(k)}\n`).join(''), true)
  }

  /** Appends records; `durable`: made durable (with every record before them) before this resolves. */
  private async append(text: string, durable: boolean): Promise<void> {
    if (text.length === 0) return
    const fh = await fsp.open(this.file, 'a', 0o644)
    try {
      await fh.write(text)
      this.bytes += Buffer.byteLength(text)
      if (durable && !this.opts.nosync) await fh.datasync()
    } finally {
      await fh.close()
    }
  }

  /** Replaces the log with `keys`, atomically (temp file + rename). */
  private async rewrite(keys: bigint[]): Promise<void> {
    const tmp = `${this.file}.tmp`
    const fh = await fsp.open(tmp, 'w', 0o644)
    const text = keys.map((k) => `${keyFileName(k)}\n`).join('')
    try {
      await fh.write(text)
      if (!this.opts.nosync) await fh.datasync()
    } finally {
      await fh.close()
    }
    await fsp.rename(tmp, this.file)
    this.bytes = Buffer.byteLength(text)
    if (!this.opts.nosync) {
      const dir = await fsp.open(this.opts.dir, 'r')
      try {
        await dir.sync()
      } finally {
        await dir.close()
      }
    }
  }
}
