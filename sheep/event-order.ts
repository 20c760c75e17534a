// Cluster events applied one after another in the driver's order, as the original's event queue
// applies them: a cluster op's main phase, a member joining or leaving, a member's new weight.
// Most are synchronous and are applied at once; one that awaits (a format purging the store and
// rewriting the epoch log) holds back every event delivered after it until it is done, so no
// later event sees, or is undone by, its half-applied state.
export class EventOrder {
  /** Events queued or being applied. */
  pending = 0
  private tail: Promise<void> = Promise.resolve()

  constructor(private readonly onError: (what: string, e: unknown) => void) {}

  /**
   * Applies `event` after every event given before it. With nothing pending it runs at once, its
   * synchronous part in the caller's turn; a failure is reported, never thrown to the caller.
   */
  apply(what: string, event: () => void | Promise<void>): void {
    const failed = (e: unknown): void => this.onError(what, e)
    if (this.pending > 0) {
      this.pending++
      this.tail = this.tail
        .then(event)
        .catch(failed)
        .finally(() => this.pending--)
      return
    }
    let applied: void | Promise<void>
    try {
      applied = event()
    } catch (e) {
      failed(e)
      return
    }
    if (!(applied instanceof Promise)) return
    this.pending++
    this.tail = applied.catch(failed).finally(() => this.pending--)
  }

  /** Resolves once every event given so far has been applied. */
  settled(): Promise<void> {
    return this.tail
  }
}
