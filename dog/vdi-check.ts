// `dog vdi check [-s] [-e]` and `dog cluster check` (cli-and-formats §4.14, §6.6). Every replica
// of a VDI's inode and data objects is asked for its SHA-1 (GET_HASH); the majority digest wins
// (Boyer–Moore vote) and replicas that are missing or differ are repaired with REPAIR_REPLICA,
// sent to the broken node and naming a node with the majority copy. Beyond the original, a
// sheep with checksums (docs/integrity.md) checks the replica's blocks while it hashes it and
// answers SD_RES_EIO when one is wrong: such a replica is known bad, takes no part in the vote
// and is repaired — so one good replica out of two (or out of three with two bad) is enough,
// where the vote alone could only guess. -e only asks each node
// whether it holds the objects the hash ring gives it (OIDS_EXIST). Objects of erasure-coded VDIs
// are checked strip by strip instead (checkErasureObject).
import { forEachVdi, selectorOf, type WalkedVdi } from './common.js'
import { DogExit, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, type DogContext } from './cli.js'
import type { DogRuntime } from './runtime.js'
import { dataObjectIds, exitOnTransportFailure, forEachConcurrently, openVdiInode, readIndex, showProgress, type IndexedVdi } from './vdi-inode.js'
import { type EcPolicy, type ErasureCoder, ecPolicyOf, erasureCoder } from '../lib/ec/codec.js'
import { sprintf } from '../lib/format.js'
import { objectSize } from '../lib/inode.js'
import { oidToHex, vidToVdiOid } from '../lib/oid.js'
import { SD_RES_EIO, SD_RES_NO_OBJ } from '../lib/proto.js'
import { HashRing } from '../lib/ring.js'
import { createAndWritePeer, getHash, oidsExist, readPeer, repairReplica, type SdNode } from '../lib/sheep-api.js'
import { nodeAddrText } from '../lib/structs.js'

/** Objects checked at once (each asks all its replicas in parallel). */
const CHECK_CONCURRENCY_OBJECTS = 16

/** A strip whose holder answered EIO to its read: its checksums found it corrupt. */
const CORRUPT_STRIP = 'corrupt'

/** What one replica answered to GET_HASH. */
interface ReplicaAnswer {
  node: SdNode
  /** The SHA-1 of the replica; undefined when the node does not have the object or it is corrupt. */
  digest: Buffer | undefined
  /** The node's checksums found the replica corrupt (GET_HASH answered EIO). */
  corrupt?: boolean
}

/** What happens to a replica that is not the majority's. */
const REPAIR_LINE_BY_FOUND: Readonly<Record<'found' | 'missing', string>> = {
  found: 'fixed replica',
  missing: 'fixed missing',
}

/** How a replica that is not the majority's is printed once repaired. */
function repairLine(answer: ReplicaAnswer): string {
  return REPAIR_LINE_BY_FOUND[answer.digest === undefined && !answer.corrupt ? 'missing' : 'found']
}

/**
 * The majority replica by the linear vote of Boyer and Moore over the replicas that exist, or
 * why there is none: `no node has` (no replica at all) or `no majority of` (no digest held by
 * more than half of them).
 */
export function voteMajority(answers: readonly ReplicaAnswer[]): ReplicaAnswer | 'no node has' | 'no majority of' {
  const live = answers.filter((answer) => answer.digest !== undefined)
  let candidate: ReplicaAnswer | undefined
  let count = 0
  for (const answer of live) {
    if (count === 0) candidate = answer
    if (candidate?.digest?.equals(answer.digest as Buffer)) count++
    else count--
  }
  if (candidate === undefined) return 'no node has'
  const votes = live.filter((answer) => (answer.digest as Buffer).equals(candidate.digest as Buffer)).length
  return votes > live.length / 2 ? candidate : 'no majority of'
}

/** Checks the object on every replica node and repairs the replicas that are missing or differ. */
async function checkObject(ctx: DogContext, dog: DogRuntime, oid: bigint, replicaNodes: readonly SdNode[]): Promise<void> {
  const epoch = dog.nodeList(ctx).epoch
  const answers = await Promise.all(
    replicaNodes.map(async (node): Promise<ReplicaAnswer> => {
      try {
        return { node, digest: await getHash(dog.connectionTo(node), oid, epoch) }
      } catch (error) {
        const failure = exitOnTransportFailure(ctx, error)
        if (failure.code === SD_RES_NO_OBJ) return { node, digest: undefined }
        if (failure.code === SD_RES_EIO) return { node, digest: undefined, corrupt: true }
        ctx.printStderrLine(`failed to read ${oidToHex(oid)} from ${nodeAddrText(node)}, ${failure.label}`)
        throw new DogExit(EXIT_FAILURE)
      }
    }),
  )
  const majority = voteMajority(answers)
  if (typeof majority === 'string') {
    const none = majority === 'no node has' && answers.some((a) => a.corrupt) ? 'no good replica of' : majority
    ctx.printStderrLine(`${none} ${oidToHex(oid)}`)
    return
  }
  const broken = answers.filter((answer) => answer.digest === undefined || !answer.digest.equals(majority.digest as Buffer))
  await Promise.all(
    broken.map(async (answer) => {
      try {
        await repairReplica(dog.connectionTo(answer.node), oid, majority.node, epoch)
      } catch (error) {
        exitOnTransportFailure(ctx, error)
        ctx.printStderrLine(`failed to repair object ${oidToHex(oid)} from ${nodeAddrText(majority.node)} to ${nodeAddrText(answer.node)}`)
        return
      }
      ctx.printStdout(`${repairLine(answer)} ${oidToHex(oid)}\n`)
    }),
  )
}

