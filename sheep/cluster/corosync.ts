// The `corosync` cluster driver (behaviour.md §11.2): every sheep joins the CPG group
// `sheepdog` of the corosync on its host, and CPG's virtual synchrony — messages in agreed
// order, configuration changes ordered with them — gives every member the same sequence of
// joins, leaves, notifies and blocks. It speaks the original's messages (corosync-message.ts)
// and follows its rules (sheep/cluster/corosync.c):
//
// - a configuration change queues a JOIN event for each process that joined the group and a
//   LEAVE event for each that left (a pending JOIN or BLOCK of a leaver is dropped instead);
// - a joiner multicasts JOIN with its payload; every member, at that JOIN in its queue, asks
//   sheep and multicasts ACCEPT (the joiner, the member list, sheep's answer); the first ACCEPT
//   delivered wins, the joiner takes the list from it. A process that sees JOIN events for
//   every member of its first configuration is alone and accepts itself (self election);
// - events wait in two queues: the non-block queue (JOIN, ACCEPT, LEAVE, NOTIFY, UPDATE_NODE)
//   is processed first and an unanswered JOIN stops it; a BLOCK at the head of the block queue
//   stops block processing until its UNBLOCK, which carries the result that every member then
//   processes as a NOTIFY. The sender of the block runs its work while it holds the head;
// - a configuration change that removes a majority of the members at once stops the node
//   (a network partition: the original panics);
// - there is no refusal: the first member at a JOIN accepts it, and the joiner that finds it must
//   not join the cluster its accept describes (sheep's checkAccept, the original's
//   cluster_join_check) fails its join and leaves; the members see it come and go.
import { SdError, invariant } from '../../lib/errors.js'
import type { Logger } from '../../lib/log.js'
import { SD_RES_CLUSTER_ERROR } from '../../lib/proto.js'
import { SD_NODE_SIZE, type SdNode, decodeNode, nodeDescription, sameNode } from '../../lib/structs.js'
import {
  COROSYNC_MSG_TYPE_ACCEPT,
  COROSYNC_MSG_TYPE_BLOCK,
  COROSYNC_MSG_TYPE_JOIN,
  COROSYNC_MSG_TYPE_LEAVE,
  COROSYNC_MSG_TYPE_NAMES,
  COROSYNC_MSG_TYPE_NOTIFY,
  COROSYNC_MSG_TYPE_UNBLOCK,
  COROSYNC_MSG_TYPE_UPDATE_NODE,
  type CorosyncMessage,
  type CpgNode,
  SD_MAX_EVENT_BUF_SIZE,
  decodeCorosyncMessage,
  encodeCorosyncMessage,
  sameCpgNode,
} from './corosync-message.js'
import { CS_ERR_SECURITY, CS_ERR_TRY_AGAIN, CS_OK, type CpgAddress, type CpgHandle, csErrorName, loadCpgAddon } from './cpg.js'
import type { ClusterDriver, ClusterHandlers } from './driver.js'

/** The CPG group every sheep joins (the original's cpg_group). */
export const COROSYNC_GROUP = 'sheepdog'
/** cpg_initialize attempts while corosync answers "try again", and the pause between them. */
export const CPG_INIT_RETRY_COUNT = 10
export const CPG_INIT_RETRY_MS = 200
/** Pause before cpg_join or cpg_mcast_joined is tried again after CS_ERR_TRY_AGAIN (the original's sleep(1)). */
export const CPG_RETRY_MS = 1_000
/** How long `leave` waits for its own LEAVE to come back before it closes the CPG handle anyway. */
export const COROSYNC_LEAVE_TIMEOUT_MS = 2_000
/** While this member is still applying earlier events (ClusterHandlers.busy), a join waits this long before it is looked at again. */
export const COROSYNC_BUSY_RETRY_MS = 10

type EventType = 'join' | 'accept' | 'leave' | 'block' | 'notify' | 'update'

