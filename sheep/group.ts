// Group membership and epochs of one sheep (behaviour.md §3, §9, §17; the original's
// sheep/group.c): what this node joins with, how the deciding member answers a join, and what
// every member does when the cluster driver delivers an accept, a leave or a member's new
// weight — the member list and ring, the epoch history, the status (WAIT until the nodes of the
// last epoch are back), recovery, and the VDI state exchange with newcomers. The driver's own
// ordering and join rules are in cluster/membership.ts; this module is what sheep makes of them.
import type { ClusterHandlers } from './cluster/driver.js'
import { type AnnouncedWeight, type JoinInfo, decodeJoinInfo, encodeJoinInfo } from './cluster/join-info.js'
import {
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_OP_GET_EPOCH,
  SD_OP_GET_VDI_COPIES,
  SD_RES_BUFFER_SMALL,
  SD_RES_SUCCESS,
  SD_SHEEP_PROTO_VER,
  SD_STATUS_OK,
  SD_STATUS_SHUTDOWN,
  SD_STATUS_WAIT,
} from '../lib/proto.js'
import { REQ_OBJ } from '../lib/codec.js'
import { HashRing, autoVnodes } from '../lib/ring.js'
import { EPOCH_FILE_MAX_SIZE, type SdNode, VDI_STATE_SIZE, addrToText, compareNodes, decodeEpochFile, nodeDescription, sameNode } from '../lib/structs.js'
import type { EpochRecord } from './config.js'
import type { ClusterSettings, Sheep } from './sheep.js'

/** What a node weighs in the ring: its capacity and vnode count (behaviour.md §3.3). */
export interface NodeWeight {
  space: bigint
  nrVnodes: number
}

/** GET_VDI_COPIES starts with room for this many records and doubles on BUFFER_SMALL. */
const VDI_SYNC_INITIAL_ENTRIES = 512
/** ... at most this many times. */
const VDI_SYNC_MAX_ATTEMPTS = 8

/** The key of a node in maps: its address and port. */
function nodeKey(node: { addr: Buffer; port: number }): string {
  return `${addrToText(node.addr)}:${node.port}`
}

function sameMembership(a: readonly SdNode[], b: readonly SdNode[]): boolean {
  return a.length === b.length && a.every((n) => b.some((m) => sameNode(m, n)))
}

/**
 * Why a joiner must be refused for its vnode strategy (the original's cluster_join_check): a
 * formatted cluster takes data nodes of its own strategy only; gateways (no vnodes) and
 * unformatted clusters are not checked — `dog cluster format` checks every node instead. The
 * lines are the original's, which names the joiner's strategy `cluster` and the cluster's
 * `joined`: a fixed joiner refused by an auto cluster reads "cluster:fixed, joined:auto".
 */
export function vnodeStrategyMismatch(
  cluster: { clusterCtime: bigint; clusterAuto: boolean },
  joiner: { nrVnodes: number },
  joinerAuto: boolean | undefined,
): string | undefined {
  if (cluster.clusterCtime === 0n || joiner.nrVnodes === 0 || joinerAuto === undefined || joinerAuto === cluster.clusterAuto) return undefined
  return joinerAuto ? VNODES_UNMATCH_AUTO_JOINER : VNODES_UNMATCH_FIXED_JOINER
}

const VNODES_UNMATCH_FIXED_JOINER = 'failed to join for vnodes strategy unmatch.  cluster:fixed, joined:auto'
const VNODES_UNMATCH_AUTO_JOINER = 'failed to join for vnodes strategy unmatch.  cluster:auto, joined:fixed'

/**
 * Why this node must not start with its vnode option (the original's init_config_file and
 * create_cluster): a data node of a formatted cluster keeps the strategy the cluster was
 * formatted with, and on a fixed-vnodes cluster the count it had in its latest epoch (after
 * `dog node vnodes set N`, it restarts with -V N).
 */
export function vnodeStartProblem(node: {
  gateway: boolean
  fixedVnodes: boolean
  self: SdNode
  ctime: bigint
  flags: number
  epoch: number
  latestEpochNodes: readonly SdNode[]
}): string | undefined {
  if (node.gateway) return undefined
  const formattedAuto = (node.flags & SD_CLUSTER_FLAG_AUTO_VNODES) !== 0
  if (node.ctime !== 0n && formattedAuto === node.fixedVnodes) return 'Designation of before a restart and a vnodes option is different.'
  const auto = node.ctime !== 0n ? formattedAuto : !node.fixedVnodes
  if (auto || node.epoch === 0) return undefined
  const previous = node.latestEpochNodes.find((n) => sameNode(n, node.self))?.nrVnodes ?? 0
  if (previous !== node.self.nrVnodes) return `mismatch specified vnodes is compared with the previous. previous vnodes:${previous}`
  return undefined
}