/**
 * Whether the strips agree: the first D of them (by index) encode to every other one. With no
 * more than D strips there is nothing to compare.
 */
function stripsAgree(coder: ErasureCoder, strips: ReadonlyMap<number, Uint8Array>): boolean {
  const indexes = [...strips.keys()].sort((a, b) => a - b)
  const base = new Map(indexes.slice(0, coder.d).map((i) => [i, strips.get(i) as Uint8Array]))
  return indexes.slice(coder.d).every((k) => Buffer.from(coder.rebuild(base, k)).equals(strips.get(k) as Uint8Array))
}

/**
 * Checks the D+P strips of an erasure-coded object, each read from its holder (READ_PEER with
 * its ec_index): missing strips are rebuilt from the others and written back, as the original
 * does. Beyond the original, a strip whose bytes are wrong is found — the one strip without
 * which the others agree, which needs two strips of redundancy left — and rewritten too.
 */
async function checkErasureObject(
  ctx: DogContext,
  dog: DogRuntime,
  oid: bigint,
  policy: EcPolicy,
  stripBytes: number,
  holders: readonly SdNode[],
): Promise<void> {
  const epoch = dog.nodeList(ctx).epoch
  const read = await Promise.all(
    holders.map(async (node, ecIndex) => {
      try {
        return await readPeer(dog.connectionTo(node), oid, stripBytes, { epoch, ecIndex })
      } catch (error) {
        const failure = exitOnTransportFailure(ctx, error)
        if (failure.code === SD_RES_NO_OBJ) return undefined
        // its holder's checksums found it corrupt: rebuilt and rewritten like a wrong strip
        if (failure.code === SD_RES_EIO) return CORRUPT_STRIP
        ctx.printStderrLine(`failed to read ${oidToHex(oid)} from ${nodeAddrText(node)}, ${failure.label}`)
        throw new DogExit(EXIT_FAILURE)
      }
    }),
  )
  const coder = erasureCoder(policy)
  const strips = new Map<number, Uint8Array>()
  read.forEach((strip, i) => {
    if (strip !== CORRUPT_STRIP && strip?.length === stripBytes) strips.set(i, strip)
  })
  const corrupt = read.flatMap((strip, i) => (strip === CORRUPT_STRIP ? [i] : []))
  const missing = read.flatMap((strip, i) => (strips.has(i) || strip === CORRUPT_STRIP ? [] : [i]))
  if (missing.length + corrupt.length > policy.p) {
    ctx.printStderrLine(`failed to rebuild object ${oidToHex(oid)}. ${missing.length + corrupt.length} copies get lost, more than ${policy.p}`)
    return
  }
  let wrong: number[] = corrupt
  if (!stripsAgree(coder, strips)) {
    const suspects = strips.size - 1 > policy.d ? [...strips.keys()].filter((i) => stripsAgree(coder, new Map([...strips].filter(([j]) => j !== i)))) : []
    if (suspects.length !== 1) {
      ctx.printStderrLine(`object ${oidToHex(oid)} is inconsistent`)
      return
    }
    wrong = [...corrupt, ...suspects]
    strips.delete(suspects[0] as number)
  }
  for (const index of [...missing, ...wrong]) {
    const rebuilt = Buffer.from(coder.rebuild(strips, index))
    try {
      await createAndWritePeer(dog.connectionTo(holders[index] as SdNode), oid, rebuilt, { epoch, ecIndex: index })
    } catch (error) {
      const failure = exitOnTransportFailure(ctx, error)
      ctx.printStderrLine(`failed to repair strip ${index} of ${oidToHex(oid)} on ${nodeAddrText(holders[index] as SdNode)}, ${failure.label}`)
      continue
    }
    ctx.printStdout(`${missing.includes(index) ? 'fixed missing' : 'fixed strip'} ${oidToHex(oid)}, copy index ${index}\n`)
  }
}

