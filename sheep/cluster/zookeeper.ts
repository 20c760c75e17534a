// The `zookeeper` cluster driver: sheep on several machines ordered by a ZooKeeper ensemble
// (behaviour.md §11.3, cli-and-formats.md §1.2). Like the local driver it feeds one append-only
// event log to the membership state machine every driver shares (membership.ts: the first live
// member as "master" answering joins and declaring dead members gone, duplicates ignored on
// apply), with ZooKeeper supplying the log and the liveness:
//
//   CLUSTER_ID/queue/<instance>-<n>-<seq>   persistent sequential: one event each, applied in
//                                           <seq> order (the ZooKeeper-assigned 10-digit suffix)
//   CLUSTER_ID/member/<addr:port>@<instance> ephemeral: present while that session lives
//   CLUSTER_ID/pos/<addr:port>@<instance>   ephemeral: the last event that reader has applied
//   CLUSTER_ID/snapshot                     the membership/block state as of one event, written
//                                           by the master; older events are then deleted
//
// An instance is a ZooKeeper session id: a node that restarts, or whose session expired, comes
// back as a new instance and joins again. A joiner reads the snapshot and every event after it,
// so every member and joiner holds the same state at the same point of the log; handlers only
// run from the joiner's own accept on (the events before are history). Losing the ZooKeeper
// connection stops membership changes and cluster operations (refused with CLUSTER_ERROR) but
// not data I/O; the session surviving the outage means nothing changed, its expiry means this
// node has left: sheep is told (`rejoining`) and the node joins again as a new member.
import { createRequire } from 'node:module'
import os from 'node:os'
import { PendingTable } from '../../lib/async.js'
import { SdError, invariant } from '../../lib/errors.js'
import type { Logger } from '../../lib/log.js'
import { SD_RES_CLUSTER_ERROR } from '../../lib/proto.js'
import { type SdNode, addrToText, nodeDescription } from '../../lib/structs.js'
import type { ClusterDriver, ClusterHandlers } from './driver.js'
import {
  type Member,
  type MemberView,
  type MembershipEvent,
  type MembershipState,
  answerToJoin,
  applyEvent,
  blockToRun,
  deadInstances,
  deliverEffects,
  emptyMembership,
  forgetApplied,
  hasJoined,
  isMaster,
  joinToAnswer,
} from './membership.js'
import { packMessage, unpackMessage } from './message.js'

/** Cluster id (znode path prefix) when the option names none. */
export const ZK_DEFAULT_CLUSTER_ID = '/sheepdog'
/** ZooKeeper session timeout when the option has no `timeout=` (the original's default). */
export const ZK_DEFAULT_SESSION_TIMEOUT_MS = 30_000
export const ZK_MIN_SESSION_TIMEOUT_MS = 1_000
export const ZK_MAX_SESSION_TIMEOUT_MS = 600_000
/** Port of a server given without one (ZooKeeper's client port). */
export const ZK_DEFAULT_PORT = 2181
/** Most servers accepted in one connection string. */
export const ZK_MAX_SERVERS = 64
/** How long a starting sheep tries to reach ZooKeeper before it gives up with an error. */
export const ZK_START_CONNECT_TIMEOUT_MS = 20_000
/** Pause between reconnection attempts of the client (randomised up to this). */
export const ZK_SPIN_DELAY_MS = 500
/** A ZooKeeper request gets at least this long, else two thirds of the session timeout. */
export const ZK_MIN_REQUEST_TIMEOUT_MS = 1_000
/** Bounds of the probe interval (a sixth of the session timeout): how often the server is asked. */
export const ZK_MIN_PROBE_INTERVAL_MS = 100
export const ZK_MAX_PROBE_INTERVAL_MS = 2_000
/** A pass over the queue runs at least this often even when no watch fired. */
export const ZK_IDLE_PASS_INTERVAL_MS = 1_000
/** Bounds of the wait for the answer to a session request (a sixth of the session timeout). */
export const ZK_MIN_HANDSHAKE_TIMEOUT_MS = 1_000
export const ZK_MAX_HANDSHAKE_TIMEOUT_MS = 5_000
/** Most events read and applied in one pass. */
export const ZK_READ_BATCH_EVENTS = 256
/** The master writes a snapshot (and then deletes older events) after this many events. */
export const ZK_SNAPSHOT_EVERY_EVENTS = 256
/** ... but not more often than this. */
export const ZK_COMPACT_MIN_INTERVAL_MS = 1_000
/** Most old events deleted in one compaction pass. */
export const ZK_COMPACT_MAX_DELETES = 1_024
/** A reader publishes its position after this many events or this long, whichever comes first. */
export const ZK_POS_PUBLISH_EVENTS = 64
export const ZK_POS_PUBLISH_INTERVAL_MS = 1_000
/** Largest event or snapshot (ZooKeeper's jute.maxbuffer is 1 MiB for the whole packet). */
export const ZK_MAX_EVENT_BYTES = 1_000_000
/** Attempts to publish an event across connection losses (each waits for the reconnection). */
export const ZK_PUSH_ATTEMPTS = 5
/** Attempts to release the cluster-wide block; after that the session is given up (which releases it). */
export const ZK_UNBLOCK_PUSH_ATTEMPTS = 20
/** How long `leave` waits for its LEAVE event and for the session to close. */
export const ZK_LEAVE_TIMEOUT_MS = 2_000
export const ZK_CLOSE_WAIT_MS = 1_000
/** Pause between attempts to start a new session after the old one expired. */
export const ZK_REJOIN_RETRY_MS = 1_000
/**
 * Margin added to the session timeout for the master's answer to a join (a previous session of
 * the same node must expire first).
 */
