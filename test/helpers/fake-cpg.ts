// An in-process stand-in for corosync's CPG, for tests of the corosync driver: one group whose
// multicasts and configuration changes go through one queue, one step per macrotask, each
// delivered to the members of the group at that point — the total order and virtual synchrony
// CPG gives — so several drivers (each with a pid of its own) can share it in one process.
import { CS_OK, type CpgAddress, type CpgHandle } from '../../sheep/cluster/cpg.js'
import type { OpenCpg } from '../../sheep/cluster/corosync.js'

const NODE_ID = 1

interface Endpoint {
  pid: number
  deliver: (nodeid: number, pid: number, message: Buffer) => void
  confchg: (members: CpgAddress[], left: CpgAddress[], joined: CpgAddress[]) => void
}

/** One CPG group: everything happens in one queue, one step per macrotask. */
export class Bus {
  members: Endpoint[] = []
  private queue: Array<() => void> = []
  private scheduled = false

  private push(step: () => void): void {
    this.queue.push(step)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => this.run())
    }
  }

  private run(): void {
    this.scheduled = false
    const step = this.queue.shift()
    if (!step) return
    step()
    if (this.queue.length > 0) {
      this.scheduled = true
      setImmediate(() => this.run())
    }
  }

  private addr(e: Endpoint, reason = 0): CpgAddress {
    return { nodeid: NODE_ID, pid: e.pid, reason }
  }

  /** The driver option `openCpg` of a process with this pid. */
  open(pid: number): OpenCpg {
    return (deliver, confchg) => {
      const e: Endpoint = { pid, deliver, confchg }
      return {
        initialize: () => CS_OK,
        localNodeId: () => NODE_ID,
        join: () => {
          this.push(() => {
            this.members.push(e)
            const members = this.members.map((m) => this.addr(m))
            for (const m of this.members) m.confchg(members, [], [this.addr(e, 1)])
          })
          return CS_OK
        },
        mcast: (parts) => {
          const message = Buffer.concat(parts)
          this.push(() => {
            if (!this.members.includes(e)) return
            for (const m of [...this.members]) m.deliver(NODE_ID, pid, message)
          })
          return CS_OK
        },
        finalize: () => this.crash([pid]),
      }
    }
  }

  /** Processes leave the group at once (killed, or finalized). */
  crash(pids: number[]): void {
    this.push(() => {
      const gone = this.members.filter((m) => pids.includes(m.pid))
      if (gone.length === 0) return
      this.members = this.members.filter((m) => !pids.includes(m.pid))
      const members = this.members.map((m) => this.addr(m))
      for (const m of this.members)
        m.confchg(
          members,
          gone.map((g) => this.addr(g, 3)),
          [],
        )
    })
  }
}
