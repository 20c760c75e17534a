// A VDI client that outlives its gateway, for the fault suite: lib's VdiHandle over a connection
// to one node, and, when that node stops answering (connection refused or reset, timeout), the
// VDI opened again through the next node that answers and the same write sent again — what a
// multipath initiator or a QEMU with several sheep addresses does. A write is acknowledged only
// once a sheep answered it SUCCESS; sending the same bytes twice is harmless.
import type { TestCluster } from '../../harness/cluster.js'
import { SheepConnection } from '../../lib/client.js'
import { SdError } from '../../lib/errors.js'
import { VdiHandle } from '../../lib/vdi-io.js'

/** How long one write may keep failing over before it counts as failed. */
const FAILOVER_DEADLINE_MS = 60_000
/** Pause between attempts, so the cluster can notice the dead node. */
const FAILOVER_PAUSE_MS = 300
/** A request to a node that died may hang until its socket fails; don't wait the default 30 s. */
const REQUEST_TIMEOUT_MS = 10_000

export class FailoverVdi {
  private conn: SheepConnection | undefined
  private handle: VdiHandle | undefined
  /** Index in the cluster of the node this client talks to now. */
  node: number
  /** Times the client moved to another node. */
  switches = 0
  /** Writes sent again after a failure. */
  retries = 0

  constructor(
    private readonly cluster: TestCluster,
    private readonly name: string,
    private readonly nodes: readonly number[],
    first: number,
  ) {
    this.node = first
  }

  /** Writes `data` at `offset`: resolves once a sheep acknowledged it; throws after the deadline. */
  async write(offset: number, data: Buffer): Promise<void> {
    const deadline = Date.now() + FAILOVER_DEADLINE_MS
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await this.open()
        await handle.write(offset, data)
        if (attempt > 0) this.retries++
        return
      } catch (e) {
        if (!(e instanceof SdError) || Date.now() > deadline) throw e
        // a dead node, or one answering an error while the membership changes: the next node
        this.failOver()
        await new Promise((r) => setTimeout(r, FAILOVER_PAUSE_MS))
      }
    }
  }

  close(): void {
    this.conn?.close()
    this.conn = undefined
    this.handle = undefined
  }

  private async open(): Promise<VdiHandle> {
    if (this.handle) return this.handle
    const port = this.cluster.ports[this.node] as number
    this.conn = new SheepConnection({ host: '127.0.0.1', port }, { timeoutMs: REQUEST_TIMEOUT_MS })
    this.handle = await VdiHandle.open(this.conn, this.name)
    return this.handle
  }

  /** Drops the connection and moves to the next node in the list. */
  private failOver(): void {
    this.close()
    const at = this.nodes.indexOf(this.node)
    this.node = this.nodes[(at + 1) % this.nodes.length] as number
    this.switches++
  }
}
