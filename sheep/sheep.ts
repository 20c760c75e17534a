// One sheep: the node's state (cluster info, membership, epoch, ring, VDI table, store) and its
// life cycle — start from the base directory, join through the cluster driver, apply cluster-wide
// ops in the driver's total order, stop (behaviour.md §2–6, §8). What membership events do to
// that state (joins, leaves, weights, epochs) is the group module's (group.ts).
import fs from 'node:fs'
import path from 'node:path'
import { deferred } from '../lib/async.js'
import { resultOfError } from '../lib/errors.js'
import { RSP_RESULT_AT, decodeRequestHeader, decodeResponseHeader, encodeResponseHeader } from '../lib/codec.js'
import { decodeInodeHeader, SD_INODE_LOOKUP_SIZE } from '../lib/inode.js'
import type { Logger } from '../lib/log.js'
import { type EcPolicy, ecPolicyOf } from '../lib/ec/codec.js'
import { isLedgerObj, isVdiBtreeObj, isVdiObj, oidToVid } from '../lib/oid.js'
import {
  SD_DEFAULT_BLOCK_SIZE_SHIFT,
  SD_DEFAULT_COPIES,
  SD_RES_EIO,
  SD_RES_SUCCESS,
  SD_STATUS_KILLED,
  SD_STATUS_OK,
  SD_STATUS_SHUTDOWN,
  SD_STATUS_WAIT,
  SD_HEADER_SIZE,
} from '../lib/proto.js'
import { HashRing } from '../lib/ring.js'
import { SD_STAT_FIELDS, type SdNode, type SdStat, decodeNode, encodeNode, nodeDescription, sameNode } from '../lib/structs.js'
import type { ClusterDriver } from './cluster/driver.js'
import {
  SD_OP_PRIVATE_NODE_UPDATE,
  type VdiOpMessage,
  decodeVdiOpMessage,
  encodeVdiOpMessage,
  messageData,
  messageOpcode,
  nodeUpdateRequest,
} from './cluster/op-message.js'
import { ConfigStore, EpochStore, emptyConfig } from './config.js'
import type { OpReply } from './op-types.js'
import type { StoreDriver } from './store/driver.js'
import type { ChecksumStore } from './store/checksums.js'
import { EventOrder } from './event-order.js'
import { Integrity, type IntegrityOptions } from './integrity.js'
import { DEFAULT_STORE_LAYOUT, storeLayout } from './store/layout.js'
import { Group, type NodeWeight, vnodeStartProblem } from './group.js'
import { PeerConnections } from './peer-conns.js'
import { Recovery } from './recovery.js'
import { VdiTable } from './vdi-state.js'

/** The cluster-wide settings every member agrees on (the cinfo of behaviour.md §1). */
export interface ClusterSettings {
  ctime: bigint
  flags: number
  nrCopies: number
  copyPolicy: number
  blockSizeShift: number
  defaultStore: string
  disableRecovery: boolean
}

/**
 * A cluster op this node sent and waits for: the driver delivers every member's messages in one
 * order and a member's own in the order it sent them, so the first pending op with the same
 * request header is the one a message of this node answers (the original's pending lists).
 */
interface PendingOp {
  req: Buffer
  resolve: (r: OpReply) => void
  /** What the work phase answered the client (kept here: the message may carry other data). */
  reply?: { data: Buffer | undefined }
}

export interface ClusterOpMain {
  (
    sheep: Sheep,
    msg: {
      req: ReturnType<typeof decodeRequestHeader>
      rsp: ReturnType<typeof decodeResponseHeader>
      data: Buffer | undefined
      /** The member that sent the op (the node that received it from the client). */
      sender: SdNode
    },
  ): Promise<number> | number
}

/** Reweight announces a node's capacity again when it changed by at least this many percent. */
const REWEIGHT_MIN_CHANGE_PERCENT = 1n

