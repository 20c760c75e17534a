// Recovery (behaviour.md §7): after the epoch changes, every data-holding node moves the objects
// it no longer holds to its stale area, learns which objects exist anywhere, and fetches those it
// now holds but lacks — from its own stale area or from the nodes that held them at earlier
// epochs, walking back through the epoch history; each object is copied in pieces no bigger than
// one request and appears only once complete (object-copy.ts). Requests for objects not yet
// recovered are parked and the object is recovered at once, out of order. A newer epoch
// supersedes a running recovery. When every member has finished an epoch, stale copies are
// dropped.
import { REQ_OBJ } from '../lib/codec.js'
import { oidToVid } from '../lib/oid.js'
import {
  SD_FLAG_CMD_RECOVERY, SD_OP_COMPLETE_RECOVERY, SD_OP_GET_EPOCH, SD_OP_GET_OBJ_LIST, SD_RES_BUFFER_SMALL,
  SD_RES_OLD_NODE_VER, SD_RES_SUCCESS,
} from '../lib/proto.js'
import { HashRing } from '../lib/ring.js'
import { encodeRequestHeader } from '../lib/codec.js'
import { type SdNode, addrToText, decodeEpochFile, encodeNode, nodeDescription, sameNode } from '../lib/structs.js'
import { copyObject, peerPieceReader, type PieceReader } from './object-copy.js'
import { objectSizeFor } from './peer.js'
import type { Sheep } from './sheep.js'

/** Objects recovered at once when no throttle is set. */
export const RECOVERY_PARALLEL_OBJECTS = 8
/** GET_OBJ_LIST starts with a buffer this big (the original's 4 MiB) and doubles on BUFFER_SMALL. */
export const RECOVERY_OBJ_LIST_INITIAL_BYTES = 4 * 1024 * 1024
export const RECOVERY_OBJ_LIST_MAX_BYTES = 256 * 1024 * 1024
/** Timeout of one recovery read (of one piece of an object) from a peer. */
export const RECOVERY_READ_TIMEOUT_MS = 60_000

export const RECOVERY_STATE_PREPARING = 0
export const RECOVERY_STATE_RECOVERING = 1
export const RECOVERY_STATE_NOTIFYING = 2

export interface Throttle {
  maxExecCount: number
  intervalMs: number
}

interface Parked {
  promise: Promise<void>
  resolve: () => void
}

export class Recovery {
  private run = 0
  running = false
  state = RECOVERY_STATE_PREPARING
  /** The epoch being recovered to. */
  epoch = 0
  nrFinished = 0
  nrTotal = 0
  throttle: Throttle | undefined
  private todo: bigint[] = []
  private next = 0
  private readonly parked = new Map<bigint, Parked>()
  private readonly inFlight = new Map<bigint, { run: number; promise: Promise<void> }>()
  private readonly ringCache = new Map<number, HashRing<SdNode>>()
  /** epoch → members that reported COMPLETE_RECOVERY for it. */
  private readonly completed = new Map<number, SdNode[]>()
  private resumeWaiters: Array<() => void> = []

  constructor(private readonly sheep: Sheep) {}

  /** True when the running recovery follows an epoch change (else: same epoch, e.g. more copies). */
  private lifted = true

  /**
   * Starts (or supersedes) recovery for the sheep's current epoch. `lifted`: the epoch was just
   * raised, so the previous epoch's holders have the data; otherwise the current ones do.
   */
  start(lifted = true): void {
    if (this.sheep.gateway) return
    const run = ++this.run
    this.lifted = lifted
    this.epoch = this.sheep.epoch
    this.running = true
    this.state = RECOVERY_STATE_PREPARING
    void this.execute(run).catch((e: unknown) => {
      this.sheep.log.error(`recovery of epoch ${this.epoch} failed: ${e instanceof Error ? e.stack : String(e)}`)
      if (run === this.run) this.finish()
    })
  }

  /** Parks a request for `oid` until it is recovered; resolves at once when nothing is pending. */
  waitForObject(oid: bigint): Promise<void> {
    const p = this.parked.get(oid)
    if (!p) return Promise.resolve()
    void this.recoverNow(oid, this.run)
    return p.promise
  }

  /** Called when the cluster-wide "disable recovery" flag is cleared. */
  resume(): void {
    for (const w of this.resumeWaiters.splice(0)) w()
  }