export const ZK_JOIN_ANSWER_MARGIN_MS = 20_000
/** Warn when ZooKeeper's sequence counter of the queue (signed 32 bits) gets this close to its end. */
const ZK_SEQ_WARN_AT = 2 ** 31 - 2 ** 24
/** Step of the loops that wait for a connection. */
const ZK_WAIT_STEP_MS = 20
/** Version of the records this driver writes into ZooKeeper. */
const ZK_FORMAT_VERSION = 1
/** Sequence number of "nothing applied yet" (ZooKeeper's first sequence number is 0). */
const NO_SEQ = -1
/** ZooKeeper appends a 10-digit sequence number to sequential znode names. */
const SEQ_DIGITS = 10

// ---- option ------------------------------------------------------------------------------

export interface ZookeeperConfig {
  /** `host:port` of each server. */
  servers: string[]
  /** Absolute znode path under which this cluster lives. */
  clusterId: string
  sessionTimeoutMs: number
}

/**
 * `HOST[:PORT][,HOST[:PORT]...][/CLUSTER_ID][,timeout=MS]` → the configuration, or the reason
 * it is invalid.
 */
export function parseZookeeperOption(option: string): ZookeeperConfig | string {
  if (option === '') return 'The zookeeper driver needs the servers: zookeeper:HOST:PORT[,HOST:PORT...][/CLUSTER_ID][,timeout=MS]'
  const servers: string[] = []
  let clusterId: string | undefined
  let sessionTimeoutMs = ZK_DEFAULT_SESSION_TIMEOUT_MS
  for (const part of option.split(',')) {
    if (part.startsWith('timeout=')) {
      const text = part.slice('timeout='.length)
      const ms = Number(text)
      if (!/^\d+$/.test(text) || ms < ZK_MIN_SESSION_TIMEOUT_MS || ms > ZK_MAX_SESSION_TIMEOUT_MS) {
        return `Invalid zookeeper session timeout '${text}': milliseconds between ${ZK_MIN_SESSION_TIMEOUT_MS} and ${ZK_MAX_SESSION_TIMEOUT_MS}`
      }
      sessionTimeoutMs = ms
      continue
    }
    let hostPort = part
    const slash = part.indexOf('/')
    if (slash >= 0) {
      if (clusterId !== undefined) return `Invalid zookeeper option '${option}': more than one cluster id`
      clusterId = part.slice(slash)
      hostPort = part.slice(0, slash)
    }
    if (hostPort.includes('[') || hostPort.split(':').length > 2)
      return `Invalid zookeeper server '${hostPort}': IPv6 literals are not supported, use a host name`
    const [host, portText] = hostPort.split(':')
    if (!host || !/^[A-Za-z0-9._-]+$/.test(host)) return `Invalid zookeeper server '${hostPort}'`
    const port = portText === undefined ? ZK_DEFAULT_PORT : Number(portText)
    if (portText !== undefined && (!/^\d+$/.test(portText) || port < 1 || port > 65535)) return `Invalid zookeeper server port in '${hostPort}'`
    servers.push(`${host}:${port}`)
  }
  if (servers.length === 0) return `Invalid zookeeper option '${option}': no server`
  if (servers.length > ZK_MAX_SERVERS) return `Invalid zookeeper option: more than ${ZK_MAX_SERVERS} servers`
  clusterId ??= ZK_DEFAULT_CLUSTER_ID
  const parts = clusterId.split('/').slice(1)
  if (parts.length === 0 || parts.some((p) => p === '' || p === '.' || p === '..' || hasControlCharacter(p))) {
    return `Invalid zookeeper cluster id '${clusterId}'`
  }
  return { servers, clusterId, sessionTimeoutMs }
}

/** The address a node advertises by default: the bind address if specific, else the host's first non-loopback IPv4. */
export function defaultNodeAddress(bindAddr: string | undefined): string | undefined {
  if (bindAddr && bindAddr !== '0.0.0.0' && bindAddr !== '::') return bindAddr
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return undefined
}

// ---- the client library (node-zookeeper-client has no type declarations) -----------------

interface ZkStat {
  version: number
}
interface ZkClientState {
  name: string
  code: number
}
type ZkCallback<T> = (error: ZkLibError | null, result: T, stat?: ZkStat) => void
interface ZkLibError extends Error {
  code: number
}
interface ZkClient {
  connect(): void
  close(): void
  getState(): ZkClientState
  getSessionId(): Buffer
  getSessionTimeout(): number
  on(event: 'state', listener: (state: ZkClientState) => void): void
  create(path: string, data: Buffer, mode: number, cb: ZkCallback<string>): void
  remove(path: string, version: number, cb: ZkCallback<void>): void
  exists(path: string, cb: ZkCallback<ZkStat | null>): void
  getChildren(path: string, watcher: (() => void) | undefined, cb: ZkCallback<string[]>): void
  getData(path: string, cb: ZkCallback<Buffer>): void
  setData(path: string, data: Buffer, version: number, cb: ZkCallback<ZkStat>): void
  mkdirp(path: string, cb: ZkCallback<string>): void
}
interface ZkLibrary {
  createClient(connectionString: string, options: { sessionTimeout: number; spinDelay: number; retries: number }): ZkClient
  CreateMode: { PERSISTENT: number; EPHEMERAL: number; PERSISTENT_SEQUENTIAL: number }
  State: { SYNC_CONNECTED: ZkClientState; DISCONNECTED: ZkClientState; EXPIRED: ZkClientState; AUTH_FAILED: ZkClientState }
  Exception: { NO_NODE: number; NODE_EXISTS: number; BAD_VERSION: number; CONNECTION_LOSS: number; SESSION_EXPIRED: number; OPERATION_TIMEOUT: number }
}

