// Recovery (behaviour.md §7, docs/recovery.md): after the epoch changes, every data-holding node
// moves the objects it no longer holds to its stale area (named with the last epoch it held
// them), learns which objects exist anywhere, and fetches those it now holds but lacks — walking
// back through the epoch history, from the holders of each earlier epoch, a holder's stale copy
// counting only for exactly the epoch it is named with; each object is copied in pieces no
// bigger than one request and appears only once complete (object-copy.ts). Requests for objects
// not yet recovered are parked and the object is recovered at once, out of order. A newer epoch
// supersedes a running recovery. When every member has finished an epoch, stale copies are
// dropped — never while an object could not be recovered.
import { type Deferred, deferred } from '../lib/async.js'
import { REQ_OBJ } from '../lib/codec.js'
import { ecPolicyOf, erasureCoder } from '../lib/ec/codec.js'
import { isDataObj, oidOfKey, oidToVid, stripIndexOfKey, stripKey } from '../lib/oid.js'
import {
  OBJECT_CHUNK_BYTES,
  SD_CLUSTER_FLAG_AVOID_DISKFULL,
  SD_FLAG_CMD_RECOVERY,
  SD_OP_COMPLETE_RECOVERY,
  SD_OP_GET_OBJ_LIST,
  SD_RES_BUFFER_SMALL,
  SD_RES_EIO,
  SD_RES_NEW_NODE_VER,
  SD_RES_NO_OBJ,
  SD_RES_OLD_NODE_VER,
  SD_RES_SUCCESS,
  RECOVERY_STATE_NOTIFYING,
  RECOVERY_STATE_PREPARING,
  RECOVERY_STATE_RECOVERING,
} from '../lib/proto.js'
import { HashRing } from '../lib/ring.js'
import { encodeRequestHeader } from '../lib/codec.js'
import { type SdNode, encodeNode, nodeDescription, sameNode } from '../lib/structs.js'
import { copyObject, peerPieceReader, type PieceReader } from './object-copy.js'
import { PEER_EPOCH_WAIT_MS, storedSizeFor } from './peer.js'
import type { Sheep } from './sheep.js'

/** Objects recovered at once when no throttle is set. */
export const RECOVERY_PARALLEL_OBJECTS = 8
/** GET_OBJ_LIST starts with a buffer this big (the original's 4 MiB) and doubles on BUFFER_SMALL. */
export const RECOVERY_OBJ_LIST_INITIAL_BYTES = 4 * 1024 * 1024
export const RECOVERY_OBJ_LIST_MAX_BYTES = 256 * 1024 * 1024
/** Timeout of one recovery read (of one piece of an object) from a peer. */
export const RECOVERY_READ_TIMEOUT_MS = 60_000
/** Attempts at a member's object list before the run is marked incomplete. */
export const RECOVERY_OBJ_LIST_ATTEMPTS = 3
/** Rounds in which objects that could not be recovered are tried again, and the pause before each. */
export const RECOVERY_RETRY_ROUNDS = 5
export const RECOVERY_RETRY_DELAY_MS = 1_000

/** How the recovery of one object ended. */
type Outcome = 'done' | 'gone' | 'failed' | 'superseded'

export interface Throttle {
  maxExecCount: number
  intervalMs: number
}

type Parked = Deferred