  private async execute(run: number): Promise<void> {
    const sheep = this.sheep
    const epoch = this.epoch
    sheep.log.info(`recovery of epoch ${epoch} starts`)
    await sheep.staleMoves
    // 1. the stale area: what this node no longer holds on the current ring
    for (const oid of sheep.store.list()) {
      if (run !== this.run) return
      if (!this.holders(sheep.ring, oid).some((n) => sheep.isSelf(n))) {
        await sheep.store.moveToStale(oid, Math.max(this.lifted ? epoch - 1 : epoch, 1))
      }
    }
    // 2. every object that exists anywhere, then those this node should hold but lacks
    const all = new Set<bigint>()
    for (const node of sheep.members) {
      if (node.nrVnodes === 0) continue
      for (const oid of await this.objectList(node)) all.add(oid)
      if (run !== this.run) return
    }
    const todo = [...all].filter((oid) => !sheep.store.exists(oid) && this.holders(sheep.ring, oid).some((n) => sheep.isSelf(n)))
    todo.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    // requests for objects of a superseded run that are not in this one may go ahead
    const wanted = new Set(todo)
    for (const [oid, p] of this.parked) if (!wanted.has(oid)) { this.parked.delete(oid); p.resolve() }
    for (const oid of todo) if (!this.parked.has(oid)) this.parked.set(oid, newParked())
    this.todo = todo
    this.next = 0
    this.nrFinished = 0
    this.nrTotal = todo.length
    this.state = RECOVERY_STATE_RECOVERING
    // 3. fetch them, a few at a time (or as the throttle allows)
    const workers = Array.from({ length: this.throttle ? 1 : RECOVERY_PARALLEL_OBJECTS }, () => this.worker(run))
    await Promise.all(workers)
    if (run !== this.run) return
    this.state = RECOVERY_STATE_NOTIFYING
    sheep.log.info(`recovery of epoch ${epoch} finished: ${this.nrFinished} object(s)`)
    this.finish()
    await this.notifyComplete(epoch)
  }

  private finish(): void {
    this.running = false
    for (const [oid, p] of this.parked) {
      this.parked.delete(oid)
      p.resolve()
    }
  }

  private async worker(run: number): Promise<void> {
    let windowStart = Date.now()
    let inWindow = 0
    while (run === this.run && this.next < this.todo.length) {
      while (this.sheep.settings.disableRecovery && run === this.run) {
        await new Promise<void>((r) => this.resumeWaiters.push(r))
      }
      if (this.throttle) {
        if (inWindow >= this.throttle.maxExecCount) {
          const wait = windowStart + this.throttle.intervalMs - Date.now()
          if (wait > 0) await new Promise((r) => setTimeout(r, wait))
          windowStart = Date.now()
          inWindow = 0
        }
        inWindow++
      }
      const oid = this.todo[this.next++]
      await this.recoverNow(oid, run)
    }
  }

  /**
   * Recovers one object for run `run` (once, even if asked from several places). An attempt of a
   * superseded run may still be in flight: it is awaited, then the object is tried again for
   * this run — the old attempt stops early and must not count for the new one.
   */
  private recoverNow(oid: bigint, run: number): Promise<void> {
    const existing = this.inFlight.get(oid)
    if (existing && existing.run === run) return existing.promise
    if (existing) return existing.promise.then(() => this.recoverNow(oid, run))
    const promise = this.recoverObject(oid, run).catch((e: unknown) => {
      this.sheep.log.error(`recovery of ${oid.toString(16)} failed: ${String(e)}`)
    }).finally(() => {
      if (this.inFlight.get(oid)?.promise === promise) this.inFlight.delete(oid)
      if (run !== this.run) return
      const parked = this.parked.get(oid)
      if (parked) {
        this.parked.delete(oid)
        this.nrFinished++
        parked.resolve()
      }
    })
    this.inFlight.set(oid, { run, promise })
    return promise
  }

  private async recoverObject(oid: bigint, run: number): Promise<void> {
    const sheep = this.sheep
    if (sheep.store.exists(oid)) return
    const size = objectSizeFor(sheep, oid)
    // walk back through the epochs: the holders of the most recent ring have the newest data
    for (let tgt = this.lifted ? this.epoch - 1 : this.epoch; tgt >= 1; tgt--) {
      if (run !== this.run) return
      const ring = await this.ringOf(tgt)
      if (!ring) continue
      const holders = this.holders(ring, oid)
      const mine = holders.findIndex((n) => sheep.isSelf(n))
      const order = mine >= 0 ? [holders[mine], ...holders.filter((_, i) => i !== mine)] : holders
      for (const node of order) {
        const read = this.source(node, oid, tgt, run)
        if (!read) continue
        // a client may have created it meanwhile: keep the newer one
        if ((await copyObject(sheep.store, oid, size, read, { ifAbsent: true })) === SD_RES_SUCCESS) return
        if (run !== this.run) return
      }
    }
    // no earlier holder answered: a stale copy of our own is the last resort
    const stale = sheep.store.newestStale(oid)
    if (stale !== undefined) {
      const read: PieceReader = (offset, length) => sheep.store.readStale(oid, stale, offset, length)
      if ((await copyObject(sheep.store, oid, size, read, { ifAbsent: true })) === SD_RES_SUCCESS) return
    }
    sheep.log.warn(`recovery: no node has ${oid.toString(16).padStart(16, '0')}`)
  }