export interface SheepConfig {
  baseDir: string
  self: SdNode
  fixedVnodes: boolean
  gateway: boolean
  nosync: boolean
  log: Logger
  store: StoreDriver
  /** The checksum layer when `store` is one (it is then the same object); absent: checksums off. */
  checksums?: ChecksumStore
  /** The scrubber's pace and schedule (sheep --scrub). */
  integrity?: IntegrityOptions
  driver: ClusterDriver
  /** Looks up the `main` phase of a cluster op by opcode (the op table owns them). */
  clusterMain: (opcode: number) => ClusterOpMain | undefined
}

export class Sheep {
  readonly baseDir: string
  readonly log: Logger
  readonly store: StoreDriver
  readonly driver: ClusterDriver
  readonly config: ConfigStore
  readonly epochs: EpochStore
  readonly vdis = new VdiTable()
  readonly recovery: Recovery
  /** Read-repair and the scrubber (issue 16). */
  readonly integrity: Integrity
  /** Connections to the other sheep (their I/O address when they have one). */
  readonly peers: PeerConnections
  readonly nosync: boolean
  readonly gateway: boolean
  readonly fixedVnodes: boolean

  self: SdNode
  status = SD_STATUS_WAIT
  epoch = 0
  settings: ClusterSettings = emptySettings()
  /** Current members in node-list order. */
  members: SdNode[] = []
  ring = new HashRing<SdNode>([])
  /** Space announced in the config file (node capacity). */
  space = 0n
  logLevel = 6
  /**
   * Requests from clients and other sheep being served now (SheepServer.process: from sockets
   * and from the NBD server). While it is one, nothing else is under way to share a system call
   * with: that request's frames leave at once (lib/coalesced-write.ts), not at the end of the
   * event loop's turn.
   */
  requestsInProgress = 0
  /** Whether the one request in progress is all this sheep is serving (see requestsInProgress). */
  get servingOneRequest(): boolean {
    return this.requestsInProgress === 1
  }
  /** Request counters for STAT (`dog node stat`). */
  readonly stats: SdStat = Object.fromEntries(SD_STAT_FIELDS.map((f) => [f, 0n])) as SdStat
  readonly group: Group
  private readonly pendingOps: PendingOp[] = []
  private readonly clusterMain: SheepConfig['clusterMain']
  /** Called when the daemon should exit (KILL_NODE, SHUTDOWN). */
  onStop: (reason: string) => void = () => undefined

  constructor(cfg: SheepConfig) {
    this.baseDir = cfg.baseDir
    this.log = cfg.log
    this.store = cfg.store
    this.driver = cfg.driver
    this.self = cfg.self
    this.nosync = cfg.nosync
    this.gateway = cfg.gateway
    this.fixedVnodes = cfg.fixedVnodes
    this.clusterMain = cfg.clusterMain
    this.peers = new PeerConnections(cfg.log)
    this.config = new ConfigStore(cfg.baseDir)
    this.epochs = new EpochStore(cfg.baseDir)
    this.recovery = new Recovery(this)
    this.integrity = new Integrity(this, cfg.checksums, cfg.integrity)
    this.group = new Group(this)
    this.store.onDiskFailure = (diskPath, disksLeft) => this.diskFailed(diskPath, disksLeft)
  }

  /**
   * A disk failed and the store took it out (md_do_recover): its objects come back from the other
   * replicas through a recovery at this epoch; with no disk left the node leaves the cluster.
   */
  private diskFailed(diskPath: string, disksLeft: number): void {
    if (disksLeft === 0) {
      this.log.warn('no disks available, going down')
      this.kill()
      return
    }
    this.log.warn(`${diskPath} failed; recovering its objects onto the ${disksLeft} disk(s) left`)
    if (this.status === SD_STATUS_OK) this.recovery.start(false)
  }

  /**
   * Uses the store driver the cluster was formatted with (setup_backend_store): a node that never
   * joined a cluster has none yet and takes the cluster's when it learns it.
   */
  async useStore(name: string): Promise<void> {
    if (name === '' || name === this.store.name) return
    const layout = storeLayout(name)
    if (!layout) throw new Error(`backend store ${name} not supported`)
    await this.store.useLayout(layout)
    this.log.info(`store driver: ${name}`)
  }

