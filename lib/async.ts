// Small concurrency primitives shared by sheep's modules, each with its own test
// (test/lib/async.test.ts): a deferred promise, a queue that runs the work of one key after
// the work queued before it, and a group run that lets callers arriving while a run is under
// way share the next one.

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
 * Runs the work of each key one after another, in the order it was queued; work of different
 * keys runs concurrently. A failure is the caller's and does not stop the work queued behind it.
 * The work is queued synchronously by `run`, so a check made just before it cannot be overtaken
 * by work queued later. A key with nothing queued takes no memory.
 */
export class KeyedQueue<K> {
  private readonly tails = new Map<K, Promise<unknown>>()

  run<T>(key: K, work: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve()
    const result = before.then(work, work)
    const tail = result.catch(() => undefined)
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return result
  }

  /** Keys with work queued or running. */
  get size(): number {
    return this.tails.size
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