function nowSec(): bigint {
  return BigInt(Math.floor(Date.now() / 1000))
}

export class Group {
  /** This node's own accept has been applied. */
  joined = false
  /**
   * Weights members announced since they joined (applied over what they joined with); a node's
   * entry goes when it leaves or joins again. Every member keeps the same map (same events, same order).
   */
  private weights = new Map<string, AnnouncedWeight>()
  /** The members as the driver gave them: each with the vnode count it joined with. */
  private joinedMembers: SdNode[] = []
  /**
   * A gateway's strategy while the cluster is unformatted: the deciding member's, taken with the
   * accept (the original's sd_accept_handler), since a gateway's own option says nothing.
   */
  private adoptedAutoVnodes: boolean | undefined
  private readonly epochWaiters: Array<() => void> = []

  constructor(private readonly sheep: Sheep) {}

  /** What the cluster driver calls; `notified` (cluster ops, node updates) is sheep's. */
  handlers(notified: ClusterHandlers['notified']): ClusterHandlers {
    return {
      checkJoin: (joiner, payload) => this.checkJoin(joiner, payload),
      decideJoin: (joiner, payload) => this.decideJoin(joiner, payload),
      busy: () => this.sheep.eventsPending > 0,
      checkAccept: (payload) => this.checkAccept(payload),
      // in the driver's order with the cluster ops around them (Sheep.inOrder)
      accepted: (joiner, members, payload) => this.sheep.inOrder(`join of ${nodeDescription(joiner)}`, () => this.onAccepted(joiner, members, payload)),
      left: (node, members) => this.sheep.inOrder(`leave of ${nodeDescription(node)}`, () => this.onLeft(node, members)),
      notified,
      nodeUpdated: (node) => this.onNodeUpdated(node),
      rejoining: () => {
        if (this.sheep.status === SD_STATUS_OK) this.sheep.status = SD_STATUS_WAIT
        this.setMembers([])
        return this.joinPayload()
      },
    }
  }

  /** This node's view of the cluster (cluster_info, cluster/join-info.ts). */
  private ownView(): JoinInfo {
    const s = this.sheep
    return {
      protoVer: SD_SHEEP_PROTO_VER,
      status: s.status,
      epoch: s.epoch,
      settings: s.settings,
      epochNodes: s.epoch > 0 ? (s.epochs.read(s.epoch)?.nodes ?? []) : [],
      weights: [...this.weights.values()],
      autoVnodes: this.usesAutoVnodes,
    }
  }

  /** This node's view of the cluster, sent with its join. */
  joinPayload(): Buffer {
    // the original's bytes: nothing of ours in a join
    return encodeJoinInfo({ ...this.ownView(), weights: undefined })
  }

  /** A payload that is not cluster_info at all: a joiner of another kind, refused. */
  private static decode(payload: Buffer): JoinInfo {
    const info = decodeJoinInfo(payload)
    if (typeof info === 'string') throw new Error(info)
    return info
  }

  /**
   * On the deciding member, before it decides: why the joiner must not join, if it must not
   * (the original's cluster_join_check, done here by the member that answers so that the
   * running cluster never sees the node): another protocol, another cluster (both formatted,
   * different creation times), another vnode strategy than the formatted cluster's, or an epoch
   * newer than the running cluster's — its objects and epoch log are ahead of ours, and taking
   * it in would lose what it has or what we have.
   */
  private checkJoin(joiner: SdNode, payload: Buffer): string | undefined {
    const s = this.sheep
    const theirs = decodeJoinInfo(payload)
    if (typeof theirs === 'string') return theirs
    if (theirs.protoVer !== SD_SHEEP_PROTO_VER) return `invalid protocol version: ${theirs.protoVer}, ${SD_SHEEP_PROTO_VER}`
    if (theirs.epoch > 0 && s.epoch > 0 && theirs.settings.ctime !== s.settings.ctime) {
      return `joining node ctime doesn't match: ${theirs.settings.ctime} vs ${s.settings.ctime}`
    }
    const strategy = vnodeStrategyMismatch({ clusterCtime: s.settings.ctime, clusterAuto: this.usesAutoVnodes }, joiner, theirs.autoVnodes)
    if (strategy !== undefined) return strategy
    if (s.status === SD_STATUS_OK && theirs.epoch > s.epoch) {
      return `joining node has a newer epoch than the running cluster: ${theirs.epoch} vs ${s.epoch}`
    }
    return undefined
  }