  /**
   * Loads what the base directory remembers: config, latest epoch, objects and VDIs. Fails when
   * the vnode option contradicts the formatted strategy or the latest epoch (vnodeStartProblem).
   */
  async load(freeBytes: () => bigint): Promise<void> {
    this.epochs.init()
    let cfg = this.config.read()
    if (!cfg) {
      cfg = { ...emptyConfig(), space: this.gateway ? 0n : freeBytes() }
      await this.config.write(cfg)
    } else if (cfg.space === 0n && !this.gateway) {
      cfg.space = freeBytes()
      await this.config.write(cfg)
    }
    this.space = this.gateway ? 0n : cfg.space
    this.self = { ...this.self, space: this.space }
    this.settings = {
      ctime: cfg.ctime,
      flags: cfg.flags,
      nrCopies: cfg.copies,
      copyPolicy: cfg.copyPolicy,
      blockSizeShift: cfg.blockSizeShift || SD_DEFAULT_BLOCK_SIZE_SHIFT,
      defaultStore: cfg.defaultStore,
      disableRecovery: false,
    }
    this.epoch = this.epochs.latest()
    if (!this.gateway && cfg.defaultStore !== '' && !storeLayout(cfg.defaultStore)) throw new Error(`store ${cfg.defaultStore} not found`)
    await this.store.useLayout(storeLayout(cfg.defaultStore) ?? DEFAULT_STORE_LAYOUT)
    const vnodeProblem = vnodeStartProblem({
      gateway: this.gateway,
      fixedVnodes: this.fixedVnodes,
      self: this.self,
      ctime: cfg.ctime,
      flags: cfg.flags,
      epoch: this.epoch,
      latestEpochNodes: this.epoch > 0 ? (this.epochs.read(this.epoch)?.nodes ?? []) : [],
    })
    if (vnodeProblem !== undefined) {
      this.log.error(vnodeProblem)
      throw new Error(vnodeProblem)
    }
    await this.store.init()
    await this.rebuildVdiTable()
  }

  /**
   * Registers every inode found in the local store (behaviour.md §2 step 10), and then those
   * found only in its stale area (the newest copy of each): an inode whose only copies are stale
   * at start — its holder killed while a newcomer was still fetching it, the whole cluster
   * restarted — comes back live through recovery, but the VDI would stay missing from every
   * member's bitmap ("No VDI found"), since the members learn VDIs from each other at join.
   */
  private async rebuildVdiTable(): Promise<void> {
    for (const oid of this.store.list()) {
      if (isVdiObj(oid)) this.registerInode(oid, await this.store.read(oid, 0, SD_INODE_LOOKUP_SIZE))
    }
    for (const oid of this.store.listStale()) {
      if (!isVdiObj(oid) || this.vdis.get(oidToVid(oid))) continue
      let epoch = this.epoch
      while (epoch > 0 && !this.store.hasStale(oid, epoch)) epoch--
      if (epoch > 0) this.registerInode(oid, await this.store.readStale(oid, epoch, 0, SD_INODE_LOOKUP_SIZE))
    }
  }

  private registerInode(oid: bigint, head: Buffer | number): void {
    if (typeof head === 'number') return
    const inode = decodeInodeHeader(head)
    this.vdis.add({
      vid: oidToVid(oid),
      nrCopies: inode.nrCopies,
      copyPolicy: inode.copyPolicy,
      blockSizeShift: inode.blockSizeShift,
      snapshot: inode.snapCtime !== 0n,
      deleted: inode.name === '',
      parentVid: inode.parentVdiId,
    })
  }

  /**
   * Resolved once this node's own join is complete. Cluster ops wait for it: a request served
   * before that (a format retried while the sheep start) would reach the members and be applied
   * by them, but never by this node, which was not one yet: its client would wait for ever.
   */
  private readonly joinDone = deferred()

