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
function noop(): void {}

export class KeyedQueue<K> {
  /** Per key with work: the last work queued (the next starts after it settles) and how many are queued or running. */
  private readonly slots = new Map<K, { tail: Promise<unknown>; pending: number }>()

  run<T>(key: K, work: () => Promise<T>): Promise<T> {
    let slot = this.slots.get(key)
    if (slot === undefined) {
      slot = { tail: Promise.resolve(), pending: 0 }
      this.slots.set(key, slot)
    }
    const mine = slot
    mine.pending++
    const result = mine.tail.then(work, work)
    mine.tail = result
    // counted out before the caller's own continuation runs (registered first); the last one
    // out frees the key (work queued after that starts a new slot)
    const settle = (): void => {
      mine.pending--
      if (mine.pending === 0) this.slots.delete(key)
    }
    result.then(settle, settle)
    return result
  }

  /** Resolves once all the work queued so far, of every key, has finished (failed or not). */
  async settled(): Promise<void> {
    await Promise.all([...this.slots.values()].map((slot) => slot.tail.then(noop, noop)))
  }

  /** Keys with work queued or running. */
  get size(): number {
    return this.slots.size
  }

  /** Whether `key` has work queued or running. */
  busy(key: K): boolean {
    return this.slots.has(key)
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