  /**
   * On the joiner, at its own accept (the original's cluster_join_check, for drivers where any
   * member accepts, an original one included): why the cluster the accept describes is not one
   * this node may join — the checks of checkJoin, seen from this side.
   */
  private checkAccept(payload: Buffer): string | undefined {
    const s = this.sheep
    const view = decodeJoinInfo(payload)
    if (typeof view === 'string') return view
    if (view.protoVer !== SD_SHEEP_PROTO_VER) return `invalid protocol version: ${view.protoVer}, ${SD_SHEEP_PROTO_VER}`
    if (view.epoch > 0 && s.epoch > 0 && view.settings.ctime !== s.settings.ctime) {
      return `joining node ctime doesn't match: ${s.settings.ctime} vs ${view.settings.ctime}`
    }
    const strategy = vnodeStrategyMismatch({ clusterCtime: view.settings.ctime, clusterAuto: view.autoVnodes }, s.self, this.usesAutoVnodes)
    if (strategy !== undefined) return strategy
    if (view.status === SD_STATUS_OK && s.epoch > view.epoch) {
      return `joining node has a newer epoch than the running cluster: ${s.epoch} vs ${view.epoch}`
    }
    return undefined
  }

  /**
   * On the deciding member: the status and cluster view the joiner is accepted with, written
   * over the joiner's payload as the original's sd_join_handler does.
   */
  private decideJoin(joiner: SdNode, payload: Buffer): Buffer {
    const s = this.sheep
    const theirs = Group.decode(payload)
    let view: JoinInfo = this.ownView()
    if (s.status === SD_STATUS_WAIT) {
      const bothFormatted = view.epoch > 0 && theirs.epoch > 0
      if (!(bothFormatted && view.settings.ctime !== theirs.settings.ctime) && theirs.epoch > view.epoch) view = theirs
      const present = [...s.members, joiner]
      const gathered = view.epoch > 0 && view.epochNodes.every((n) => present.some((m) => sameNode(m, n)))
      view.status = gathered ? SD_STATUS_OK : SD_STATUS_WAIT
    } else {
      view.status = s.status
    }
    // the weights are the current members', as this member applied them
    view = { ...view, protoVer: SD_SHEEP_PROTO_VER, weights: [...this.weights.values()] }
    return encodeJoinInfo(view, payload)
  }

  private onAccepted(joiner: SdNode, members: SdNode[], payload: Buffer): void {
    const s = this.sheep
    const view = Group.decode(payload)
    const isMe = sameNode(joiner, s.self)
    if (isMe && view.protoVer !== SD_SHEEP_PROTO_VER) {
      s.log.fatal(`failed to join: protocol version ${view.protoVer}`)
      s.onStop('join refused')
      return
    }
    if (s.status === SD_STATUS_SHUTDOWN) return
    s.settings = { ...view.settings }
    this.keepSettings()
    // a node new to the cluster takes its store driver, before any object comes (peer ops wait)
    if (isMe && s.settings.defaultStore !== s.store.name && !s.gateway) {
      s.recovery.moveStore('store driver', () => s.useStore(s.settings.defaultStore))
    }
    // without the deciding member's weights (an original one decided), the member list has them
    if (isMe) this.weights = new Map((view.weights ?? []).map((w) => [nodeKey(w), w]))
    if (isMe && s.gateway && view.settings.ctime === 0n) this.adoptedAutoVnodes = view.autoVnodes
    // a joiner announces its weight afresh
    this.weights.delete(nodeKey(joiner))
    this.setMembers(members)
    const wasWaiting = s.status === SD_STATUS_WAIT
    const myLastEpoch = s.epoch
    s.status = view.status
    if (view.epoch > s.epoch) {
      s.epoch = view.epoch
      s.epochs.record(view.epoch, view.epochNodes, nowSec())
    }
    if (isMe) this.joined = true
    // a member of a waiting cluster takes the newer epoch a joiner brings just as the joiner
    // takes the cluster's: if it is not in that epoch, its objects are older than the epoch
    if (isMe || view.epoch > myLastEpoch) this.moveOutdatedObjects(view.epoch, view.epochNodes, myLastEpoch)
    // VDI bookkeeping (behaviour.md §9): a newcomer asks everybody, the others ask the newcomer
    const others = isMe ? members.filter((n) => !sameNode(n, s.self)) : [joiner]
    if (others.length > 0) void this.syncVdisFrom(others)
    s.log.info(`${nodeDescription(joiner)} joined; ${members.length} member(s), status ${s.status}, epoch ${s.epoch}`)
    if (s.status === SD_STATUS_OK) {
      const latest = s.epochs.read(s.epoch)?.nodes ?? []
      if (!sameMembership(latest, s.members)) this.bumpEpoch()
      else if (wasWaiting) void this.markRunning()
    }
  }