export class Recovery {
  private run = 0
  running = false
  state = RECOVERY_STATE_PREPARING
  /** The epoch being recovered to. */
  epoch = 0
  nrFinished = 0
  nrTotal = 0
  /** Objects, and their bytes (full object size), recovered since sheep started: the metrics' rates. */
  recoveredObjects = 0
  recoveredBytes = 0
  throttle: Throttle | undefined
  private todo: bigint[] = []
  private next = 0
  private readonly parked = new Map<bigint, Parked>()
  private readonly inFlight = new Map<bigint, { run: number; promise: Promise<void> }>()
  private readonly ringCache = new Map<number, HashRing<SdNode>>()
  /** epoch → members that reported COMPLETE_RECOVERY for it. */
  private readonly completed = new Map<number, SdNode[]>()
  private resumeWaiters: Array<() => void> = []
  /** The store's moves into each epoch (stale area), one after another; peer ops wait for them. */
  private storeMoves: Promise<void> = Promise.resolve()
  /** Resolved when the running recovery has its work list (or is superseded or over). */
  private listBuilt = deferred()
  /** Objects of the running run that could not be recovered yet (tried again, then reported). */
  private failed = new Set<bigint>()

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
    this.listBuilt.resolve()
    this.listBuilt = deferred()
    // what this node no longer holds goes to the stale area, named with the last epoch it held
    // it: the previous one when the epoch was lifted, else this one (e.g. fewer copies)
    const ring = this.sheep.ring
    const label = Math.max(lifted ? this.epoch - 1 : this.epoch, 1)
    this.moveStore(`epoch ${this.epoch}`, async () => {
      const store = this.sheep.store
      // creates of the epoch before that are still under way count: their objects move too
      await store.mutationsSettled()
      const unheld = store.list().filter((key) => !this.holdsKey(ring, key))
      // every move is tried even when one fails: each one left undone is a copy that must not stay live
      const failed = (await Promise.allSettled(unheld.map((oid) => store.moveToStale(oid, label)))).filter((r) => r.status === 'rejected')
      if (failed.length > 0) throw new Error(`${failed.length} of ${unheld.length} object(s) not moved: ${String((failed[0] as PromiseRejectedResult).reason)}`)
    })
    void this.execute(run).catch((e: unknown) => {
      this.sheep.log.error(`recovery of epoch ${this.epoch} failed: ${e instanceof Error ? e.stack : String(e)}`)
      if (run === this.run) this.finish()
    })
  }

  /**
   * Queues a change of the local store that an epoch change brings (stale moves), after those
   * queued before it. Moves are never abandoned half-way, even when a newer epoch comes: a live
   * object this node does not hold would otherwise be taken for a current replica later.
   */
  moveStore(what: string, move: () => Promise<void>): void {
    this.storeMoves = this.storeMoves.then(move).catch((e: unknown) => {
      this.sheep.log.error(`moving objects to the stale area (${what}) failed: ${e instanceof Error ? e.stack : String(e)}`)
    })
  }

  /** Resolves once the store has made every move queued so far (peer ops of the current epoch wait for it). */
  storeSettled(): Promise<void> {
    return this.storeMoves
  }

  /**
   * Parks a request for `oid` until it is recovered; resolves at once when nothing is pending.
   * While the work list is still being built, a request for an object this node holds but lacks
   * waits for the list (the object may be on it) instead of finding nothing.
   */
  async waitForObject(oid: bigint): Promise<void> {
    while (this.running && this.state === RECOVERY_STATE_PREPARING && !this.sheep.store.exists(oid) && this.holdsNow(oid)) {
      await this.listBuilt.promise
    }
    const p = this.parked.get(oid)
    if (!p) return
    void this.recoverNow(oid, this.run)
    return p.promise
  }

  private holdsNow(key: bigint): boolean {
    return this.holdsKey(this.sheep.ring, key)
  }

  /** Whether this node holds `key` on `ring`: a replica of the object, or exactly that strip of it. */
  private holdsKey(ring: HashRing<SdNode>, key: bigint): boolean {
    const holders = this.holders(ring, oidOfKey(key))
    const index = stripIndexOfKey(key)
    if (index === undefined) return holders.some((n) => this.sheep.isSelf(n))
    const holder = holders[index]
    return holder !== undefined && this.sheep.isSelf(holder)
  }

  /** What this node should store of `oid` on `ring` (its replica, or the strip of its place); undefined if nothing. */
  private localKey(ring: HashRing<SdNode>, oid: bigint): bigint | undefined {
    const holders = this.holders(ring, oid)
    const place = holders.findIndex((n) => this.sheep.isSelf(n))
    if (place < 0) return undefined
    return this.sheep.ecPolicyOf(oid) ? stripKey(oid, place) : oid
  }

  /** Called when the cluster-wide "disable recovery" flag is cleared. */
  resume(): void {
    for (const w of this.resumeWaiters.splice(0)) w()
  }

  private async execute(run: number): Promise<void> {
    const sheep = this.sheep
    const epoch = this.epoch
    sheep.log.info(`recovery of epoch ${epoch} starts`)
    // the finish line says how long it took (logs are how an admin times a rebalance)
    const startedAtMs = Date.now()
    try {
      await this.storeMoves
      if (run !== this.run) return
      // every object that exists anywhere (live or stale), then those this node should hold but lacks
      const all = new Set<bigint>()
      let listsComplete = true
      for (const node of sheep.members) {
        if (node.nrVnodes === 0) continue
        const list = await this.objectList(node, run)
        if (run !== this.run) return
        if (list) for (const oid of list) all.add(oid)
        else listsComplete = false
      }
      if (sheep.settings.flags & SD_CLUSTER_FLAG_AVOID_DISKFULL && listsComplete) {
        const overfull = nodesOverCapacity(
          all,
          sheep.members,
          (oid) => this.holders(sheep.ring, oid),
          (oid) => storedSizeFor(sheep, oid),
        )
        if (overfull.length > 0) return this.cancelForDiskfull(overfull)
      }
      // store keys: the replica, or the strip of this node's place, that it lacks
      const todo = [...all].flatMap((oid) => {
        const key = this.localKey(sheep.ring, oid)
        return key === undefined || sheep.store.exists(key) ? [] : [key]
      })
      todo.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      // requests for objects of a superseded run that are not in this one may go ahead
      const wanted = new Set(todo)
      for (const [oid, p] of this.parked)
        if (!wanted.has(oid)) {
          this.parked.delete(oid)
          p.resolve()
        }
      for (const oid of todo) if (!this.parked.has(oid)) this.parked.set(oid, deferred())
      this.todo = todo
      this.next = 0
      this.nrFinished = 0
      this.nrTotal = todo.length
      this.failed = new Set()
      this.state = RECOVERY_STATE_RECOVERING
      sheep.log.info(`recovery of epoch ${epoch}: ${todo.length} of ${all.size} object(s) to fetch`)
      this.listBuilt.resolve()
      // fetch them, a few at a time (or as the throttle allows); then what failed, again
      const workers = Array.from({ length: this.throttle ? 1 : RECOVERY_PARALLEL_OBJECTS }, () => this.worker(run))
      await Promise.all(workers)
      // an object still parked was not settled by this run (a peer answered that its epoch moved
      // on, and no newer epoch came here): it is tried again with the failed ones
      if (run === this.run) for (const oid of todo) if (this.parked.has(oid)) this.failed.add(oid)
      for (let round = 1; round <= RECOVERY_RETRY_ROUNDS && this.failed.size > 0 && run === this.run; round++) {
        await new Promise((r) => setTimeout(r, RECOVERY_RETRY_DELAY_MS))
        for (const oid of [...this.failed]) if (run === this.run) await this.recoverNow(oid, run)
      }
      if (run !== this.run) return
      this.state = RECOVERY_STATE_NOTIFYING
      const complete = listsComplete && this.failed.size === 0
      const tookMs = Date.now() - startedAtMs
      if (complete) sheep.log.info(`recovery of epoch ${epoch} finished: ${this.nrFinished} object(s) in ${tookMs} ms`)
      else {
        sheep.log.error(
          `recovery of epoch ${epoch} incomplete after ${tookMs} ms: ${this.nrFinished} object(s) recovered, ${this.failed.size} could not be` +
            `${listsComplete ? '' : ', object lists missing'}; stale copies are kept until a later epoch recovers them`,
        )
      }
      this.finish()
      if (complete) await this.notifyComplete(epoch)
    } finally {
      if (run === this.run) this.listBuilt.resolve()
    }
  }

  /**
   * `cluster format -F` (avoid disk full): a recovery that would fill a node past its capacity
   * does not start. Nothing is fetched and COMPLETE_RECOVERY is not sent, so the stale copies
   * (the data this recovery would have moved) stay until a later epoch, with more room, recovers.
   */
  private cancelForDiskfull(overfull: Array<{ node: SdNode; requiredBytes: bigint }>): void {
    const log = this.sheep.log
    for (const { node, requiredBytes } of overfull) {
      log.fatal(`node ${nodeDescription(node)} will cause disk full, stopping whole cluster (needs ${requiredBytes} bytes, has ${node.space})`)
    }
    log.fatal('canceling recovery because of disk full')
    log.fatal('please add a new node ASAP')
    this.state = RECOVERY_STATE_NOTIFYING
    this.finish()
  }

  private finish(): void {
    this.running = false
    for (const [oid, p] of this.parked) {
      this.parked.delete(oid)
      p.resolve()
    }
  }

  /**
   * Takes objects of run `run`'s work list one at a time. After every pause (recovery disabled,
   * the throttle) the run is checked again: a worker of a superseded run must not take objects
   * from the list of the run that replaced it — they would count as taken and never be recovered.
   */
  private async worker(run: number): Promise<void> {
    let windowStart = Date.now()
    let inWindow = 0
    for (;;) {
      // nothing left: done, even while recovery is disabled (a node with nothing to fetch finishes)
      if (run !== this.run || this.next >= this.todo.length) return
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
      if (run !== this.run || this.next >= this.todo.length) return
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
    const promise = this.recoverObject(oid, run)
      .catch((e: unknown): Outcome => {
        this.sheep.log.error(`recovery of ${oidText(oid)} failed: ${String(e)}`)
        return 'failed'
      })
      .then((outcome) => {
        if (this.inFlight.get(oid)?.promise === promise) this.inFlight.delete(oid)
        if (run !== this.run || outcome === 'superseded') return
        if (outcome === 'failed') this.failed.add(oid)
        else this.failed.delete(oid)
        if (outcome === 'done') {
          this.recoveredObjects++
          this.recoveredBytes += storedSizeFor(this.sheep, oidOfKey(oid))
        }
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

  /**
   * Recovers one object: walks back from the newest earlier epoch (or this one, when the epoch
   * was not lifted), asking that epoch's holders. A holder answers with its live copy, or with
   * a stale copy named with exactly that epoch; this node's own stale copy counts the same way.
   * Only when every holder that is still a member answered "no such object" does the walk go
   * on to an older epoch: a holder that could not be asked may have the newest copy, and an
   * older epoch's copy may miss writes, so the object is tried again later instead.
   */
  private async recoverObject(oid: bigint, run: number): Promise<Outcome> {
    const sheep = this.sheep
    if (sheep.store.exists(oid)) return 'done'
    if (stripIndexOfKey(oid) !== undefined) return this.recoverStrip(oid, run)
    const size = storedSizeFor(sheep, oid)
    for (let tgt = this.lifted ? this.epoch - 1 : this.epoch; tgt >= 1; tgt--) {
      if (run !== this.run) return 'superseded'
      const ring = await this.ringOf(tgt)
      if (!ring) {
        sheep.log.warn(`recovery: the node list of epoch ${tgt} is unknown; ${oidText(oid)} may come back older`)
        continue
      }
      const holders = this.holders(ring, oid)
      const mine = holders.findIndex((n) => sheep.isSelf(n))
      const order = mine >= 0 ? [holders[mine], ...holders.filter((_, i) => i !== mine)] : holders
      let unanswered = false
      for (const node of order) {
        const read = this.source(node, oid, tgt, run)
        if (!read) continue
        // a client may have created it meanwhile: keep the newer one
        const result = await copyObject(sheep.store, oid, size, read, { ifAbsent: true })
        if (result === SD_RES_SUCCESS) return 'done'
        if (run !== this.run || result === SD_RES_OLD_NODE_VER) return 'superseded'
        if (result !== SD_RES_NO_OBJ) unanswered = true
      }
      if (unanswered) return 'failed'
    }
    sheep.log.warn(`recovery: no node has ${oidText(oid)}`)
    return 'gone'
  }

  /**
   * Recovers strip `key` of an erasure-coded object (behaviour.md §7.5): the strip itself if a
   * holder of it in the epoch history still has it, else rebuilt from any D other strips. Both
   * are copied a piece at a time (a strip of a 2 GiB object is 1 GiB at 2:1): memory stays at
   * one piece per strip read.
   */
  private async recoverStrip(key: bigint, run: number): Promise<Outcome> {
    const sheep = this.sheep
    const oid = oidOfKey(key)
    const index = stripIndexOfKey(key) as number
    const policy = sheep.ecPolicyOf(oid)
    if (!policy) return 'gone'
    const size = storedSizeFor(sheep, oid)
    const store = async (read: PieceReader): Promise<Outcome> =>
      (await copyObject(sheep.store, key, size, read, { ifAbsent: true })) === SD_RES_SUCCESS ? 'done' : 'failed'
    const own = await this.findStrip(oid, index, size, run)
    if (own === 'superseded') return own
    if (typeof own === 'function') return store(own)
    const strips = new Map<number, PieceReader>()
    const unavailable: number[] = []
    const outcomes: string[] = [`${index}:${own}`]
    let allGone = own === 'gone'
    for (let j = 0; j < policy.d + policy.p && strips.size < policy.d; j++) {
      if (j === index) continue
      const strip = await this.findStrip(oid, j, size, run)
      if (strip === 'superseded') return strip
      outcomes.push(`${j}:${typeof strip === 'function' ? 'found' : strip}`)
      if (typeof strip === 'function') strips.set(j, strip)
      else if (strip === 'failed') {
        allGone = false
        unavailable.push(j)
      }
    }
    // Too few strips whose newest holder answered: as the original does, take strips from the
    // epochs before a lost holder (right unless a write reached that holder before it was lost,
    // as when nodes fail one after another before recovery ends), and say so.
    for (const j of unavailable) {
      if (strips.size >= policy.d) break
      const strip = await this.findStrip(oid, j, size, run, { pastLostHolders: true })
      if (strip === 'superseded') return strip
      if (typeof strip === 'function') {
        strips.set(j, strip)
        sheep.log.warn(`recovery: strip ${j} of ${oidText(oid)} taken from an epoch before its holder was lost`)
      }
    }
    if (strips.size < policy.d) {
      if (strips.size === 0 && allGone) {
        sheep.log.warn(`recovery: no node has ${oidText(oid)}`)
        return 'gone'
      }
      sheep.log.error(`recovery: strip ${index} of ${oidText(oid)} cannot be rebuilt: ${strips.size} of ${policy.d} strips found (${outcomes.join(' ')})`)
      return 'failed'
    }
    // the code works byte position by byte position across strips: the same range of D strips
    // rebuilds the same range of the lost one
    const coder = erasureCoder(policy)
    return store(async (offset, length) => {
      const pieces = new Map<number, Uint8Array>()
      for (const [j, read] of strips) {
        const piece = await read(offset, length)
        if (typeof piece === 'number') return piece
        if (piece.length !== length) return SD_RES_EIO
        pieces.set(j, piece)
      }
      const rebuilt = coder.rebuild(pieces, index)
      return Buffer.from(rebuilt.buffer, rebuilt.byteOffset, rebuilt.byteLength)
    })
  }

  /**
   * Strip `index` of `oid` as it last stood, as a reader of its pieces (its first piece already
   * read, so that finding it means it can be read): this node's live copy of it, else walking
   * back through the epochs. At an epoch with a holder for that strip, only that holder is
   * asked, and as for replicas the walk goes on to an older epoch only when it answered "no
   * such object" (it never got the strip then, so no write of that epoch changed it): an older
   * copy of a strip whose holder is lost may miss writes, and mixed with newer strips it would
   * decode to garbage. At an epoch with fewer zones than strips, where this strip had no holder,
   * every member of that epoch is asked (search_erasure_object). 'gone' when no epoch has it,
   * 'failed' when its holder could not be asked. `pastLostHolders`: go on past holders that
   * cannot be asked, as the original does.
   */
  private async findStrip(
    oid: bigint,
    index: number,
    size: number,
    run: number,
    opts: { pastLostHolders?: boolean } = {},
  ): Promise<PieceReader | 'gone' | 'failed' | 'superseded'> {
    const sheep = this.sheep
    const key = stripKey(oid, index)
    if (sheep.store.exists(key)) {
      const local = await probed((offset, length) => sheep.store.readAfterMutations(key, offset, length), size)
      if (typeof local === 'function') return local
    }
    for (let tgt = this.lifted ? this.epoch - 1 : this.epoch; tgt >= 1; tgt--) {
      if (run !== this.run) return 'superseded'
      const ring = await this.ringOf(tgt)
      if (!ring) continue
      const holder = this.holders(ring, oid)[index]
      const candidates = holder ? [holder] : ring.nodes.filter((n) => n.nrVnodes > 0)
      for (const node of candidates) {
        const read = this.source(node, key, tgt, run)
        if (!read) {
          if (holder && !opts.pastLostHolders) return 'failed'
          continue
        }
        const found = await probed(read, size)
        if (typeof found === 'function') return found
        if (run !== this.run || found === SD_RES_OLD_NODE_VER) return 'superseded'
        if (found !== SD_RES_NO_OBJ && holder && !opts.pastLostHolders) return 'failed'
      }
    }
    return opts.pastLostHolders ? 'failed' : 'gone'
  }

  /**
   * Where recovery of run `run` reads `oid` as it stood at epoch `tgt` on `node` (its live copy
   * or its stale copy of exactly `tgt`), piece by piece; undefined when `node` cannot be asked
   * (it is no longer a member). A superseded run stops between pieces instead of copying the
   * rest of a big object.
   */
  private source(node: SdNode, key: bigint, tgt: number, run: number): PieceReader | undefined {
    const sheep = this.sheep
    if (sheep.isSelf(node)) {
      if (!sheep.store.hasStale(key, tgt)) return () => Promise.resolve(SD_RES_NO_OBJ)
      return (offset, length) => sheep.store.readStale(key, tgt, offset, length)
    }
    if (!sheep.members.some((m) => sameNode(m, node))) return undefined
    const read = peerPieceReader(sheep, node, oidOfKey(key), {
      tgtEpoch: tgt,
      ecIndex: stripIndexOfKey(key) ?? 0,
      flags: SD_FLAG_CMD_RECOVERY,
      timeoutMs: RECOVERY_READ_TIMEOUT_MS,
    })
    return (offset, length) => (run === this.run ? read(offset, length) : Promise.resolve(SD_RES_OLD_NODE_VER))
  }

  /** Replica (or strip) holders of `oid` on `ring`: min(copies, zones) nodes, min(D+P, zones) for strips. */
  private holders(ring: HashRing<SdNode>, oid: bigint): SdNode[] {
    if (ring.isEmpty) return []
    const policy = this.sheep.ecPolicyOf(oid)
    return ring.replicasFor(oid, policy ? policy.d + policy.p : this.sheep.vdiCopies(oidToVid(oid)))
  }

  /** The ring of an earlier epoch, from the local epoch log or a member's (GET_EPOCH). */
  private async ringOf(epoch: number): Promise<HashRing<SdNode> | undefined> {
    const cached = this.ringCache.get(epoch)
    if (cached) return cached
    const nodes = (await this.sheep.group.epochLog(epoch))?.nodes
    if (!nodes) return undefined
    const ring = new HashRing<SdNode>(nodes)
    this.ringCache.set(epoch, ring)
    return ring
  }

  /** GET_OBJ_LIST of one member (its live and stale objects); undefined when it cannot be had. */
  private async objectList(node: SdNode, run: number): Promise<bigint[] | undefined> {
    const sheep = this.sheep
    if (sheep.isSelf(node)) {
      const own = await listForRecovery(sheep)
      return typeof own === 'number' ? undefined : own
    }
    const conn = sheep.peers.get(node)
    for (let attempt = 1; attempt <= RECOVERY_OBJ_LIST_ATTEMPTS && run === this.run; attempt++) {
      try {
        for (let size = RECOVERY_OBJ_LIST_INITIAL_BYTES; size <= RECOVERY_OBJ_LIST_MAX_BYTES; size *= 2) {
          // stamped with this epoch: the member lists only once it has reached it (see listForRecovery)
          const { rsp, data } = await conn.request({ opcode: SD_OP_GET_OBJ_LIST, epoch: this.epoch, readLength: size, timeoutMs: RECOVERY_READ_TIMEOUT_MS })
          if (rsp.result === SD_RES_BUFFER_SMALL) continue
          if (rsp.result !== SD_RES_SUCCESS) break
          const oids: bigint[] = []
          for (let at = 0; at + 8 <= data.length; at += 8) oids.push(data.readBigUInt64LE(at))
          return oids
        }
      } catch (e) {
        sheep.log.warn(`recovery: object list of ${nodeDescription(node)} failed: ${String(e)}`)
      }
      await new Promise((r) => setTimeout(r, RECOVERY_RETRY_DELAY_MS))
    }
    return undefined
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
      // fewer zones than some VDI's data strips: its objects cannot be read or rebuilt now, and
      // the stale strips are what a later epoch with enough zones will rebuild them from
      const maxData = Math.max(0, ...sheep.vdis.all().map((v) => (v.copyPolicy ? ecPolicyOf(v.copyPolicy).d : 0)))
      if (sheep.ring.nrZones < maxData) {
        sheep.log.info(`epoch ${epoch}: stale objects kept: ${sheep.ring.nrZones} zone(s) for ${maxData} data strips`)
        return
      }
      for (const e of [...this.completed.keys()]) if (e <= epoch) this.completed.delete(e)
      this.ringCache.clear()
      if (await this.purgeStale(() => sheep.epoch === epoch && !this.running)) sheep.log.info(`epoch ${epoch}: every node recovered; stale objects purged`)
    }
  }

  /**
   * Drops the stale area in the store's move order (after the moves queued before it, never
   * while one runs) if `stillWanted` holds when its turn comes: a newer epoch that began
   * meanwhile made stale copies its own recovery needs. Answers whether it purged.
   */
  purgeStale(stillWanted: () => boolean): Promise<boolean> {
    if (this.sheep.gateway) return Promise.resolve(false)
    let purged = false
    this.moveStore('purge', async () => {
      if (!stillWanted()) return
      await this.sheep.store.purgeStale()
      purged = true
    })
    return this.storeMoves.then(() => purged)
  }
}

/**
 * The nodes that could not store what a recovery would give them (the -F check): each data
 * object counts its full size once on every holder of it in the current ring; inodes and other
 * small objects are not counted (as the original counts). Nodes with no vnodes hold nothing.
 */
export function nodesOverCapacity(
  oids: Iterable<bigint>,
  members: readonly SdNode[],
  holdersOf: (oid: bigint) => SdNode[],
  sizeOf: (oid: bigint) => number,
): Array<{ node: SdNode; requiredBytes: bigint }> {
  const required = new Map<SdNode, bigint>()
  for (const oid of new Set(oids)) {
    if (!isDataObj(oid)) continue
    for (const holder of holdersOf(oid)) {
      const node = members.find((m) => sameNode(m, holder))
      if (node) required.set(node, (required.get(node) ?? 0n) + BigInt(sizeOf(oid)))
    }
  }
  return [...required].filter(([node, bytes]) => node.space < bytes).map(([node, requiredBytes]) => ({ node, requiredBytes }))
}

/**
 * `read` once its first piece (as copyObject asks for it) has been read: the piece is kept and
 * handed out for that first request instead of being read twice. A result code when the first
 * piece cannot be read.
 */
async function probed(read: PieceReader, size: number): Promise<PieceReader | number> {
  const length = Math.min(OBJECT_CHUNK_BYTES, size)
  const first = await read(0, length)
  if (typeof first === 'number') return first
  if (first.length !== length) return SD_RES_EIO
  let kept: Buffer | undefined = first
  return (offset, len) => {
    if (kept && offset === 0 && len === length) {
      const piece = kept
      kept = undefined
      return Promise.resolve(piece)
    }
    return read(offset, len)
  }
}

function oidText(oid: bigint): string {
  return oid.toString(16).padStart(16, '0')
}

/**
 * Every object this node has (a replica or a strip of it), live or stale, for a recovery of `epoch` (GET_OBJ_LIST): taken
 * once this node has reached that epoch — it accepts no more writes of older epochs — and the
 * moves and creates accepted before have finished. An object whose create was still under way
 * when the epoch changed would otherwise be missing from the list, never recovered by its new
 * holder, and dropped with the stale copies (a VDI created while a node joined vanished).
 */
export async function listForRecovery(sheep: Sheep, epoch = sheep.epoch): Promise<bigint[] | number> {
  if (((epoch - sheep.epoch) | 0) > 0 && !(await sheep.group.waitForEpoch(epoch, PEER_EPOCH_WAIT_MS))) return SD_RES_NEW_NODE_VER
  await sheep.recovery.storeSettled()
  await sheep.store.mutationsSettled()
  // objects, not store keys: a strip names its object (the original lists oids too)
  return [...new Set(sheep.store.list().concat(sheep.store.listStale()).map(oidOfKey))]
}
