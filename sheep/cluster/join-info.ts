// The join and accept payload every cluster driver carries: the original's struct cluster_info
// (include/internal_proto.h; sheep/group.c sends sys->cinfo with its join, and the member that
// accepts overwrites it with its own, status and protocol version set — cluster_info_copy), so
// an original sheep and ours understand each other's joins on one corosync group.
//
// The original copies and reads only the head and the `nr_nodes` nodes of the epoch; what
// follows them in the buffer it ignores, and an original member answering a join sends the
// joiner's bytes there back unchanged. Ours keeps one thing there that cluster_info cannot say:
// the weights members announced since they joined, when the driver's member list does not
// carry them (corosync's does: UPDATE_NODE changes a member's sd_node). Only an accept of ours
// has it, marked as such; a join is the original's bytes exactly, so a joiner accepted by an
// original member finds no extension and takes the weights from the member list.
import { invariant } from '../../lib/errors.js'
import { type Layout, checkLayout, readFields, writeFields } from '../../lib/layout.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { CLUSTER_INFO, CLUSTER_INFO_HEADER_SIZE, SD_NODE_SIZE, type SdNode, decodeClusterInfo, encodeNode } from '../../lib/structs.js'

/** The original's corosync driver sends at most this many payload bytes (SD_MAX_EVENT_BUF_SIZE). */
export const JOIN_PAYLOAD_MAX_SIZE = 128 * 1024

/** A node's weight announced after it joined (reweight, `dog node vnodes set`). */
export interface AnnouncedWeight {
  addr: Buffer
  port: number
  space: bigint
  nrVnodes: number
}

/** What a join or accept says, decoded. */
export interface JoinInfo {
  protoVer: number
  status: number
  epoch: number
  settings: {
    ctime: bigint
    flags: number
    nrCopies: number
    copyPolicy: number
    blockSizeShift: number
    defaultStore: string
    disableRecovery: boolean
  }
  /** The node list of `epoch`. */
  epochNodes: SdNode[]
  /**
   * The sender's vnode strategy: the formatted cluster's flag, else the node's own (-V); in
   * cluster_info the AUTO_VNODES bit of an unformatted node's flags says it (sheep.c sets it
   * unless -V is given).
   */
  autoVnodes: boolean
  /** Weights announced since the members joined; undefined when the payload has none of ours. */
  weights: AnnouncedWeight[] | undefined
}

/** The extension's writer: a deciding member of ours (the only one there is). */
export const JOIN_EXT_ROLE_ACCEPT = 2
const JOIN_EXT_MAGIC = Buffer.from('SDNODEJS', 'latin1')
const JOIN_EXT = {
  magic: [0, 'bytes', 8],
  role: [8, 'u8'],
  nrWeights: [10, 'u16'],
} as const satisfies Layout
const JOIN_EXT_HEADER_SIZE = 16
const WEIGHT = {
  addr: [0, 'bytes', 16],
  port: [16, 'u16'],
  nrVnodes: [18, 'u16'],
  space: [24, 'u64'],
} as const satisfies Layout
const WEIGHT_SIZE = 32
checkLayout('join extension', JOIN_EXT, JOIN_EXT_HEADER_SIZE)
checkLayout('announced weight', WEIGHT, WEIGHT_SIZE)

function extensionAt(nrNodes: number): number {
  return CLUSTER_INFO_HEADER_SIZE + nrNodes * SD_NODE_SIZE
}

/**
 * Encodes `info` as cluster_info, over `base` when given (an accept is the joiner's payload with
 * the head overwritten, as the original's sd_join_handler does), and with the extension after
 * the nodes when `info.weights` is given (an accept of ours). More than JOIN_PAYLOAD_MAX_SIZE
 * bytes are never needed: the epoch's nodes are what grows, and a cluster of more nodes than
 * fit does not run on corosync.
 */