  /**
   * Keeps the cluster's settings in this node's config file once the cluster is formatted: a
   * node that joined after the format has them only from the accept, and must still belong to
   * this cluster (same creation time) when it restarts. Written before the epoch log entry the
   * accept brings; the clean-shutdown flag is kept as it is.
   */
  private keepSettings(): void {
    const { settings, config } = this.sheep
    const cfg = config.read()
    if (settings.ctime === 0n || !cfg) return
    const kept = {
      ...cfg,
      ctime: settings.ctime,
      flags: settings.flags,
      copies: settings.nrCopies,
      copyPolicy: settings.copyPolicy,
      blockSizeShift: settings.blockSizeShift,
      defaultStore: settings.defaultStore,
    }
    const changed = (Object.keys(kept) as Array<keyof typeof kept>).some((k) => kept[k] !== cfg[k])
    if (changed) config.writeSync(kept)
  }

  /** Rejoining after being dropped from the cluster's epoch: what we stored is outdated (behaviour.md §3.1). */
  private moveOutdatedObjects(epoch: number, epochNodes: readonly SdNode[], myLastEpoch: number): void {
    const s = this.sheep
    const listed = epochNodes.some((n) => sameNode(n, s.self))
    if (s.gateway || epoch === 0 || listed || s.store.list().length === 0) return
    const outdated = s.store.list()
    s.log.info(`not in epoch ${epoch}: ${outdated.length} local object(s) moved to the stale area`)
    // named with the last epoch this node was a member of: the copies are that fresh, no fresher
    const staleEpoch = Math.max(1, Math.min(myLastEpoch, epoch))
    s.recovery.moveStore('rejoin', async () => {
      await Promise.all(outdated.map((oid) => s.store.moveToStale(oid, staleEpoch)))
    })
  }

  private onLeft(node: SdNode, members: SdNode[]): void {
    const s = this.sheep
    if (s.status === SD_STATUS_SHUTDOWN) return
    this.weights.delete(nodeKey(node))
    this.setMembers(members)
    s.peers.drop(node)
    s.log.info(`${nodeDescription(node)} left; ${members.length} member(s)`)
    if (s.status === SD_STATUS_OK) this.bumpEpoch()
  }

  /** Merges the VDI state tables of `nodes` into ours (GET_VDI_COPIES). */
  private async syncVdisFrom(nodes: SdNode[]): Promise<void> {
    const s = this.sheep
    await Promise.all(
      nodes.map(async (node) => {
        const conn = s.peers.get(node)
        let capacity = VDI_SYNC_INITIAL_ENTRIES * VDI_STATE_SIZE
        for (let attempt = 0; attempt < VDI_SYNC_MAX_ATTEMPTS; attempt++) {
          try {
            const { rsp, data } = await conn.request({ opcode: SD_OP_GET_VDI_COPIES, readLength: capacity })
            if (rsp.result === SD_RES_BUFFER_SMALL) {
              capacity *= 2
              continue
            }
            if (rsp.result === SD_RES_SUCCESS) s.vdis.merge(data)
            return
          } catch (e) {
            s.log.warn(`VDI state sync from ${nodeDescription(node)} failed: ${String(e)}`)
            return
          }
        }
      }),
    )
  }

  /**
   * Vnode counts follow capacities: the formatted cluster's flag; before format, this node's own
   * strategy (a gateway's: the deciding member's).
   */
  get usesAutoVnodes(): boolean {
    const { settings } = this.sheep
    if (settings.ctime !== 0n) return (settings.flags & SD_CLUSTER_FLAG_AUTO_VNODES) !== 0
    return this.adoptedAutoVnodes ?? !this.sheep.fixedVnodes
  }

  /** Applies a new member list from the driver: announced weights, vnode counts (auto strategy) and the ring. */
  setMembers(members: SdNode[]): void {
    this.joinedMembers = members
    this.rebuildRing()
  }