  async join(): Promise<void> {
    try {
      await this.driver.join(
        this.self,
        this.group.handlers((sender, message) => this.onNotified(sender, message)),
        this.group.joinPayload(),
      )
      this.joinDone.resolve()
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e)
      this.log.error(`failed to join Sheepdog: ${reason}`)
      throw new Error(`failed to join Sheepdog: ${reason}`)
    }
  }

  /** MAKE_FS on this node (behaviour.md §5): erase, take the settings, epoch 1, OK. */
  async format(settings: ClusterSettings): Promise<void> {
    await this.store.purge()
    await this.useStore(settings.defaultStore)
    this.vdis.clear()
    await this.epochs.removeAll()
    this.settings = { ...settings, nrCopies: settings.nrCopies || SD_DEFAULT_COPIES, blockSizeShift: settings.blockSizeShift || SD_DEFAULT_BLOCK_SIZE_SHIFT }
    await this.saveConfig()
    await this.group.startEpochs()
  }

  /** FORCE_RECOVER main phase: the current members become the next epoch and the cluster runs. */
  async forceRecover(): Promise<void> {
    this.status = SD_STATUS_OK
    await this.saveConfig()
    this.group.bumpEpoch()
  }

  async saveConfig(extra: { shutdown?: number } = {}): Promise<void> {
    const s = this.settings
    await this.config.write({
      ctime: s.ctime,
      flags: s.flags,
      copies: s.nrCopies,
      defaultStore: s.defaultStore,
      shutdown: extra.shutdown ?? 0,
      copyPolicy: s.copyPolicy,
      blockSizeShift: s.blockSizeShift,
      version: 6,
      space: this.space,
    })
  }

  /** Broadcasts a cluster op (notify kind): every member runs its main phase in order. */
  async broadcastOp(req: Buffer, data: Buffer | undefined): Promise<OpReply> {
    const rsp = encodeResponseHeader({ opcode: req[1], epoch: this.epoch, id: 0, dataLength: 0, result: SD_RES_SUCCESS })
    const body = messageData(req, this.clusterMain(req[1]) !== undefined, data, undefined, 0)
    return this.sendOp({ req }, (pending) => this.driver.notify(encodeVdiOpMessage({ req: pending.req, rsp, data: body })))
  }

  /**
   * Runs a cluster op's work phase under the cluster-wide block, then broadcasts request,
   * response and data so every member runs the main phase (behaviour.md §8).
   */
  async exclusiveOp(req: Buffer, data: Buffer | undefined, work: () => Promise<{ rsp: Buffer; data: Buffer | undefined }>): Promise<OpReply> {
    return this.sendOp({ req }, (pending) =>
      this.driver.exclusive(async () => {
        const out = await work()
        pending.reply = { data: out.data }
        const replyLength = decodeResponseHeader(out.rsp).dataLength
        const body = messageData(req, this.clusterMain(req[1]) !== undefined, data, out.data, replyLength)
        return encodeVdiOpMessage({ req, rsp: out.rsp, data: body })
      }),
    )
  }

  /** Sends one op of this node; its answer comes when the driver delivers it back (onNotified). */
  private sendOp(pending: Omit<PendingOp, 'resolve'>, send: (pending: PendingOp) => Promise<void>): Promise<OpReply> {
    return new Promise<OpReply>((resolve, reject) => {
      const entry: PendingOp = { ...pending, resolve }
      this.pendingOps.push(entry)
      this.joinDone.promise
        .then(() => send(entry))
        .catch((e: unknown) => {
          const at = this.pendingOps.indexOf(entry)
          if (at >= 0) this.pendingOps.splice(at, 1)
          reject(e instanceof Error ? e : new Error(String(e)))
        })
    })
  }

  /** The pending op of this node a message it sent answers. */
  private takePending(req: Buffer): PendingOp | undefined {
    const at = this.pendingOps.findIndex((p) => p.req.equals(req))
    return at < 0 ? undefined : this.pendingOps.splice(at, 1)[0]
  }

  /**
   * Announces a new weight for this node (SET_VNODES, reweight); resolves once this member
   * applied it (every member does, in order: epoch + 1 and recovery). Through the driver's
   * update_node where it has one (corosync's UPDATE_NODE), else as a private notify.
   */
  async announceWeight(weight: NodeWeight): Promise<OpReply> {
    const node: SdNode = { ...this.self, space: weight.space, nrVnodes: weight.nrVnodes }
    const { updateNode } = this.driver
    if (updateNode) {
      await this.joinDone.promise
      await updateNode.call(this.driver, node)
      // the member applied it in the driver's order; wait for what that started
      await this.events.settled()
      return { result: this.lastNodeUpdateResult }
    }
    const req = nodeUpdateRequest()
    return this.sendOp({ req }, () => this.driver.notify(encodeVdiOpMessage({ req, rsp: Buffer.alloc(SD_HEADER_SIZE), data: encodeNode(node) })))
  }

  private lastNodeUpdateResult = SD_RES_SUCCESS

  /** A member's new space and vnode count, applied in the driver's order after the events before it. */
  applyNodeUpdate(sender: SdNode, weight: NodeWeight, pending?: PendingOp): void {
    this.inOrder(`node update from ${nodeDescription(sender)}`, () =>
      this.group.applyWeight(sender, weight).then(
        () => {
          this.lastNodeUpdateResult = SD_RES_SUCCESS
          pending?.resolve({ result: SD_RES_SUCCESS })
        },
        (e: unknown) => {
          this.log.error(`node update from ${nodeDescription(sender)} failed: ${String(e)}`)
          this.lastNodeUpdateResult = SD_RES_EIO
          pending?.resolve({ result: SD_RES_EIO })
        },
      ),
    )
  }

  /**
   * REWEIGHT main phase (behaviour.md §17): this node measures its capacity again (free space
   * plus what its objects use) and announces it when it changed by REWEIGHT_MIN_CHANGE_PERCENT.
   * Not awaited: the announcement is applied after this main phase, in order.
   */
  reweight(): void {
    if (this.gateway) return
    void this.store.capacity().then(({ size }) => this.announceCapacity(size))
  }

  private announceCapacity(capacity: bigint): void {
    const change = capacity > this.space ? capacity - this.space : this.space - capacity
    if (change * 100n < REWEIGHT_MIN_CHANGE_PERCENT * this.space) return
    this.log.info(`reweight: capacity ${this.space} -> ${capacity} bytes`)
    this.announceWeight({ space: capacity, nrVnodes: this.self.nrVnodes }).catch((e: unknown) => {
      this.log.error(`reweight: the new capacity could not be announced: ${String(e)}`)
    })
  }

  private onNotified(sender: SdNode, message: Buffer): void {
    const msg = decodeVdiOpMessage(message)
    if (typeof msg === 'string') {
      this.log.error(`ignored a cluster message from ${nodeDescription(sender)}: ${msg}`)
      return
    }
    const pending = this.isSelf(sender) ? this.takePending(msg.req) : undefined
    if (messageOpcode(msg) === SD_OP_PRIVATE_NODE_UPDATE) {
      const node = decodeNode(msg.data)
      this.applyNodeUpdate(sender, { space: node.space, nrVnodes: node.nrVnodes }, pending)
      return
    }
    this.runClusterMain(sender, msg, pending)
  }

  /**
   * A cluster op's main phase, in the driver's order with the other cluster events (inOrder);
   * its sender's client gets the main phase's result.
   */
  private runClusterMain(sender: SdNode, msg: VdiOpMessage, pending: PendingOp | undefined): void {
    const req = decodeRequestHeader(msg.req)
    const rsp = decodeResponseHeader(msg.rsp)
    const data = msg.data.length > 0 ? msg.data : undefined
    const main = this.clusterMain(req.opcode)
    const answer = (result: number): void => {
      if (!pending) return
      const fields = Buffer.from(msg.rsp)
      fields.writeUInt32LE(result, RSP_RESULT_AT)
      const replied = pending.reply ? pending.reply.data : data
      pending.resolve({ result, rawRsp: fields, data: rsp.dataLength > 0 ? replied : undefined })
    }
    // the op still gets an answer when its main phase throws: the client must not wait for one that never comes
    const failed = (e: unknown): void => {
      this.log.error(`cluster op 0x${req.opcode.toString(16)} failed in its main phase: ${e instanceof Error ? e.stack : String(e)}`)
      answer(resultOfError(e))
    }
    this.inOrder(`cluster op 0x${req.opcode.toString(16)}`, () => {
      // as the original: a work phase that failed has no main phase
      if (!main || rsp.result !== SD_RES_SUCCESS) return answer(rsp.result)
      let result: number | Promise<number>
      try {
        result = main(this, { req, rsp, data, sender })
      } catch (e) {
        return failed(e)
      }
      if (typeof result === 'number') return answer(result)
      return result.then(answer, failed)
    })
  }

  /**
   * Cluster events in the driver's order (event-order.ts): a format still purging the store must
   * not have the next join's epoch undone by its end (a node was left at epoch 1 while the others
   * ran at 3, and reads through it failed).
   */
  private readonly events = new EventOrder((what, e) => this.log.error(`${what} failed: ${e instanceof Error ? e.stack : String(e)}`))

  inOrder(what: string, apply: () => void | Promise<void>): void {
    this.events.apply(what, apply)
  }

  /** Cluster events queued and not yet applied: joins are not decided meanwhile (ClusterHandlers.busy). */
  get eventsPending(): number {
    return this.events.pending
  }

  get isJoined(): boolean {
    return this.group.joined
  }

  /** Default copies, object size shift etc. for objects of `vid` (cluster defaults if unknown). */
  vdiCopies(vid: number): number {
    return this.vdis.get(vid)?.nrCopies || this.settings.nrCopies || SD_DEFAULT_COPIES
  }

  /**
   * The erasure code of `oid` when it is stored as strips (is_erasure_oid): an object of a VDI
   * with a non-zero copy policy, except its inode, B-tree and ledger objects, which are replicated.
   */
  ecPolicyOf(oid: bigint): EcPolicy | undefined {
    if (isVdiObj(oid) || isVdiBtreeObj(oid) || isLedgerObj(oid)) return undefined
    const copyPolicy = this.vdis.get(oidToVid(oid))?.copyPolicy ?? 0
    return copyPolicy === 0 ? undefined : ecPolicyOf(copyPolicy)
  }

  vdiBlockSizeShift(vid: number): number {
    return this.vdis.get(vid)?.blockSizeShift || this.settings.blockSizeShift || SD_DEFAULT_BLOCK_SIZE_SHIFT
  }

  isSelf(node: SdNode): boolean {
    return sameNode(node, this.self)
  }

  async shutdown(): Promise<void> {
    this.status = SD_STATUS_SHUTDOWN
    await this.saveConfig({ shutdown: 1 })
    this.onStop('shutdown')
  }

  kill(): void {
    this.status = SD_STATUS_KILLED
    this.onStop('killed')
  }

  async close(): Promise<void> {
    this.integrity.close()
    // a clean stop leaves no intent marks and no write-back log: nothing is recomputed or read
    // back at the next start (the checksum layer closes the store under it)
    await this.store.close?.().catch((e) => this.log.error(`closing the store: ${String(e)}`))
    this.peers.closeAll()
    await this.driver.leave()
  }
}

function emptySettings(): ClusterSettings {
  return { ctime: 0n, flags: 0, nrCopies: 0, copyPolicy: 0, blockSizeShift: SD_DEFAULT_BLOCK_SIZE_SHIFT, defaultStore: '', disableRecovery: false }
}

export function objectDir(baseDir: string): string {
  return path.join(baseDir, 'obj')
}
