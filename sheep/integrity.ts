// What a node does about objects its checksum layer (store/checksums.ts) finds corrupt, and the
// scrubber (issue 16, docs/integrity.md). A read that finds a corrupt replica here was answered
// SD_RES_EIO (the gateway read another replica); this module then rewrites the replica in the
// background from a good one — read-repair: another holder's copy of a replicated object (its
// own READ_PEER checks its checksums, so a bad copy never spreads), or for a strip of an
// erasure-coded object, a rebuild from D other strips. The scrubber walks this node's objects
// at a throttled rate: checked objects are verified whole, and objects without checksums
// (written by the original, or with checksums off) get them once the replicas' majority agrees
// with this copy — or this copy is rewritten from the majority's.
import { REQ_OBJ, RSP_HASH, rspVariant } from '../lib/codec.js'
import { erasureCoder } from '../lib/ec/codec.js'
import { keyFileName, oidOfKey, oidToVid, stripIndexOfKey, stripKey } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES, SD_OP_GET_HASH, SD_RES_EIO, SD_RES_SUCCESS, SD_SHEEP_PROTO_VER } from '../lib/proto.js'
import { type SdNode, nodeAddrText } from '../lib/structs.js'
import { type PieceReader, copyObject, peerPieceReader } from './object-copy.js'
import { storedSizeFor } from './peer.js'
import type { Sheep } from './sheep.js'
import type { ChecksumStore } from './store/checksums.js'

/** The scrubber's pace when neither `sheep --scrub rate=` nor the start request sets one. */
export const SCRUB_DEFAULT_RATE_MIB = 16
const MiB = 1024 * 1024
/** The longest pause between two objects of a scrub (so a stop is seen soon). */
const SCRUB_MAX_PAUSE_MS = 1_000
const HOUR_MS = 3_600_000
/** A key whose repair found no good copy is not tried again for this long. */
const REPAIR_BACKOFF_MS = 30_000
/** Failed keys remembered at most (the oldest are forgotten first). */
const REPAIR_FAILED_KEPT = 10_000

export interface ScrubStatus {
  running: boolean
  objectsDone: number
  objectsTotal: number
  bytesDone: number
  /** Objects found corrupt (verified against their checksums, or outvoted by the other replicas). */
  corrupt: number
  /** Of those, rewritten from a good copy. */
  repaired: number
  /** Objects without checksums that got them (their replicas agreed). */
  established: number
  /** Objects left without checksums (no majority among the replicas, or busy). */
  unverified: number
  startedMs: number
  finishedMs: number
  rateMiB: number
}

export interface IntegrityOptions {
  /** MiB/s a scrub reads at; 0: the default. */
  scrubRateMiB?: number
  /** Start a scrub every this many hours; 0: only when asked (dog node/cluster scrub start). */
  scrubEveryHours?: number
}