  /**
   * The member list and ring from the members as they joined, the weights announced since and
   * the strategy now in force — never from the counts the auto strategy computed before (a
   * format may have changed the strategy since).
   */
  private rebuildRing(): void {
    const s = this.sheep
    const sorted = this.joinedMembers
      .map((n) => {
        const weight = this.weights.get(nodeKey(n))
        return weight ? { ...n, space: weight.space, nrVnodes: weight.nrVnodes } : n
      })
      .sort(compareNodes)
    if (this.usesAutoVnodes) {
      const counts = autoVnodes(sorted)
      sorted.forEach((n, i) => {
        sorted[i] = { ...n, nrVnodes: n.space === 0n ? 0 : counts[i] }
      })
    }
    s.members = sorted
    const me = sorted.find((n) => sameNode(n, s.self))
    if (me) s.self = me
    s.ring = new HashRing<SdNode>(sorted)
  }

  /** Membership changed while running: a new epoch with the current members. */
  bumpEpoch(): void {
    const s = this.sheep
    s.epoch += 1
    s.epochs.record(s.epoch, s.members, nowSec())
    s.log.info(`epoch ${s.epoch}: ${s.members.map((n) => nodeDescription(n)).join(', ')}`)
    this.wakeEpochWaiters()
    s.recovery.start()
  }

  /** MAKE_FS: the current members become epoch 1 (the store and settings are the caller's). */
  async startEpochs(): Promise<void> {
    const s = this.sheep
    this.rebuildRing()
    s.epoch = 1
    s.epochs.record(1, s.members, nowSec())
    s.status = SD_STATUS_OK
    this.wakeEpochWaiters()
  }

  /**
   * The cluster runs again with the members of its latest epoch. After an unclean stop, replicas
   * may have missed writes in flight: recover at the same epoch (behaviour.md §3.1).
   */
  private async markRunning(): Promise<void> {
    const { config, recovery } = this.sheep
    const cfg = config.read()
    if (cfg && !cfg.shutdown) recovery.start(false)
    if (cfg?.shutdown) await config.write({ ...cfg, shutdown: 0 })
  }

  /** UPDATE_NODE from the driver: the member's new space and vnode count. */
  private onNodeUpdated(node: SdNode): void {
    this.sheep.applyNodeUpdate(node, { space: node.space, nrVnodes: node.nrVnodes })
  }

  /** A member's new weight, applied by every member in order: a new epoch with the new ring. */
  async applyWeight(sender: SdNode, weight: NodeWeight): Promise<void> {
    const s = this.sheep
    if (!s.members.some((m) => sameNode(m, sender))) return
    this.weights.set(nodeKey(sender), { addr: sender.addr, port: sender.port, ...weight })
    if (s.isSelf(sender) && weight.space !== s.space) {
      s.space = weight.space
      await s.saveConfig()
    }
    this.rebuildRing()
    const now = s.members.find((n) => sameNode(n, sender))
    s.log.info(`${nodeDescription(sender)} now weighs ${weight.space} bytes, ${now?.nrVnodes ?? weight.nrVnodes} vnodes`)
    if (s.status === SD_STATUS_OK) this.bumpEpoch()
  }

  /**
   * The epoch log entry of `epoch`: this node's own, else a member's (GET_EPOCH), kept here
   * afterwards — a node that joined later, or was away, has the same history as the others
   * (`dog cluster info` on any node, recovery walking back through old rings).
   */
  async epochLog(epoch: number): Promise<EpochRecord | undefined> {
    const s = this.sheep
    const own = s.epochs.read(epoch)
    if (own) return own
    for (const m of s.members) {
      if (s.isSelf(m)) continue
      try {
        const { rsp, data } = await s.peers.get(m).request({
          opcode: SD_OP_GET_EPOCH,
          variant: REQ_OBJ,
          fields: { tgtEpoch: epoch },
          readLength: EPOCH_FILE_MAX_SIZE,
        })
        const decoded = rsp.result === SD_RES_SUCCESS ? decodeEpochFile(data) : undefined
        if (!decoded) continue
        // another epoch may have been recorded here meanwhile: never replace it
        if (!s.epochs.read(epoch)) s.epochs.record(epoch, decoded.nodes, decoded.timeSec)
        return { epoch, ...decoded }
      } catch {
        // try the next member
      }
    }
    return undefined
  }

  /** Resolves once the local epoch is at least `epoch` (peer requests from the future wait). */
  waitForEpoch(epoch: number, timeoutMs: number): Promise<boolean> {
    const reached = () => ((this.sheep.epoch - epoch) | 0) >= 0
    if (reached()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      const check = () => {
        if (reached()) {
          clearTimeout(timer)
          resolve(true)
        } else {
          this.epochWaiters.push(check)
        }
      }
      this.epochWaiters.push(check)
    })
  }

  private wakeEpochWaiters(): void {
    for (const w of this.epochWaiters.splice(0)) w()
  }
}