/** One entry of the original's event queues (struct corosync_event). */
interface CorosyncEvent {
  type: EventType
  sender: CpgNode
  /** JOIN: the joiner's payload once its JOIN message came; ACCEPT: the answer; NOTIFY: the message. */
  msg: Buffer | undefined
  /** ACCEPT: the member list the answering member had. */
  nodes: CpgNode[]
  /** JOIN: answered; BLOCK: its work started. */
  callbacked: boolean
  /** NOTIFY: made from an UNBLOCK (the result of exclusive work). */
  fromUnblock: boolean
}

/** The factory of CPG handles: the binding, or a fake in unit tests. */
export type OpenCpg = (
  onDeliver: (nodeid: number, pid: number, message: Buffer) => void,
  onConfchg: (members: CpgAddress[], left: CpgAddress[], joined: CpgAddress[]) => void,
  onError: (code: number) => void,
) => CpgHandle

export interface CorosyncDriverOptions {
  log?: Logger
  /** Defaults to the libcpg binding. */
  openCpg?: OpenCpg
  /** This process's id in the CPG group (tests run several drivers in one process). */
  pid?: number
  /** What to do when the node must stop (partition, corosync gone); defaults to exiting with status 1. */
  fatal?: (reason: string) => void
}

function emptyNode(): SdNode {
  return decodeNode(Buffer.alloc(SD_NODE_SIZE))
}

function cpgNodeOf(a: { nodeid: number; pid: number }): CpgNode {
  return { nodeid: a.nodeid, pid: a.pid, node: emptyNode() }
}

function newEvent(type: EventType, sender: CpgNode, msg?: Buffer): CorosyncEvent {
  return { type, sender, msg, nodes: [], callbacked: false, fromUnblock: false }
}

/** A promise settled from outside; settling it again does nothing. */
class Deferred<T> {
  readonly promise: Promise<T>
  resolve!: (value: T) => void
  reject!: (error: unknown) => void
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    // a waiter nobody awaits any more (a join given up) must not crash the process
    this.promise.catch(() => undefined)
  }
}

/**
 * A join's payload at the length the original sends (its cluster_info, cut to
 * SD_MAX_EVENT_BUF_SIZE): an original member writes its own cluster_info into the joiner's
 * buffer and sends it back as the ACCEPT, so the buffer must have room for it.
 */