export class Integrity {
  /** Replicas rewritten after a mismatch (read-repair and scrub) and repairs that failed. */
  repaired = 0
  repairFailed = 0
  readonly scrub: ScrubStatus = emptyStatus(SCRUB_DEFAULT_RATE_MIB)
  private readonly repairing = new Map<bigint, Promise<boolean>>()
  /** Keys whose last repair found no good copy, and when (oldest first). */
  private readonly failedAt = new Map<bigint, number>()
  private stopAsked = false
  private readonly defaultRateMiB: number
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly sheep: Sheep,
    readonly checksums: ChecksumStore | undefined,
    opts: IntegrityOptions = {},
  ) {
    this.defaultRateMiB = opts.scrubRateMiB || SCRUB_DEFAULT_RATE_MIB
    this.scrub.rateMiB = this.defaultRateMiB
    if (checksums) checksums.onCorrupt = (key) => void this.repair(key, 'read-repair')
    if (opts.scrubEveryHours) {
      this.timer = setInterval(() => this.startScrub(), opts.scrubEveryHours * HOUR_MS)
      this.timer.unref()
    }
  }

  /** Mismatches the checksum layer found since start. */
  get mismatches(): number {
    return this.checksums?.mismatches ?? 0
  }

  close(): void {
    clearInterval(this.timer)
    this.stopAsked = true
  }

  // ---- repair ------------------------------------------------------------------------------

  /**
   * Rewrites this node's copy of `key` from a good one (once at a time per key). After a repair
   * that found no good copy, the key is left alone for REPAIR_BACKOFF_MS: the failed reads of
   * the other holders' bad copies made them try to repair theirs from this one, and without a
   * pause they would go on asking each other for ever.
   */
  repair(key: bigint, why: string): Promise<boolean> {
    const running = this.repairing.get(key)
    if (running) return running
    const failedAt = this.failedAt.get(key)
    if (failedAt !== undefined && Date.now() - failedAt < REPAIR_BACKOFF_MS) return Promise.resolve(false)
    this.failedAt.delete(key)
    const done = this.repairNow(key, why)
      .catch((e) => {
        this.sheep.log.error(`${why}: ${keyFileName(key)}: ${String(e)}`)
        return false
      })
      .then((ok) => {
        if (ok) this.repaired++
        else {
          this.repairFailed++
          if (this.failedAt.size >= REPAIR_FAILED_KEPT) this.failedAt.delete(this.failedAt.keys().next().value as bigint)
          this.failedAt.set(key, Date.now())
        }
        return ok
      })
      .finally(() => this.repairing.delete(key))
    this.repairing.set(key, done)
    return done
  }

  private async repairNow(key: bigint, why: string): Promise<boolean> {
    const sheep = this.sheep
    const checksums = this.checksums
    if (!checksums || sheep.gateway || sheep.ring.isEmpty) return false
    const oid = oidOfKey(key)
    const size = storedSizeFor(sheep, oid)
    const index = stripIndexOfKey(key)
    if (index !== undefined) return this.rebuildStrip(key, size, why)
    const holders = sheep.ring.replicasFor(oid, sheep.vdiCopies(oidToVid(oid)))
    // no longer ours (the epoch moved on): recovery and the stale area deal with it
    if (!holders.some((n) => sheep.isSelf(n))) return false
    const others = holders.filter((n) => !sheep.isSelf(n))
    for (const node of others) {
      const result = await checksums.replace(key, (store) => copyObject(store, key, size, peerPieceReader(sheep, node, oid)))
      if (result === SD_RES_SUCCESS) {
        sheep.log.warn(`${why}: ${keyFileName(key)} rewritten from ${nodeAddrText(node)}`)
        return true
      }
    }
    sheep.log.error(`${why}: ${keyFileName(key)} has no good copy on ${others.map(nodeAddrText).join(', ') || 'any other node'}; it stays unreadable here`)
    return false
  }

  /** Rebuilds strip `key` from D other strips of its object, read from their holders. */
  private async rebuildStrip(key: bigint, size: number, why: string): Promise<boolean> {
    const sheep = this.sheep
    const oid = oidOfKey(key)
    const index = stripIndexOfKey(key) as number
    const policy = sheep.ecPolicyOf(oid)
    if (!policy || !this.checksums) return false
    const holders = sheep.ring.replicasFor(oid, policy.d + policy.p)
    if (!holders[index] || !sheep.isSelf(holders[index] as SdNode)) return false
    const strips = new Map<number, Uint8Array>()
    for (let j = 0; j < holders.length && strips.size < policy.d; j++) {
      if (j === index) continue
      const node = holders[j] as SdNode
      const read: PieceReader = sheep.isSelf(node)
        ? (offset, length) => sheep.store.read(stripKey(oid, j), offset, length)
        : peerPieceReader(sheep, node, oid, { ecIndex: j })
      const strip = await readWhole(read, size)
      if (strip instanceof Buffer) strips.set(j, strip)
    }
    if (strips.size < policy.d) {
      sheep.log.error(`${why}: strip ${keyFileName(key)} cannot be rebuilt: ${strips.size} of ${policy.d} other strips readable`)
      return false
    }
    const rebuilt = Buffer.from(erasureCoder(policy).rebuild(strips, index))
    const result = await this.checksums.replace(key, (store) => copyObject(store, key, size, async (o, l) => rebuilt.subarray(o, o + l)))
    if (result !== SD_RES_SUCCESS) return false
    sheep.log.warn(`${why}: strip ${keyFileName(key)} rebuilt from ${strips.size} other strips`)
    return true
  }

  // ---- the scrubber ------------------------------------------------------------------------

  /** Starts a scrub of every object stored here (unless one runs); `rateMiB` 0: the node's default. */
  startScrub(rateMiB = 0): boolean {
    if (this.scrub.running || !this.checksums || this.sheep.gateway) return false
    Object.assign(this.scrub, emptyStatus(rateMiB || this.defaultRateMiB), { running: true, startedMs: Date.now() })
    this.stopAsked = false
    void this.runScrub().finally(() => {
      this.scrub.running = false
      this.scrub.finishedMs = Date.now()
    })
    return true
  }

  stopScrub(): void {
    this.stopAsked = true
  }

  private async runScrub(): Promise<void> {
    const sheep = this.sheep
    const keys = sheep.store.list()
    const status = this.scrub
    status.objectsTotal = keys.length
    sheep.log.info(`scrub: ${keys.length} object(s) at ${status.rateMiB} MiB/s`)
    for (const key of keys) {
      if (this.stopAsked) break
      try {
        status.bytesDone += await this.scrubOne(key)
      } catch (e) {
        sheep.log.error(`scrub: ${keyFileName(key)}: ${String(e)}`)
      }
      status.objectsDone++
      // throttle: never ahead of rate × time since the start
      const aheadMs = () => (status.bytesDone / (status.rateMiB * MiB)) * 1000 - (Date.now() - status.startedMs)
      while (!this.stopAsked && aheadMs() > 0) await sleep(Math.min(aheadMs(), SCRUB_MAX_PAUSE_MS))
    }
    sheep.log.info(
      `scrub ${this.stopAsked ? 'stopped' : 'done'}: ${status.objectsDone} of ${status.objectsTotal} object(s), ${status.corrupt} corrupt, ${status.repaired} repaired, ${status.established} given checksums, ${status.unverified} unverified`,
    )
  }

  /** Scrubs one object; answers the bytes it read. */
  private async scrubOne(key: bigint): Promise<number> {
    const sheep = this.sheep
    const checksums = this.checksums as ChecksumStore
    if (!sheep.store.exists(key)) return 0
    const size = storedSizeFor(sheep, oidOfKey(key))
    if (await checksums.hasChecksums(key)) {
      const verdict = await checksums.verify(key)
      if (verdict === 'corrupt') {
        this.scrub.corrupt++
        if (await this.repair(key, 'scrub')) this.scrub.repaired++
      }
      return size
    }
    await this.establish(key)
    return size
  }

  /**
   * An object without checksums: its replicas' SHA-1s are compared (GET_HASH); when the
   * majority has this copy's digest, its checksums are computed from it; when the majority has
   * another one, this copy is rewritten from a node that has it. A strip, or an object whose
   * other replicas are all missing, has nothing to be compared with: its bytes are taken as
   * they are.
   */
  private async establish(key: bigint): Promise<void> {
    const sheep = this.sheep
    const checksums = this.checksums as ChecksumStore
    const oid = oidOfKey(key)
    const status = this.scrub
    if (stripIndexOfKey(key) !== undefined) {
      if (await checksums.establish(key)) status.established++
      else status.unverified++
      return
    }
    const mine = await checksums.sha1(key)
    if (typeof mine === 'number') return
    const others = sheep.ring.replicasFor(oid, sheep.vdiCopies(oidToVid(oid))).filter((n) => !sheep.isSelf(n))
    const answers = await Promise.all(others.map(async (node) => ({ node, digest: await this.remoteHash(node, oid) })))
    const digests = [mine, ...answers.flatMap((a) => (a.digest ? [a.digest] : []))]
    const votes = (d: Buffer) => digests.filter((x) => x.equals(d)).length
    const majority = digests.find((d) => votes(d) > digests.length / 2)
    if (digests.length === 1 || majority?.equals(mine)) {
      if (await checksums.establish(key, digests.length === 1 ? undefined : mine)) status.established++
      else status.unverified++ // written meanwhile: the next scrub tries again
      return
    }
    if (!majority) {
      sheep.log.warn(`scrub: the replicas of ${keyFileName(key)} disagree with no majority; it stays without checksums`)
      status.unverified++
      return
    }
    status.corrupt++
    sheep.log.warn(`scrub: ${keyFileName(key)} differs from the majority of its replicas`)
    const source = answers.find((a) => a.digest?.equals(majority))?.node as SdNode
    const size = storedSizeFor(sheep, oid)
    const result = await checksums.replace(key, (store) => copyObject(store, key, size, peerPieceReader(sheep, source, oid)))
    if (result === SD_RES_SUCCESS) {
      status.repaired++
      this.repaired++
      sheep.log.warn(`scrub: ${keyFileName(key)} rewritten from ${nodeAddrText(source)}`)
    } else this.repairFailed++
  }

  /** GET_HASH of `oid` on `node`; undefined when it has none (or cannot tell). */
  private async remoteHash(node: SdNode, oid: bigint): Promise<Buffer | undefined> {
    try {
      const { rsp } = await this.sheep.peers.get(node).request({
        opcode: SD_OP_GET_HASH,
        protoVer: SD_SHEEP_PROTO_VER,
        epoch: this.sheep.epoch,
        variant: REQ_OBJ,
        fields: { oid, tgtEpoch: this.sheep.epoch },
      })
      return rsp.result === SD_RES_SUCCESS ? rspVariant(rsp, RSP_HASH).digest : undefined
    } catch {
      return undefined
    }
  }
}

function emptyStatus(rateMiB: number): ScrubStatus {
  return {
    running: false,
    objectsDone: 0,
    objectsTotal: 0,
    bytesDone: 0,
    corrupt: 0,
    repaired: 0,
    established: 0,
    unverified: 0,
    startedMs: 0,
    finishedMs: 0,
    rateMiB,
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** A whole strip of `size` bytes read piece by piece; a result code when a piece fails. */
async function readWhole(read: PieceReader, size: number): Promise<Buffer | number> {
  const whole = Buffer.allocUnsafe(size)
  for (let offset = 0; offset < size; offset += OBJECT_CHUNK_BYTES) {
    const length = Math.min(OBJECT_CHUNK_BYTES, size - offset)
    const piece = await read(offset, length)
    if (typeof piece === 'number') return piece
    if (piece.length !== length) return SD_RES_EIO
    piece.copy(whole, offset)
  }
  return whole
}