export function encodeJoinInfo(info: JoinInfo, base?: Buffer): Buffer {
  const weights = info.weights
  const extAt = extensionAt(info.epochNodes.length)
  const needed = weights ? extAt + JOIN_EXT_HEADER_SIZE + weights.length * WEIGHT_SIZE : extAt
  invariant(
    needed <= JOIN_PAYLOAD_MAX_SIZE,
    `a join payload of ${info.epochNodes.length} nodes and ${weights?.length ?? 0} weights exceeds ${JOIN_PAYLOAD_MAX_SIZE} bytes`,
  )
  const buf = Buffer.alloc(Math.max(needed, base?.length ?? 0))
  base?.copy(buf)
  const s = info.settings
  // an unformatted node's flags carry its own vnode strategy (the original's sys->cinfo.flags)
  const flags = s.ctime === 0n ? (s.flags & ~SD_CLUSTER_FLAG_AUTO_VNODES) | (info.autoVnodes ? SD_CLUSTER_FLAG_AUTO_VNODES : 0) : s.flags
  buf.fill(0, 0, CLUSTER_INFO_HEADER_SIZE)
  writeFields(buf, CLUSTER_INFO, {
    protoVer: info.protoVer,
    disableRecovery: s.disableRecovery ? 1 : 0,
    nrNodes: info.epochNodes.length,
    epoch: info.epoch,
    ctime: s.ctime,
    flags,
    nrCopies: s.nrCopies,
    copyPolicy: s.copyPolicy,
    status: info.status,
    blockSizeShift: s.blockSizeShift,
    defaultStore: s.defaultStore,
  })
  info.epochNodes.forEach((n, i) => {
    encodeNode(n, buf, CLUSTER_INFO_HEADER_SIZE + i * SD_NODE_SIZE)
  })
  if (!weights) return buf
  buf.fill(0, extAt, needed)
  writeFields(buf, JOIN_EXT, { magic: JOIN_EXT_MAGIC, role: JOIN_EXT_ROLE_ACCEPT, nrWeights: weights.length }, extAt)
  weights.forEach((w, i) => {
    writeFields(buf, WEIGHT, w, extAt + JOIN_EXT_HEADER_SIZE + i * WEIGHT_SIZE)
  })
  return buf
}

/** Decodes a join or accept payload; a payload too short for what it says is a string: why. */
export function decodeJoinInfo(buf: Buffer): JoinInfo | string {
  if (buf.length < CLUSTER_INFO_HEADER_SIZE) return `a join payload of ${buf.length} bytes is shorter than cluster_info's head`
  const ci = decodeClusterInfo(buf)
  if (ci.nrNodes < 0 || ci.nodes.length !== ci.nrNodes) return `a join payload lists ${ci.nrNodes} nodes in ${buf.length} bytes`
  const formatted = ci.ctime !== 0n
  return {
    protoVer: ci.protoVer,
    status: ci.status,
    epoch: ci.epoch,
    settings: {
      ctime: ci.ctime,
      // before a format the bit is the node's own strategy, not a setting of the cluster
      flags: formatted ? ci.flags : ci.flags & ~SD_CLUSTER_FLAG_AUTO_VNODES,
      nrCopies: ci.nrCopies,
      copyPolicy: ci.copyPolicy,
      blockSizeShift: ci.blockSizeShift,
      defaultStore: ci.defaultStore,
      disableRecovery: ci.disableRecovery !== 0,
    },
    epochNodes: ci.nodes,
    autoVnodes: (ci.flags & SD_CLUSTER_FLAG_AUTO_VNODES) !== 0,
    weights: readWeights(buf, extensionAt(ci.nodes.length)),
  }
}

function readWeights(buf: Buffer, at: number): AnnouncedWeight[] | undefined {
  if (buf.length < at + JOIN_EXT_HEADER_SIZE) return undefined
  const ext = readFields(buf, JOIN_EXT, at)
  if (!ext.magic.equals(JOIN_EXT_MAGIC) || ext.role !== JOIN_EXT_ROLE_ACCEPT) return undefined
  if (buf.length < at + JOIN_EXT_HEADER_SIZE + ext.nrWeights * WEIGHT_SIZE) return undefined
  const weights: AnnouncedWeight[] = []
  for (let i = 0; i < ext.nrWeights; i++) weights.push(readFields(buf, WEIGHT, at + JOIN_EXT_HEADER_SIZE + i * WEIGHT_SIZE))
  return weights
}
