// Small concurrency primitives shared by sheep's modules, each with its own test
// (test/lib/async.test.ts): a deferred promise, a table of callers waiting for an answer by
// key, a queue that runs the work of one key after the work queued before it, and a group run
// that lets callers arriving while a run is under way share the next one.
import { invariant } from './errors.js'

export interface Deferred<T = void> {
  promise: Promise<T>
  resolve: (value: T) => void
}

/** A promise with its resolve function, for waiters that something else wakes. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

/**
 * Callers waiting, each under its own key, for something else to answer them (a cluster event
 * applied, a reply received). A key answered or failed is forgotten; answering a key nobody
 * waits for does nothing (the waiter gave up, or the answer is a duplicate).
 */
export class PendingTable<K, T = void> {
  private readonly waiting = new Map<K, { resolve: (value: T) => void; reject: (error: Error) => void }>()

  wait(key: K): Promise<T> {
    invariant(!this.waiting.has(key), `two waiters for ${String(key)}`)
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(key, { resolve, reject })
    })
  }

  /** Answers the waiter of `key`; false if there is none. */
  settle(key: K, value: T): boolean {
    const w = this.waiting.get(key)
    if (!w) return false
    this.waiting.delete(key)
    w.resolve(value)
    return true
  }

  /** Fails the waiter of `key`; false if there is none. */
  fail(key: K, error: unknown): boolean {
    const w = this.waiting.get(key)
    if (!w) return false
    this.waiting.delete(key)
    w.reject(error instanceof Error ? error : new Error(String(error)))
    return true
  }

  failAll(error: Error): void {
    const all = [...this.waiting.values()]
    this.waiting.clear()
    for (const w of all) w.reject(error)
  }

  get size(): number {
    return this.waiting.size
  }
}

/**
 * Runs the work of each key one after another, in the order it was queued; work of different
 * keys runs concurrently. A failure is the caller's and does not stop the work queued behind it.
 * The work is queued synchronously by `run`, so a check made just before it cannot be overtaken
 * by work queued later. A key with nothing queued takes no memory.
 */
export class KeyedQueue<K> {
  private readonly tails = new Map<K, Promise<unknown>>()
  /** Work queued or running, per key. */
  private readonly pending = new Map<K, number>()

  run<T>(key: K, work: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve()
    this.pending.set(key, (this.pending.get(key) ?? 0) + 1)
    const result = before.then(work, work)
    // counted out before the caller's own continuation runs (registered first)
    const settle = (): void => {
      const left = (this.pending.get(key) ?? 1) - 1
      if (left > 0) this.pending.set(key, left)
      else this.pending.delete(key)
    }
    result.then(settle, settle)
    const tail = result.catch(() => undefined)
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return result
  }

  /** Resolves once all the work queued so far, of every key, has finished (failed or not). */
  async settled(): Promise<void> {
    await Promise.all(this.tails.values())
  }

  /** Keys with work queued or running. */
  get size(): number {
    return this.tails.size
  }

  /** Whether `key` has work queued or running. */
  busy(key: K): boolean {
    return this.pending.has(key)
  }
}

/**
 * One run of `work` at a time; callers that arrive while it runs share the next run, which
 * starts after the current one — so each caller returns only after a run that started after it
 * called (e.g. a directory fsync after its rename).
 */
export class GroupRun {
  private running: Promise<void> | undefined
  private next: Promise<void> | undefined

  constructor(private readonly work: () => Promise<void>) {}

  run(): Promise<void> {
    if (!this.running) {
      this.running = this.work().finally(() => {
        this.running = undefined
      })
      return this.running
    }
    if (!this.next) {
      this.next = this.running
        .catch(() => undefined)
        .then(() => {
          this.next = undefined
          return this.run()
        })
    }
    return this.next
  }
}