/**
 * The `vdi check` procedure for one VDI whose index is read: the inode first, then every
 * allocated data object, a progress line on a terminal, and `finish check&repair <name>`.
 */
export async function checkAndRepairVdi(ctx: DogContext, dog: DogRuntime, vdi: IndexedVdi): Promise<number> {
  const { header } = vdi
  const ring = new HashRing(dog.nodeList(ctx).nodes)
  const policy = header.copyPolicy !== 0 ? ecPolicyOf(header.copyPolicy) : undefined
  if (policy && ring.nrZones < header.nrCopies) {
    ctx.printStderrLine('ABORT: Not enough active zones for consistency-checking erasure coded VDI')
    return EXIT_FAILURE
  }
  const sizeOfObject = BigInt(objectSize(header))
  const total = header.vdiSize
  await checkObject(ctx, dog, vidToVdiOid(vdi.vid), ring.replicasFor(vidToVdiOid(vdi.vid), header.nrCopies))

  // unallocated objects count as done at once, allocated ones when their check ends
  const allocated = vdi.owners.size
  const objectCount = (total + sizeOfObject - 1n) / sizeOfObject
  let done = (objectCount - BigInt(allocated)) * sizeOfObject
  showProgress(ctx, done, total, false)
  await forEachConcurrently(dataObjectIds(vdi), CHECK_CONCURRENCY_OBJECTS, async (oid) => {
    if (policy) await checkErasureObject(ctx, dog, oid, policy, objectSize(header) / policy.d, ring.replicasFor(oid, header.nrCopies))
    else await checkObject(ctx, dog, oid, ring.replicasFor(oid, header.nrCopies))
    done += sizeOfObject
    showProgress(ctx, done, total, false)
  })
  ctx.printStdout(`finish check&repair ${header.name}\n`)
  return EXIT_SUCCESS
}

/**
 * -e: every node is asked (OIDS_EXIST) for the objects it should hold; each missing one is
 * listed, then a verdict line. Exit 1 when objects are lost.
 */
export async function checkVdiObjectsExist(ctx: DogContext, dog: DogRuntime, vdi: IndexedVdi): Promise<number> {
  const { nodes } = dog.nodeList(ctx)
  const ring = new HashRing(nodes)
  const oidsByNode = new Map<SdNode, bigint[]>(nodes.map((node) => [node, []]))
  for (const oid of [vidToVdiOid(vdi.vid), ...dataObjectIds(vdi)]) {
    for (const node of ring.replicasFor(oid, vdi.header.nrCopies)) oidsByNode.get(node)?.push(oid)
  }
  let lost = 0
  for (const [node, oids] of oidsByNode) {
    let missing: bigint[]
    try {
      missing = await oidsExist(dog.connectionTo(node), oids)
    } catch (error) {
      const failure = exitOnTransportFailure(ctx, error)
      ctx.printStderrLine(`failed to ask ${nodeAddrText(node)} for its objects: ${failure.label}`)
      return EXIT_SYSFAIL
    }
    lost += missing.length
    for (const oid of missing) ctx.printStdout(`[${nodeAddrText(node)}] oid ${oidToHex(oid)} is missing.\n`)
  }
  if (lost === 0) {
    ctx.printStdout(`${vdi.header.name} is fine, no object is missing.\n`)
    return EXIT_SUCCESS
  }
  ctx.printStdout(`${vdi.header.name} lost ${lost} object(s).\n`)
  return EXIT_FAILURE
}

/** `dog vdi check <name> [-s ID|TAG] [-e]`. */
export async function checkVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const opened = await openVdiInode(ctx, conn, ctx.args[0] as string, selectorOf(ctx))
  const vdi = opened === undefined ? undefined : await readIndex(ctx, conn, opened)
  if (vdi === undefined) {
    ctx.printStderrLine('FATAL: no inode objects')
    return EXIT_FAILURE
  }
  return ctx.opts.exist ? checkVdiObjectsExist(ctx, dog, vdi) : checkAndRepairVdi(ctx, dog, vdi)
}

/** The line `cluster check` prints before checking a VDI. */
function clusterCheckHeading(vdi: WalkedVdi): string {
  const { header } = vdi
  if (header.snapCtime === 0n) return `fix vdi ${header.name}\n`
  return sprintf('fix snapshot %s (id: %d, tag: "%s")\n', header.name, header.snapId, header.tag)
}

/** `dog cluster check`: `vdi check` on every VDI and snapshot, in vid order. */
export async function checkCluster(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const walked = await forEachVdi(ctx, conn, async (walkedVdi) => {
    const vdi = await readIndex(ctx, conn, walkedVdi)
    if (vdi === undefined) return
    ctx.printStdout(clusterCheckHeading(vdi))
    await checkAndRepairVdi(ctx, dog, vdi)
  })
  return walked ? EXIT_SUCCESS : EXIT_SYSFAIL
}