let library: ZkLibrary | undefined
function zkLibrary(): ZkLibrary {
  library ??= createRequire(import.meta.url)('node-zookeeper-client') as ZkLibrary
  return library
}

/** A failed ZooKeeper request: the library's code, or OPERATION_TIMEOUT when our deadline passed. */
class ZkRequestError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message)
    this.name = 'ZkRequestError'
  }
}

interface ClientSocket {
  destroyed: boolean
  connecting: boolean
  destroy(): void
}

/**
 * The client's current socket. The library has no read timeout and no handshake timeout, so
 * the driver destroys a socket whose server stopped answering; the library then reconnects.
 */
function clientSocket(client: ZkClient): ClientSocket | undefined {
  const internals = client as unknown as { connectionManager?: { socket?: ClientSocket } }
  return internals.connectionManager?.socket
}

// ---- events and state -----------------------------------------------------------------------

type ZkEvent = MembershipEvent

interface Snapshot {
  v: number
  seq: number
  state: MembershipState
}

/** `<anything>-<10 digits>` → the sequence number, else undefined. */
function seqOf(name: string): number | undefined {
  const digits = name.slice(-SEQ_DIGITS)
  if (name.length <= SEQ_DIGITS || name[name.length - SEQ_DIGITS - 1] !== '-' || !/^\d+$/.test(digits)) return undefined
  return Number(digits)
}

function nodeKey(node: SdNode): string {
  return `${addrToText(node.addr)}:${node.port}`
}

/** Everything tied to one ZooKeeper session; a new session (after expiry) starts from scratch. */
class Session {
  instance = ''
  /** This instance's view of the log; its `me` is set once the session id is known. */
  view: MemberView = { state: emptyMembership(), me: '' }
  lastSeq = NO_SEQ
  /** Set up (snapshot read, join published): the event loop may run. */
  ready = false
  connected = false
  dead = false
  lastContactMs = Date.now()
  disconnectedSinceMs: number | undefined = Date.now()
  /** Instances whose member znode exists. */
  liveInstances = new Set<string>()
  /** Queue znodes of the last listing, in sequence order. */
  queueNames: Array<{ name: string; seq: number }> = []
  /** Joins this node answered as master, and dead instances it declared gone, until applied. */
  readonly answered = new Set<string>()
  readonly declared = new Set<string>()
  readonly startedBlocks = new Set<string>()
  publishedSeq = NO_SEQ
  publishedAtMs = 0
  lastCycleMs = 0
  warnedSeq = false
  /** The socket waiting for the server's answer to the session request, and since when. */
  handshake: { socket: ClientSocket; sinceMs: number } | undefined
  snapshotSeq = NO_SEQ
  lastCompactMs = 0
  pushCounter = 0
  /** Watchers are compared by identity by the library: one function per session and path. */
  readonly queueWatcher: () => void
  readonly memberWatcher: () => void

  constructor(
    readonly client: ZkClient,
    kick: () => void,
  ) {
    this.queueWatcher = () => kick()
    this.memberWatcher = () => kick()
  }

  readonly isLive = (m: Member): boolean => this.liveInstances.has(m.instance)

  /** This instance's own accept has been applied (and it was not declared gone): handlers run. */
  get reached(): boolean {
    return hasJoined(this.view)
  }
}

export interface ZookeeperDriverOptions extends ZookeeperConfig {
  log?: Logger
}

export class ZookeeperDriver implements ClusterDriver {
  readonly name = 'zookeeper'
  private readonly config: ZookeeperConfig
  private readonly log: Logger | undefined
  private readonly paths: { queue: string; member: string; pos: string; snapshot: string }
  private readonly requestTimeoutMs: number
  private readonly probeIntervalMs: number
  private readonly handshakeTimeoutMs: number
  private session: Session | undefined
  private self: SdNode | undefined
  private handlers: ClusterHandlers | undefined
  private joinPayload: Buffer = Buffer.alloc(0)
  private joined: { resolve: () => void; reject: (e: Error) => void } | undefined
  /** Notifies and blocks sent by this node, until applied. */
  private readonly waiters = new PendingTable<string>()
  private readonly works = new Map<string, () => Promise<Buffer>>()
  private probeTimer: NodeJS.Timeout | undefined
  private cycling = false
  private dirty = false
  private counter = 0
  private stopped = false

  constructor(options: ZookeeperDriverOptions) {
    this.config = { servers: options.servers, clusterId: options.clusterId, sessionTimeoutMs: options.sessionTimeoutMs }
    this.log = options.log
    const root = options.clusterId
    this.paths = { queue: `${root}/queue`, member: `${root}/member`, pos: `${root}/pos`, snapshot: `${root}/snapshot` }
    this.requestTimeoutMs = Math.max(ZK_MIN_REQUEST_TIMEOUT_MS, Math.round((options.sessionTimeoutMs * 2) / 3))
    this.probeIntervalMs = Math.min(ZK_MAX_PROBE_INTERVAL_MS, Math.max(ZK_MIN_PROBE_INTERVAL_MS, Math.round(options.sessionTimeoutMs / 6)))
    this.handshakeTimeoutMs = Math.min(ZK_MAX_HANDSHAKE_TIMEOUT_MS, Math.max(ZK_MIN_HANDSHAKE_TIMEOUT_MS, Math.round(options.sessionTimeoutMs / 6)))
  }