  /**
   * Where recovery of run `run` reads `oid` as it stood at epoch `tgt` on `node` (live or stale
   * copy), piece by piece; undefined when `node` cannot have it. A superseded run stops between
   * pieces instead of copying the rest of a big object.
   */
  private source(node: SdNode, oid: bigint, tgt: number, run: number): PieceReader | undefined {
    const sheep = this.sheep
    if (sheep.isSelf(node)) {
      const stale = sheep.store.newestStale(oid)
      if (stale === undefined) return undefined
      return (offset, length) => sheep.store.readStale(oid, stale, offset, length)
    }
    if (!sheep.members.some((m) => sameNode(m, node))) return undefined
    const read = peerPieceReader(sheep, { host: addrToText(node.addr), port: node.port }, oid, {
      tgtEpoch: tgt, flags: SD_FLAG_CMD_RECOVERY, timeoutMs: RECOVERY_READ_TIMEOUT_MS,
    })
    return (offset, length) => (run === this.run ? read(offset, length) : Promise.resolve(SD_RES_OLD_NODE_VER))
  }

  /** Replica holders of `oid` on `ring`: min(copies, zones) nodes. */
  private holders(ring: HashRing<SdNode>, oid: bigint): SdNode[] {
    if (ring.isEmpty) return []
    return ring.replicasFor(oid, this.sheep.vdiCopies(oidToVid(oid)))
  }

  /** The ring of an earlier epoch, from the local epoch log or a member's (GET_EPOCH). */
  private async ringOf(epoch: number): Promise<HashRing<SdNode> | undefined> {
    const cached = this.ringCache.get(epoch)
    if (cached) return cached
    let nodes = this.sheep.epochs.read(epoch)?.nodes
    if (!nodes) {
      for (const m of this.sheep.members) {
        if (this.sheep.isSelf(m)) continue
        try {
          const conn = this.sheep.peers.get({ host: addrToText(m.addr), port: m.port })
          const { rsp, data } = await conn.request({
            opcode: SD_OP_GET_EPOCH, variant: REQ_OBJ, fields: { tgtEpoch: epoch }, readLength: 8 + 6144 * 80,
          })
          const decoded = rsp.result === SD_RES_SUCCESS ? decodeEpochFile(data) : undefined
          if (decoded) {
            nodes = decoded.nodes
            void this.sheep.epochs.record(epoch, decoded.nodes, decoded.timeSec)
            break
          }
        } catch {
          // try the next member
        }
      }
    }
    if (!nodes) return undefined
    const ring = new HashRing<SdNode>(nodes)
    this.ringCache.set(epoch, ring)
    return ring
  }

  /** GET_OBJ_LIST of one member (this node: live and stale objects). */
  private async objectList(node: SdNode): Promise<bigint[]> {
    const sheep = this.sheep
    if (sheep.isSelf(node)) return [...sheep.store.list(), ...sheep.store.listStale()]
    const conn = sheep.peers.get({ host: addrToText(node.addr), port: node.port })
    for (let size = RECOVERY_OBJ_LIST_INITIAL_BYTES; size <= RECOVERY_OBJ_LIST_MAX_BYTES; size *= 2) {
      try {
        const { rsp, data } = await conn.request({ opcode: SD_OP_GET_OBJ_LIST, readLength: size, timeoutMs: RECOVERY_READ_TIMEOUT_MS })
        if (rsp.result === SD_RES_BUFFER_SMALL) continue
        if (rsp.result !== SD_RES_SUCCESS) return []
        const oids: bigint[] = []
        for (let at = 0; at + 8 <= data.length; at += 8) oids.push(data.readBigUInt64LE(at))
        return oids
      } catch (e) {
        sheep.log.warn(`recovery: object list of ${nodeDescription(node)} failed: ${String(e)}`)
        return []
      }
    }
    return []
  }

  /** Broadcasts COMPLETE_RECOVERY(epoch, this node). */
  private async notifyComplete(epoch: number): Promise<void> {
    const req = encodeRequestHeader({ opcode: SD_OP_COMPLETE_RECOVERY, variant: REQ_OBJ, fields: { tgtEpoch: epoch }, dataLength: 80, flags: 1 })
    await this.sheep.broadcastOp(req, encodeNode(this.sheep.self))
  }

  /** COMPLETE_RECOVERY main phase: once every data-holding member is done, drop stale copies. */
  async completed_(epoch: number, node: SdNode): Promise<void> {
    const list = this.completed.get(epoch) ?? []
    if (!list.some((n) => sameNode(n, node))) list.push(node)
    this.completed.set(epoch, list)
    const sheep = this.sheep
    if (epoch !== sheep.epoch || this.running) return
    const holders = sheep.members.filter((m) => m.nrVnodes > 0)
    if (holders.every((m) => list.some((n) => sameNode(n, m)))) {
      for (const e of [...this.completed.keys()]) if (e <= epoch) this.completed.delete(e)
      this.ringCache.clear()
      if (!sheep.gateway) await sheep.store.purgeStale()
      sheep.log.info(`epoch ${epoch}: every node recovered; stale objects purged`)
    }
  }
}

function newParked(): Parked {
  let resolve!: () => void
  const promise = new Promise<void>((r) => { resolve = r })
  return { promise, resolve }
}
