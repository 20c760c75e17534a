// The `local` cluster driver, for sheep on one machine. This version serves a cluster of one
// process: the node accepts its own join and delivers its broadcasts to itself, in order,
// through the same interface a multi-process driver uses.
// TODO(cluster issue): coordinate several processes through the shared event file.
import type { SdNode } from '../../lib/structs.js'
import type { ClusterDriver, ClusterHandlers } from './driver.js'

export class LocalDriver implements ClusterDriver {
  readonly name = 'local'
  private handlers: ClusterHandlers | undefined
  private self: SdNode | undefined
  /** Delivery order: every broadcast waits for the one before it. */
  private order: Promise<void> = Promise.resolve()

  constructor(readonly eventFile: string) {}

  async join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void> {
    this.self = self
    this.handlers = handlers
    const accept = handlers.decideJoin(self, joinPayload)
    await this.enqueue(() => handlers.accepted(self, [self], accept))
  }

  notify(message: Buffer): Promise<void> {
    const { self, handlers } = this.joined()
    return this.enqueue(() => handlers.notified(self, message))
  }

  exclusive(work: () => Promise<Buffer>): Promise<void> {
    const { self, handlers } = this.joined()
    return this.enqueue(async () => {
      const message = await work()
      handlers.notified(self, message)
    })
  }

  async leave(): Promise<void> {
    this.handlers = undefined
  }

  private joined(): { self: SdNode; handlers: ClusterHandlers } {
    if (!this.self || !this.handlers) throw new Error('local driver: not joined')
    return { self: this.self, handlers: this.handlers }
  }

  private enqueue(step: () => void | Promise<void>): Promise<void> {
    const run = this.order.then(step)
    this.order = run.catch(() => undefined)
    return run
  }
}