  /** True while connected to ZooKeeper as an accepted member: cluster operations can go through. */
  get available(): boolean {
    const s = this.session
    return s !== undefined && !s.dead && s.connected && s.reached
  }

  async join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void> {
    invariant(this.handlers === undefined, 'zookeeper driver joined twice')
    this.self = self
    this.handlers = handlers
    this.joinPayload = joinPayload
    const answerLimitMs = this.config.sessionTimeoutMs + ZK_JOIN_ANSWER_MARGIN_MS
    const joined = new Promise<void>((resolve, reject) => {
      this.joined = { resolve, reject }
    })
    this.probeTimer = setInterval(() => this.probe(), this.probeIntervalMs)
    this.probeTimer.unref()
    try {
      await this.startSession(ZK_START_CONNECT_TIMEOUT_MS)
    } catch (e) {
      clearInterval(this.probeTimer)
      throw e
    }
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer to the join from the cluster's master within ${answerLimitMs} ms (is another sheep using ${nodeKey(self)}?)`)),
        answerLimitMs,
      )
    })
    try {
      await Promise.race([joined, limit])
    } catch (e) {
      await this.leave()
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  notify(message: Buffer): Promise<void> {
    const { s, me } = this.usable()
    const token = this.newToken(s)
    return this.waitFor(token, () => this.push(s, { type: 'notify', sender: me, token, message }, ZK_PUSH_ATTEMPTS))
  }

  exclusive(work: () => Promise<Buffer>): Promise<void> {
    const { s, me } = this.usable()
    const token = this.newToken(s)
    this.works.set(token, work)
    return this.waitFor(token, () => this.push(s, { type: 'block', sender: me, token }, ZK_PUSH_ATTEMPTS)).finally(() => this.works.delete(token))
  }

  async leave(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.probeTimer)
    const s = this.session
    if (s && !s.dead && s.connected && s.reached) {
      const me = this.member(s)
      await withTimeout(this.push(s, { type: 'leave', member: me }, 1), ZK_LEAVE_TIMEOUT_MS).catch(() => undefined)
    }
    if (s) await this.closeSession(s)
    this.rejectAll(new SdError(SD_RES_CLUSTER_ERROR, 'this node is leaving the cluster'))
  }

  // ---- sessions ------------------------------------------------------------------------------

  /** Connects a new session, registers this node, loads the snapshot and publishes the join. */
  private async startSession(connectLimitMs: number): Promise<void> {
    const zk = zkLibrary()
    const client = zk.createClient(this.config.servers.join(','), { sessionTimeout: this.config.sessionTimeoutMs, spinDelay: ZK_SPIN_DELAY_MS, retries: 0 })
    const s = new Session(client, () => this.kick())
    this.session = s
    client.on('state', (state) => this.onClientState(s, state))
    client.connect()
    try {
      await this.waitConnected(s, connectLimitMs)
    } catch {
      await this.closeSession(s)
      throw new Error(`cannot reach ZooKeeper at ${this.config.servers.join(',')} within ${connectLimitMs} ms`)
    }
    try {
      await this.register(s)
    } catch (e) {
      await this.closeSession(s)
      throw e
    }
  }

  private async register(s: Session): Promise<void> {
    const zk = zkLibrary()
    s.instance = s.client.getSessionId().toString('hex')
    s.view = { state: emptyMembership(), me: s.instance }
    const negotiated = s.client.getSessionTimeout()
    if (negotiated !== this.config.sessionTimeoutMs) {
      this.log?.warn(`ZooKeeper session timeout is ${negotiated} ms (asked for ${this.config.sessionTimeoutMs} ms; the servers' tickTime bounds it)`)
    }
    for (const dir of [this.paths.queue, this.paths.member, this.paths.pos]) {
      await this.call<string>(s, 'mkdirp', (cb) => s.client.mkdirp(dir, cb))
    }
    const me = this.member(s)
    const key = nodeKey(me.node)
    const existing = await this.call<string[]>(s, 'getChildren', (cb) => s.client.getChildren(this.paths.member, undefined, cb))
    if (existing.some((name) => name.startsWith(`${key}@`))) {
      this.log?.warn(
        `a previous ZooKeeper session of ${key} is still registered: the join is answered once it expires (up to ${this.config.sessionTimeoutMs} ms)`,
      )
    }
    // the position first, at "nothing applied": the master deletes no event while it is there
    const posPath = `${this.paths.pos}/${key}@${s.instance}`
    await this.call<string>(s, 'create', (cb) => s.client.create(posPath, Buffer.from(String(NO_SEQ)), zk.CreateMode.EPHEMERAL, cb))
    await this.call<string>(s, 'create', (cb) =>
      s.client.create(`${this.paths.member}/${key}@${s.instance}`, packMessage(me.node), zk.CreateMode.EPHEMERAL, cb),
    )
    const snapshot = await this.readSnapshot(s)
    if (snapshot) {
      s.view = { state: snapshot.state, me: s.instance }
      s.lastSeq = snapshot.seq
      s.snapshotSeq = snapshot.seq
    }
    await this.call<ZkStat>(s, 'setData', (cb) => s.client.setData(posPath, Buffer.from(String(s.lastSeq)), -1, cb))
    s.publishedSeq = s.lastSeq
    s.publishedAtMs = Date.now()
    s.ready = true
    this.log?.info(`ZooKeeper session ${s.instance} (${this.config.servers.join(',')}${this.config.clusterId}): joining after event ${s.lastSeq}`)
    await this.push(s, { type: 'join', member: me, payload: this.joinPayload }, ZK_PUSH_ATTEMPTS)
    this.kick()
  }

  private async readSnapshot(s: Session): Promise<(Snapshot & { version: number }) | undefined> {
    let data: Buffer
    let stat: ZkStat | undefined
    try {
      ;[data, stat] = await this.callWithStat<Buffer>(s, 'getData', (cb) => s.client.getData(this.paths.snapshot, cb))
    } catch (e) {
      if (e instanceof ZkRequestError && e.code === zkLibrary().Exception.NO_NODE) return undefined
      throw e
    }
    const snapshot = unpackMessage<Snapshot>(data)
    if (snapshot.v !== ZK_FORMAT_VERSION)
      throw new Error(`${this.paths.snapshot} has format ${String(snapshot.v)}, not ${ZK_FORMAT_VERSION}: is ${this.config.clusterId} used by another program?`)
    return { ...snapshot, version: stat?.version ?? 0 }
  }

  private onClientState(s: Session, state: ZkClientState): void {
    if (s !== this.session || s.dead) return
    const zk = zkLibrary()
    if (state.code === zk.State.SYNC_CONNECTED.code) {
      const outageMs = s.disconnectedSinceMs === undefined ? 0 : Date.now() - s.disconnectedSinceMs
      s.connected = true
      s.lastContactMs = Date.now()
      s.disconnectedSinceMs = undefined
      if (s.ready) this.log?.info(`ZooKeeper connection is back after ${outageMs} ms; the session survived`)
      this.kick()
    } else if (state.code === zk.State.DISCONNECTED.code) {
      this.markDisconnected(s, 'the connection to ZooKeeper was lost')
    } else if (state.code === zk.State.EXPIRED.code) {
      this.onSessionLost(s, 'ZooKeeper session expired')
    } else if (state.code === zk.State.AUTH_FAILED.code) {
      this.markDisconnected(s, 'ZooKeeper refused the authentication')
    }
  }

  private markDisconnected(s: Session, why: string): void {
    if (s.connected && s.ready) this.log?.warn(`${why}: membership changes and cluster operations stop until it returns`)
    s.connected = false
    s.disconnectedSinceMs ??= Date.now()
  }

  /** The session is gone (expired, or given up): this node has left; it joins again as a new member. */
  private onSessionLost(s: Session, why: string): void {
    if (s.dead || s !== this.session) return
    void this.closeSession(s)
    if (this.stopped) return
    this.log?.warn(`${why}: this node has left the cluster; it rejoins as a new member`)
    this.rejectAll(new SdError(SD_RES_CLUSTER_ERROR, `${why}; the node is rejoining the cluster`))
    // sheep stops acting as a member until accepted again, and joins with what it knows now
    const fresh = this.handlers?.rejoining?.()
    if (fresh) this.joinPayload = fresh
    void this.rejoin()
  }

  private async rejoin(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.startSession(Number.POSITIVE_INFINITY)
        return
      } catch (e) {
        this.log?.warn(`rejoining through ZooKeeper failed: ${e instanceof Error ? e.message : String(e)}`)
        await sleep(ZK_REJOIN_RETRY_MS)
      }
    }
  }

  private async closeSession(s: Session): Promise<void> {
    if (s.dead) return
    s.dead = true
    s.connected = false
    const closed = new Promise<void>((resolve) => s.client.on('state', () => resolve()))
    s.client.close()
    await withTimeout(closed, ZK_CLOSE_WAIT_MS).catch(() => undefined)
  }

  /** Periodic: notice a server that stopped answering, give up on long outages, run the event loop. */
  private probe(): void {
    const s = this.session
    if (!s || s.dead || this.stopped) return
    const now = Date.now()
    const established = s.client.getState().code === zkLibrary().State.SYNC_CONNECTED.code
    if (s.connected && now - s.lastContactMs > this.requestTimeoutMs) {
      this.markDisconnected(s, `ZooKeeper has not answered for ${now - s.lastContactMs} ms`)
      clientSocket(s.client)?.destroy()
    } else if (established) {
      this.call<ZkStat | null>(s, 'exists', (cb) => s.client.exists(this.config.clusterId, cb)).catch(() => undefined)
    } else {
      this.watchHandshake(s, now)
    }
    if (s.disconnectedSinceMs !== undefined && now - s.disconnectedSinceMs > this.config.sessionTimeoutMs && this.waiters.size > 0) {
      this.rejectAll(
        new SdError(SD_RES_CLUSTER_ERROR, `ZooKeeper unreachable for ${now - s.disconnectedSinceMs} ms; the operation may still complete once it returns`),
      )
    }
    // watches drive the loop; an idle pass now and then publishes the position and retries duties
    if (now - s.lastCycleMs >= ZK_IDLE_PASS_INTERVAL_MS) this.kick()
  }

  /**
   * A server that accepts the TCP connection but never answers the session request (ZooKeeper
   * 3.8 does this to connections that arrive while it loads its data) would hold the client
   * forever: such a socket is dropped after the handshake limit and the client tries again.
   */
  private watchHandshake(s: Session, now: number): void {
    const socket = clientSocket(s.client)
    if (!socket || socket.destroyed || socket.connecting) {
      s.handshake = undefined
    } else if (s.handshake?.socket !== socket) {
      s.handshake = { socket, sinceMs: now }
    } else if (now - s.handshake.sinceMs > this.handshakeTimeoutMs) {
      this.log?.warn(`ZooKeeper did not answer the session request within ${this.handshakeTimeoutMs} ms: connecting again`)
      s.handshake = undefined
      socket.destroy()
    }
  }

  private async waitConnected(s: Session, limitMs: number): Promise<void> {
    const deadline = Date.now() + limitMs
    while (!s.connected) {
      if (s.dead || this.stopped) throw new ZkRequestError(zkLibrary().Exception.SESSION_EXPIRED, 'the ZooKeeper session is closed')
      if (Date.now() > deadline) throw new ZkRequestError(zkLibrary().Exception.CONNECTION_LOSS, `not connected to ZooKeeper within ${limitMs} ms`)
      await sleep(ZK_WAIT_STEP_MS)
    }
  }

  // ---- requests --------------------------------------------------------------------------------

  /** One request with our deadline; refused at once while disconnected (the library would queue it). */
  private call<T>(s: Session, what: string, start: (cb: ZkCallback<T>) => void): Promise<T> {
    return this.callWithStat(s, what, start).then(([result]) => result)
  }

  private callWithStat<T>(s: Session, what: string, start: (cb: ZkCallback<T>) => void): Promise<[T, ZkStat | undefined]> {
    const zk = zkLibrary()
    if (s.dead) return Promise.reject(new ZkRequestError(zk.Exception.SESSION_EXPIRED, `${what}: the ZooKeeper session is closed`))
    if (s.client.getState().code !== zk.State.SYNC_CONNECTED.code) {
      return Promise.reject(new ZkRequestError(zk.Exception.CONNECTION_LOSS, `${what}: not connected to ZooKeeper`))
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new ZkRequestError(zk.Exception.OPERATION_TIMEOUT, `${what}: no answer from ZooKeeper within ${this.requestTimeoutMs} ms`)),
        this.requestTimeoutMs,
      )
      start((error, result, stat) => {
        clearTimeout(timer)
        if (error) {
          if (error.code !== zk.Exception.CONNECTION_LOSS) s.lastContactMs = Date.now()
          reject(new ZkRequestError(error.code, `${what}: ${error.message}`))
        } else {
          s.lastContactMs = Date.now()
          resolve([result, stat])
        }
      })
    })
  }

  /**
   * Appends an event to the queue. After a lost connection the outcome is unknown: once
   * reconnected, the znode name (unique prefix) tells whether the create went through.
   */
  private async push(s: Session, event: ZkEvent, attempts: number): Promise<void> {
    const zk = zkLibrary()
    const data = packMessage({ v: ZK_FORMAT_VERSION, ...event })
    if (data.length > ZK_MAX_EVENT_BYTES) {
      throw new SdError(SD_RES_CLUSTER_ERROR, `a cluster event of ${data.length} bytes exceeds ZooKeeper's limit of ${ZK_MAX_EVENT_BYTES}`)
    }
    const prefix = `${s.instance}-${++s.pushCounter}-`
    for (let attempt = 1; ; attempt++) {
      try {
        await this.call<string>(s, 'create', (cb) => s.client.create(`${this.paths.queue}/${prefix}`, data, zk.CreateMode.PERSISTENT_SEQUENTIAL, cb))
        return
      } catch (e) {
        const lost = e instanceof ZkRequestError && (e.code === zk.Exception.CONNECTION_LOSS || e.code === zk.Exception.OPERATION_TIMEOUT)
        if (!lost || attempt >= attempts) throw e
        await this.waitConnected(s, this.config.sessionTimeoutMs)
        const names = await this.call<string[]>(s, 'getChildren', (cb) => s.client.getChildren(this.paths.queue, undefined, cb))
        if (names.some((n) => n.startsWith(prefix))) return
      }
    }
  }

  // ---- the event loop ----------------------------------------------------------------------

  private kick(): void {
    this.dirty = true
    if (!this.cycling) void this.runCycles()
  }

  private async runCycles(): Promise<void> {
    this.cycling = true
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false
        const s = this.session
        if (!s || s.dead || !s.ready || !s.connected) break
        try {
          await this.cycle(s)
        } catch (e) {
          if (!(e instanceof ZkRequestError)) throw e
          if (e.code === zkLibrary().Exception.SESSION_EXPIRED) this.onSessionLost(s, 'ZooKeeper session expired')
          break // connection trouble: the reconnection or the probe runs the loop again
        }
      }
    } catch (e) {
      // a broken invariant in applying events: crash rather than diverge from the other members
      setImmediate(() => {
        throw e
      })
    } finally {
      this.cycling = false
    }
  }

  /** Reads new events, refreshes liveness, applies the events, then does this node's duties. */
  private async cycle(s: Session): Promise<void> {
    const names = await this.call<string[]>(s, 'getChildren', (cb) => s.client.getChildren(this.paths.queue, s.queueWatcher, cb))
    const queue: Array<{ name: string; seq: number }> = []
    for (const name of names) {
      const seq = seqOf(name)
      // ZooKeeper numbers a parent's children with a signed 32-bit counter: past 2^31 they go negative
      invariant(
        seq !== undefined,
        `${this.paths.queue}/${name} has no sequence number (ZooKeeper's counter is exhausted after 2^31 events: restart the cluster under a new cluster id)`,
      )
      queue.push({ name, seq })
    }
    if (queue.length > 0 && queue[queue.length - 1]!.seq > ZK_SEQ_WARN_AT && !s.warnedSeq) {
      s.warnedSeq = true
      this.log?.warn(
        `${this.paths.queue} is at event ${queue[queue.length - 1]!.seq} of 2^31: move the cluster to a new cluster id before ZooKeeper's counter runs out`,
      )
    }
    queue.sort((a, b) => a.seq - b.seq)
    s.queueNames = queue
    const fresh = queue.filter((q) => q.seq > s.lastSeq)
    const batch = fresh.slice(0, ZK_READ_BATCH_EVENTS)
    if (fresh.length > batch.length) this.dirty = true
    let datas: Buffer[]
    try {
      datas = await Promise.all(batch.map((q) => this.call<Buffer>(s, 'getData', (cb) => s.client.getData(`${this.paths.queue}/${q.name}`, cb))))
    } catch (e) {
      if (e instanceof ZkRequestError && e.code === zkLibrary().Exception.NO_NODE) {
        // an event this node had not read was deleted: it can no longer follow the log
        this.log?.error('an unread cluster event was deleted from ZooKeeper: leaving and rejoining')
        this.onSessionLost(s, 'lost track of the cluster event queue')
        return
      }
      throw e
    }
    // liveness after the events: every member znode created before an event we read is seen
    const members = await this.call<string[]>(s, 'getChildren', (cb) => s.client.getChildren(this.paths.member, s.memberWatcher, cb))
    s.liveInstances = new Set(members.map((n) => n.slice(n.lastIndexOf('@') + 1)))
    for (let i = 0; i < batch.length; i++) {
      if (s.dead || s !== this.session) return
      const event = unpackMessage<ZkEvent & { v: number }>(datas[i]!)
      invariant(event.v === ZK_FORMAT_VERSION, `cluster event ${batch[i]!.name} has format ${String(event.v)}`)
      invariant(batch[i]!.seq > s.lastSeq, 'cluster events applied out of order')
      s.lastSeq = batch[i]!.seq
      this.apply(s, event)
    }
    if (s.dead || s !== this.session) return
    s.lastCycleMs = Date.now()
    this.startBlockedWork(s)
    // duties that fail for want of a connection are retried by a later pass
    if (isMaster(s.view, s.isLive)) await this.duty(s, 'master duties', () => this.masterDuties(s))
    await this.duty(s, 'publishing the queue position', () => this.publishPosition(s))
  }

  private async duty(s: Session, what: string, run: () => Promise<void>): Promise<void> {
    try {
      await run()
    } catch (e) {
      if (!(e instanceof ZkRequestError) || e.code === zkLibrary().Exception.SESSION_EXPIRED) throw e
      this.log?.debug(`${what} postponed: ${e.message}`)
    }
  }

  private member(s: Session): Member {
    invariant(this.self !== undefined, 'zookeeper driver used before join')
    return { node: this.self, instance: s.instance }
  }

  private apply(s: Session, event: ZkEvent): void {
    const { view, effects } = applyEvent(s.view, event)
    s.view = view
    if (event.type === 'unblock') s.startedBlocks.delete(event.token)
    deliverEffects(effects, this.handlers!, {
      joined: (members) => {
        this.log?.info(`joined through ZooKeeper as instance ${s.instance}; ${members.length} member(s)`)
        this.joined?.resolve()
        this.joined = undefined
      },
      settled: (token) => this.waiters.settle(token),
      // our own leave: either we are stopping, or the master found our session gone (even if
      // the client has not said so yet)
      removed: () => {
        if (!this.stopped) this.onSessionLost(s, 'this node was declared gone')
      },
      // join() fails with the reason, and leaves
      refused: (reason) => {
        this.joined?.reject(new Error(reason))
        this.joined = undefined
      },
    })
  }

  // ---- master and member duties ----------------------------------------------------------

  private async masterDuties(s: Session): Promise<void> {
    const { state } = s.view
    // dead members and joiners are declared gone; joins wait until the member list is all alive
    for (const m of deadInstances(state, s.isLive)) {
      if (s.declared.has(m.instance)) continue
      s.declared.add(m.instance)
      this.log?.info(`${nodeDescription(m.node)} (instance ${m.instance}) has no ZooKeeper session: declaring it gone`)
      await this.push(s, { type: 'leave', member: m }, ZK_PUSH_ATTEMPTS).catch((e: unknown) => {
        s.declared.delete(m.instance)
        throw e
      })
    }
    forgetApplied(s.declared, [...state.members, ...state.joining])
    forgetApplied(s.answered, state.joining)
    if (s.reached) await this.compact(s)
    // a format still being applied here: answered by a later pass, with its result
    if (this.handlers?.busy?.()) return
    const j = joinToAnswer(s.view, s.isLive, s.answered)
    if (!j) return
    s.answered.add(j.instance)
    await this.push(s, answerToJoin(j, this.handlers!), ZK_PUSH_ATTEMPTS).catch((e: unknown) => {
      s.answered.delete(j.instance)
      throw e
    })
  }

  /**
   * Writes a snapshot of the state as of the last applied event (never replacing a newer one),
   * then deletes the events every reader has applied and the snapshot covers.
   */
  private async compact(s: Session): Promise<void> {
    const now = Date.now()
    if (s.lastSeq - s.snapshotSeq < ZK_SNAPSHOT_EVERY_EVENTS || now - s.lastCompactMs < ZK_COMPACT_MIN_INTERVAL_MS) return
    s.lastCompactMs = now
    const zk = zkLibrary()
    const seq = s.lastSeq
    const data = packMessage({ v: ZK_FORMAT_VERSION, seq, state: s.view.state } satisfies Snapshot)
    if (data.length > ZK_MAX_EVENT_BYTES) {
      this.log?.warn(`the cluster state snapshot (${data.length} bytes) exceeds ${ZK_MAX_EVENT_BYTES} bytes: old events are kept`)
      return
    }
    const current = await this.readSnapshot(s)
    try {
      if (!current) await this.call<string>(s, 'create', (cb) => s.client.create(this.paths.snapshot, data, zk.CreateMode.PERSISTENT, cb))
      else if (current.seq < seq) await this.call<ZkStat>(s, 'setData', (cb) => s.client.setData(this.paths.snapshot, data, current.version, cb))
    } catch (e) {
      // another master wrote one meanwhile: next time
      if (e instanceof ZkRequestError && (e.code === zk.Exception.NODE_EXISTS || e.code === zk.Exception.BAD_VERSION)) return
      throw e
    }
    const covered = Math.max(seq, current?.seq ?? NO_SEQ)
    s.snapshotSeq = covered
    // every reader's position, read after the snapshot write: a joiner registered later reads this snapshot or a newer one
    const readers = await this.call<string[]>(s, 'getChildren', (cb) => s.client.getChildren(this.paths.pos, undefined, cb))
    let floor = covered
    for (const name of readers) {
      let text: string
      try {
        text = (await this.call<Buffer>(s, 'getData', (cb) => s.client.getData(`${this.paths.pos}/${name}`, cb))).toString()
      } catch (e) {
        if (e instanceof ZkRequestError && e.code === zk.Exception.NO_NODE) continue // that reader is gone
        throw e
      }
      const pos = Number(text)
      if (!Number.isInteger(pos)) return
      floor = Math.min(floor, pos)
    }
    const old = s.queueNames.filter((q) => q.seq <= floor).slice(0, ZK_COMPACT_MAX_DELETES)
    await Promise.all(
      old.map((q) =>
        this.call<void>(s, 'remove', (cb) => s.client.remove(`${this.paths.queue}/${q.name}`, -1, cb)).catch((e: unknown) => {
          if (!(e instanceof ZkRequestError && e.code === zk.Exception.NO_NODE)) throw e
        }),
      ),
    )
    if (old.length > 0) this.log?.debug(`deleted ${old.length} cluster event(s) up to ${floor} from ZooKeeper`)
  }

  /** Tells the master how far this node has read (events up to there may be deleted). */
  private async publishPosition(s: Session): Promise<void> {
    if (s.lastSeq === s.publishedSeq) return
    const now = Date.now()
    if (s.lastSeq - s.publishedSeq < ZK_POS_PUBLISH_EVENTS && now - s.publishedAtMs < ZK_POS_PUBLISH_INTERVAL_MS) return
    const seq = s.lastSeq
    await this.call<ZkStat>(s, 'setData', (cb) => s.client.setData(`${this.paths.pos}/${nodeKey(this.self!)}@${s.instance}`, Buffer.from(String(seq)), -1, cb))
    s.publishedSeq = seq
    s.publishedAtMs = now
  }

  /** Runs this node's exclusive work when its block reaches the head of the queue. */
  private startBlockedWork(s: Session): void {
    const head = blockToRun(s.view)
    if (!head || s.startedBlocks.has(head.token)) return
    s.startedBlocks.add(head.token)
    const work = this.works.get(head.token)
    this.works.delete(head.token)
    const release = (message: Buffer) => this.pushUnblock(s, { type: 'unblock', sender: head.sender, token: head.token, message })
    if (!work) {
      // the caller gave up (outage) or the work is unknown: release the block at once
      void release(Buffer.alloc(0))
      return
    }
    work().then(
      (message) => release(message),
      (err: unknown) => {
        // release the block with no message so others proceed; the caller sees the error
        this.waiters.fail(head.token, err)
        return release(Buffer.alloc(0))
      },
    )
  }

  /** The block must be released: retried across outages; given up only with the session (which releases it). */
  private async pushUnblock(s: Session, event: ZkEvent): Promise<void> {
    try {
      await this.push(s, event, ZK_UNBLOCK_PUSH_ATTEMPTS)
    } catch (e) {
      if (s.dead) return
      const why = e instanceof SdError && e.code === SD_RES_CLUSTER_ERROR ? e.message : String(e)
      this.log?.error(`cannot release the cluster-wide block: ${why}`)
      if (e instanceof SdError) {
        // too large a result: release with none; the caller gets the error
        if (event.type === 'unblock') this.waiters.fail(event.token, e)
        await this.pushUnblock(s, { ...event, message: Buffer.alloc(0) } as ZkEvent)
        return
      }
      this.onSessionLost(s, 'could not release the cluster-wide block')
    }
  }

  // ---- waiters -------------------------------------------------------------------------------

  /** The session for a cluster operation, or a CLUSTER_ERROR saying why there is none. */
  private usable(): { s: Session; me: Member } {
    const s = this.session
    if (this.stopped) throw new SdError(SD_RES_CLUSTER_ERROR, 'this node is leaving the cluster')
    if (!s || s.dead || !s.reached) throw new SdError(SD_RES_CLUSTER_ERROR, 'this node is (re)joining the cluster through ZooKeeper')
    if (!s.connected) throw new SdError(SD_RES_CLUSTER_ERROR, 'ZooKeeper is unreachable: cluster operations are refused until it returns')
    return { s, me: this.member(s) }
  }

  private newToken(s: Session): string {
    return `${s.instance}:${++this.counter}`
  }

  private waitFor(token: string, send: () => Promise<void>): Promise<void> {
    const applied = this.waiters.wait(token)
    send().then(
      () => this.kick(),
      (e: unknown) => {
        const why = e instanceof Error ? e.message : String(e)
        this.waiters.fail(token, e instanceof SdError ? e : new SdError(SD_RES_CLUSTER_ERROR, `cannot publish the cluster event (${why})`))
      },
    )
    return applied
  }

  private rejectAll(error: SdError): void {
    this.works.clear()
    this.waiters.failAll(error)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
  })
  return Promise.race([p, limit]).finally(() => clearTimeout(timer))
}

/** Whether `text` has a control character (U+0000–U+001F, U+007F), which ZooKeeper paths must not. */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}