function paddedJoin(payload: Buffer): Buffer {
  if (payload.length >= SD_MAX_EVENT_BUF_SIZE) return payload
  const out = Buffer.alloc(SD_MAX_EVENT_BUF_SIZE)
  payload.copy(out)
  return out
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export class CorosyncDriver implements ClusterDriver {
  readonly name = 'corosync'
  private readonly log: Logger | undefined
  private readonly openCpg: OpenCpg | undefined
  private readonly pid: number
  private readonly fatal: (reason: string) => void
  private cpg: CpgHandle | undefined
  private handlers: ClusterHandlers | undefined
  /** This process in the group; its sd_node is sheep's. */
  private me: CpgNode = cpgNodeOf({ nodeid: 0, pid: 0 })
  /** The accepted members, in accept order (the original's cpg_nodes). */
  private nodes: CpgNode[] = []
  private readonly nonblockEvents: CorosyncEvent[] = []
  private readonly blockEvents: CorosyncEvent[] = []
  private selfElect = false
  private joinFinished = false
  private joined: Deferred<void> | undefined
  /** This node's notifies and exclusive works, in send order (CPG keeps a sender's order). */
  private readonly notifyWaiters: Array<Deferred<void>> = []
  private readonly works: Array<{ work: () => Promise<Buffer>; done: Deferred<void> }> = []
  private readonly exclusiveWaiters: Array<Deferred<void>> = []
  private readonly updateWaiters: Array<Deferred<void>> = []
  private leaveWaiter: Deferred<void> | undefined
  /** Multicasts go out one after another: a retried one keeps its place. */
  private sendChain: Promise<void> = Promise.resolve()
  private leaving = false
  private closed = false

  constructor(options: CorosyncDriverOptions = {}) {
    this.log = options.log
    this.openCpg = options.openCpg
    this.pid = options.pid ?? process.pid
    this.fatal =
      options.fatal ??
      ((reason) => {
        this.log?.fatal(reason)
        process.exit(1)
      })
  }

  // ---- the ClusterDriver interface -----------------------------------------------------------

  async join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void> {
    invariant(this.cpg === undefined, 'corosync driver joined twice')
    this.handlers = handlers
    const cpg = await this.initialize()
    this.cpg = cpg
    try {
      const nodeid = cpg.localNodeId()
      if (nodeid === null) throw new Error('corosync did not tell this node its id')
      this.me = { nodeid, pid: this.pid, node: self }
      await this.joinGroup(cpg)
    } catch (e) {
      this.close(e instanceof Error ? e : new Error(String(e)))
      throw e
    }
    const nodeid = this.me.nodeid
    this.log?.info(`joined the corosync group ${COROSYNC_GROUP} as node id ${nodeid}, pid ${this.pid}`)
    this.joined = new Deferred<void>()
    const accepted = this.joined.promise
    await this.send({ type: COROSYNC_MSG_TYPE_JOIN, sender: this.me, nodes: [], msg: paddedJoin(joinPayload) })
    await accepted
  }

  async notify(message: Buffer): Promise<void> {
    this.checkUsable(message)
    const done = new Deferred<void>()
    this.notifyWaiters.push(done)
    this.send({ type: COROSYNC_MSG_TYPE_NOTIFY, sender: this.me, nodes: [], msg: message }).catch((e: unknown) => done.reject(e))
    await done.promise
  }

  async exclusive(work: () => Promise<Buffer>): Promise<void> {
    this.checkUsable(Buffer.alloc(0))
    const done = new Deferred<void>()
    this.works.push({ work, done })
    this.send({ type: COROSYNC_MSG_TYPE_BLOCK, sender: this.me, nodes: [], msg: Buffer.alloc(0) }).catch((e: unknown) => done.reject(e))
    await done.promise
  }

  async updateNode(node: SdNode): Promise<void> {
    this.checkUsable(Buffer.alloc(0))
    const done = new Deferred<void>()
    this.updateWaiters.push(done)
    // the sender is this process with its new sd_node, as the original's corosync_update_node
    this.send({ type: COROSYNC_MSG_TYPE_UPDATE_NODE, sender: { ...this.me, node }, nodes: [], msg: Buffer.alloc(0) }).catch((e: unknown) => done.reject(e))
    await done.promise
  }

  async leave(): Promise<void> {
    if (this.closed) return
    this.leaving = true
    if (this.joinFinished && this.cpg) {
      this.leaveWaiter = new Deferred<void>()
      const left = this.leaveWaiter.promise
      await this.send({ type: COROSYNC_MSG_TYPE_LEAVE, sender: this.me, nodes: [], msg: Buffer.alloc(0) }).catch(() => undefined)
      let timer: NodeJS.Timeout | undefined
      await Promise.race([left, new Promise<void>((resolve) => (timer = setTimeout(resolve, COROSYNC_LEAVE_TIMEOUT_MS)))])
      clearTimeout(timer)
    }
    this.close(new SdError(SD_RES_CLUSTER_ERROR, 'this node left the cluster'))
  }

  // ---- CPG --------------------------------------------------------------------------------------

  private async joinGroup(cpg: CpgHandle): Promise<void> {
    for (;;) {
      const code = cpg.join(COROSYNC_GROUP)
      if (code === CS_OK) return
      if (code === CS_ERR_SECURITY) throw new Error(`permission denied to join the ${COROSYNC_GROUP} group of corosync`)
      if (code !== CS_ERR_TRY_AGAIN) throw new Error(`failed to join the ${COROSYNC_GROUP} group of corosync (${csErrorName(code)})`)
      this.log?.debug('corosync asks to try joining again')
      await sleep(CPG_RETRY_MS)
    }
  }

  private async initialize(): Promise<CpgHandle> {
    let open = this.openCpg
    if (!open) {
      const addon = loadCpgAddon()
      if (addon instanceof Error) throw addon
      open = (d, c, e) => new addon.Cpg(d, c, e)
    }
    const cpg = open(
      (nodeid, pid, message) => this.onDeliver(nodeid, pid, message),
      (members, left, joined) => this.onConfchg(members, left, joined),
      (code) => this.onCpgError(code),
    )
    for (let attempt = 0; ; attempt++) {
      const code = cpg.initialize()
      if (code === CS_OK) return cpg
      if (code === CS_ERR_SECURITY) throw new Error('failed to initialize cpg - permission denied')
      if (code !== CS_ERR_TRY_AGAIN || attempt === CPG_INIT_RETRY_COUNT) {
        throw new Error(`failed to initialize cpg (${csErrorName(code)}) - is corosync running?`)
      }
      await sleep(CPG_INIT_RETRY_MS)
    }
  }

  /** Multicasts in agreed order, after every earlier multicast of this node; retries while corosync says "try again". */
  private send(message: CorosyncMessage): Promise<void> {
    const buf = encodeCorosyncMessage(message)
    const sent = this.sendChain.then(async () => {
      for (;;) {
        const cpg = this.cpg
        if (!cpg || this.closed) throw new SdError(SD_RES_CLUSTER_ERROR, 'the corosync driver is closed')
        const code = cpg.mcast([buf])
        if (code === CS_OK) return
        if (code !== CS_ERR_TRY_AGAIN)
          throw new SdError(SD_RES_CLUSTER_ERROR, `failed to send a ${COROSYNC_MSG_TYPE_NAMES[message.type]} message (${csErrorName(code)})`)
        this.log?.debug('corosync asks to try sending again')
        await sleep(CPG_RETRY_MS)
      }
    })
    this.sendChain = sent.catch(() => undefined)
    return sent
  }

  private onCpgError(code: number): void {
    if (this.closed) return
    this.close(new SdError(SD_RES_CLUSTER_ERROR, 'lost the connection to corosync'))
    this.fatal(`corosync driver: lost the connection to corosync (${csErrorName(code)}), exiting`)
  }

  private close(error: Error): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.busyRetry)
    this.cpg?.finalize()
    for (const w of this.notifyWaiters.splice(0)) w.reject(error)
    for (const w of this.exclusiveWaiters.splice(0)) w.reject(error)
    for (const w of this.updateWaiters.splice(0)) w.reject(error)
    for (const w of this.works.splice(0)) w.done.reject(error)
    this.joined?.reject(error)
    this.joined = undefined
    this.leaveWaiter?.resolve()
  }

  private checkUsable(message: Buffer): void {
    if (this.closed || this.leaving) throw new SdError(SD_RES_CLUSTER_ERROR, 'this node is leaving the cluster')
    if (!this.joinFinished) throw new SdError(SD_RES_CLUSTER_ERROR, 'this node has not joined the cluster yet')
    if (message.length > SD_MAX_EVENT_BUF_SIZE) {
      throw new SdError(SD_RES_CLUSTER_ERROR, `a cluster message of ${message.length} bytes exceeds the corosync driver's ${SD_MAX_EVENT_BUF_SIZE}`)
    }
  }

  // ---- deliveries and configuration changes (cdrv_cpg_deliver, cdrv_cpg_confchg) ---------------

  private findEvent(type: EventType, sender: { nodeid: number; pid: number }): CorosyncEvent | undefined {
    const queue = type === 'block' ? this.blockEvents : this.nonblockEvents
    return queue.find((e) => e.type === type && sameCpgNode(e.sender, sender))
  }

  private removeEvent(event: CorosyncEvent): void {
    for (const queue of [this.nonblockEvents, this.blockEvents]) {
      const at = queue.indexOf(event)
      if (at >= 0) queue.splice(at, 1)
    }
  }

  private queueEvent(event: CorosyncEvent): void {
    ;(event.type === 'block' ? this.blockEvents : this.nonblockEvents).push(event)
  }

  /** What each message type does to the queues, by type. */
  private readonly onMessage: Readonly<Record<number, (m: CorosyncMessage) => void>> = {
    [COROSYNC_MSG_TYPE_JOIN]: (m) => {
      // a JOIN whose configuration change came before this node was in the group is history
      const event = this.findEvent('join', m.sender)
      if (!event) return
      event.sender = m.sender
      event.msg = m.msg
    },
    [COROSYNC_MSG_TYPE_ACCEPT]: (m) => {
      // the first answer wins; later ones find the event already an ACCEPT
      const event = this.findEvent('join', m.sender)
      if (!event) return
      event.type = 'accept'
      event.sender = m.sender
      event.msg = m.msg
      event.nodes = m.nodes
    },
    [COROSYNC_MSG_TYPE_LEAVE]: (m) => this.queueEvent(newEvent('leave', m.sender, m.msg)),
    [COROSYNC_MSG_TYPE_NOTIFY]: (m) => this.queueEvent(newEvent('notify', m.sender, m.msg)),
    [COROSYNC_MSG_TYPE_BLOCK]: (m) => this.queueEvent(newEvent('block', m.sender)),
    [COROSYNC_MSG_TYPE_UNBLOCK]: (m) => {
      const block = this.findEvent('block', m.sender)
      if (block) this.removeEvent(block)
      const notify = newEvent('notify', m.sender, m.msg)
      notify.fromUnblock = true
      this.queueEvent(notify)
    },
    [COROSYNC_MSG_TYPE_UPDATE_NODE]: (m) => this.queueEvent(newEvent('update', m.sender, m.msg)),
  }

  private onDeliver(_nodeid: number, _pid: number, buf: Buffer): void {
    if (this.closed) return
    const m = decodeCorosyncMessage(buf)
    if (typeof m === 'string') {
      this.log?.warn(`ignored a corosync message: ${m}`)
      return
    }
    const apply = this.onMessage[m.type]
    if (!apply) {
      this.log?.warn(`ignored a corosync message of unknown type ${m.type}`)
      return
    }
    this.log?.debug(`corosync ${COROSYNC_MSG_TYPE_NAMES[m.type]} from ${m.sender.nodeid}/${m.sender.pid}`)
    apply(m)
    this.dispatch()
  }

  private onConfchg(members: CpgAddress[], left: CpgAddress[], joined: CpgAddress[]): void {
    if (this.closed) return
    this.log?.debug(`corosync configuration: ${members.length} member(s), ${joined.length} joined, ${left.length} left`)
    // a partition: losing a majority at once, this side must not go on alone (counting members
    // only: the original also counts a joiner that goes before its accept, and a lone member
    // then stops)
    const majority = Math.floor(this.nodes.length / 2) + 1
    const leavingMembers = left.filter((l) => this.nodes.some((n) => sameCpgNode(n, l))).length
    if (this.joinFinished && !this.leaving && leavingMembers >= majority) {
      this.close(new SdError(SD_RES_CLUSTER_ERROR, 'network partition'))
      this.fatal(`a number of leaving node (${leavingMembers}) is larger than majority (${majority}), network partition`)
      return
    }
    for (const gone of left) {
      const pendingJoin = this.findEvent('join', gone)
      if (pendingJoin) {
        // it left before it was accepted
        this.removeEvent(pendingJoin)
        continue
      }
      const pendingBlock = this.findEvent('block', gone)
      if (pendingBlock) this.removeEvent(pendingBlock) // it left holding the block
      this.queueEvent(newEvent('leave', cpgNodeOf(gone)))
    }
    for (const j of joined) this.queueEvent(newEvent('join', cpgNodeOf(j)))
    // a process that sees the JOIN of every member of its configuration is the first: it accepts itself
    if (!this.joinFinished && members.every((m) => this.findEvent('join', m) !== undefined)) this.selfElect = true
    this.dispatch()
  }

  // ---- processing the queues (__corosync_dispatch) ------------------------------------------------

  private dispatch(): void {
    while (!this.closed) {
      const event = this.nonblockEvents[0] ?? this.blockEvents[0]
      if (!event) return
      this.joinFinished = this.updateJoinStatus(event)
      if (this.joinFinished) {
        if (!this.dispatchOne(event)) return
      } else if (event.type === 'join' || event.type === 'notify') {
        // the original stops here for JOIN and (its enums crossed) NOTIFY until this node's accept
        return
      }
      this.removeEvent(event)
    }
  }

  /** Whether this node is a member (from its own accept on, or as the first member). */
  private updateJoinStatus(event: CorosyncEvent): boolean {
    if (this.joinFinished) return true
    if (event.type === 'join' && this.selfElect) {
      this.nodes = []
      return true
    }
    if (event.type === 'accept' && sameCpgNode(event.sender, this.me)) {
      this.nodes = event.nodes.slice()
      return true
    }
    return false
  }

  /** Processes the event at the head; false when it must stay there (the queue waits). */
  private dispatchOne(event: CorosyncEvent): boolean {
    switch (event.type) {
      case 'join':
        return this.onJoinEvent(event)
      case 'accept':
        this.onAcceptEvent(event)
        return true
      case 'leave':
        this.onLeaveEvent(event)
        return true
      case 'block':
        return this.onBlockEvent(event)
      case 'notify':
        this.onNotifyEvent(event)
        return true
      case 'update':
        this.onUpdateEvent(event)
        return true
    }
  }

  /** sd_join_handler at every member: answer once the joiner's JOIN message is here; wait for the ACCEPT. */
  private onJoinEvent(event: CorosyncEvent): boolean {
    if (!event.msg || event.callbacked) return false
    const joiner = event.sender
    // the joiner waits for a member to accept it, unless it is the first
    if (this.nodes.length > 0 && sameCpgNode(joiner, this.me)) return false
    // the answer carries this member's state: not while it is still applying the events before
    // the join (a format purging its store), as the original, which applies them synchronously
    if (this.handlers!.busy?.()) {
      this.dispatchLater()
      return false
    }
    event.callbacked = true
    const answer = this.handlers!.decideJoin(joiner.node, event.msg)
    void this.send({ type: COROSYNC_MSG_TYPE_ACCEPT, sender: joiner, nodes: this.nodes.slice(), msg: answer }).catch((e: unknown) =>
      this.log?.warn(`cannot answer the join of ${nodeDescription(joiner.node)}: ${String(e)}`),
    )
    return false
  }

  private busyRetry: NodeJS.Timeout | undefined

  /** Looks at the queues again a little later (a join deferred while this member is busy). */
  private dispatchLater(): void {
    if (this.busyRetry || this.closed) return
    this.busyRetry = setTimeout(() => {
      this.busyRetry = undefined
      this.dispatch()
    }, COROSYNC_BUSY_RETRY_MS)
  }

  private onAcceptEvent(event: CorosyncEvent): void {
    const self = sameCpgNode(event.sender, this.me)
    const payload = event.msg ?? Buffer.alloc(0)
    const refusal = self ? this.handlers!.checkAccept?.(payload) : undefined
    if (refusal !== undefined) {
      // the members took this node in: leaving the group tells them it is gone
      this.log?.error(`failed to join Sheepdog: ${refusal}`)
      const joined = this.joined
      this.joined = undefined
      this.close(new SdError(SD_RES_CLUSTER_ERROR, refusal))
      joined?.reject(new Error(refusal))
      return
    }
    // an older process of the same sheep still listed is gone (it died before corosync said so)
    const older = this.nodes.find((n) => sameNode(n.node, event.sender.node) && !sameCpgNode(n, event.sender))
    if (older) this.removeMember(older)
    this.nodes.push(event.sender)
    this.handlers!.accepted(
      event.sender.node,
      this.nodes.map((n) => n.node),
      payload,
    )
    if (self) {
      this.log?.info(`accepted into the cluster; ${this.nodes.length} member(s)`)
      this.joined?.resolve()
      this.joined = undefined
    }
  }

  private onLeaveEvent(event: CorosyncEvent): void {
    const member = this.nodes.find((n) => sameCpgNode(n, event.sender))
    if (!member) return // already gone (its LEAVE message, then the configuration change)
    if (sameCpgNode(member, this.me)) {
      this.nodes = this.nodes.filter((n) => n !== member)
      this.leaveWaiter?.resolve()
      return
    }
    this.removeMember(member)
  }

  private removeMember(member: CpgNode): void {
    this.nodes = this.nodes.filter((n) => n !== member)
    this.handlers!.left(
      member.node,
      this.nodes.map((n) => n.node),
    )
  }

  /** sd_block_handler: the sender runs its work at the head of the block queue; everybody waits for its UNBLOCK. */
  private onBlockEvent(event: CorosyncEvent): boolean {
    if (event.callbacked || !sameCpgNode(event.sender, this.me)) return false
    event.callbacked = true
    const next = this.works.shift()
    if (!next) {
      // not ours to run (a work given up with a closed driver): release the block
      void this.send({ type: COROSYNC_MSG_TYPE_UNBLOCK, sender: this.me, nodes: [], msg: Buffer.alloc(0) }).catch(() => undefined)
      return false
    }
    this.exclusiveWaiters.push(next.done)
    const release = (message: Buffer) =>
      this.send({ type: COROSYNC_MSG_TYPE_UNBLOCK, sender: this.me, nodes: [], msg: message }).catch((e: unknown) => {
        if (this.exclusiveWaiters[0] === next.done) this.exclusiveWaiters.shift()
        next.done.reject(e)
      })
    next.work().then(
      (message) => {
        if (message.length > SD_MAX_EVENT_BUF_SIZE) {
          next.done.reject(new SdError(SD_RES_CLUSTER_ERROR, `a cluster op result of ${message.length} bytes exceeds ${SD_MAX_EVENT_BUF_SIZE}`))
          void release(Buffer.alloc(0))
        } else void release(message)
      },
      (err: unknown) => {
        // release the block with no result so the others go on; the caller sees the error
        next.done.reject(err)
        void release(Buffer.alloc(0))
      },
    )
    return false
  }

  private onNotifyEvent(event: CorosyncEvent): void {
    const message = event.msg ?? Buffer.alloc(0)
    // an empty UNBLOCK releases the block of a work that failed: nothing to apply
    if (!event.fromUnblock || message.length > 0) this.handlers!.notified(event.sender.node, message)
    if (!sameCpgNode(event.sender, this.me)) return
    const waiter = event.fromUnblock ? this.exclusiveWaiters.shift() : this.notifyWaiters.shift()
    waiter?.resolve()
  }

  /** UPDATE_NODE: a member's sd_node changed (reweight, vnodes set): the list a later ACCEPT sends has it too. */
  private onUpdateEvent(event: CorosyncEvent): void {
    const self = sameCpgNode(event.sender, this.me)
    if (self) this.me = event.sender
    const member = this.nodes.find((n) => sameNode(n.node, event.sender.node))
    if (member) {
      member.node = event.sender.node
      this.handlers!.nodeUpdated?.(event.sender.node)
    }
    if (self) this.updateWaiters.shift()?.resolve()
  }
}
