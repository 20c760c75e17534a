// Payload structures of the wire protocol and the on-disk files that share their layout:
// node_id / sd_node, cluster_info, epoch_log, vdi_state, the config file, the vdi attribute and
// the small fixed records (wire-protocol.md §7, §12.9; behaviour.md §12.2).
import { type Fields, type Layout, checkLayout, readFields, writeFields } from './layout.js'
import { addrToString, parseAddr } from './addr.js'
import { SD_MAX_NODES } from './proto.js'

// ---- node_id (40 bytes) and sd_node (80 bytes), §7.1–7.2 -------------------------------------
export const SD_NODE_SIZE = 80
export const SD_NODE_ID_SIZE = 40

export const SD_NODE = {
  addr: [24, 'bytes', 16],
  port: [40, 'u16'],
  ioAddr: [42, 'bytes', 16],
  ioPort: [58, 'u16'],
  nrVnodes: [64, 'u16'],
  zone: [68, 'u32'],
  space: [72, 'u64'],
} as const satisfies Layout
export type SdNode = Fields<typeof SD_NODE>

/** node_id inside other structs (vdi_state lock owner, participants): sd_node offsets minus 24. */
export const NODE_ID = {
  addr: [0, 'bytes', 16],
  port: [16, 'u16'],
  ioAddr: [18, 'bytes', 16],
  ioPort: [34, 'u16'],
} as const satisfies Layout
export type NodeId = Fields<typeof NODE_ID>

export function encodeNode(node: SdNode, buf: Buffer = Buffer.alloc(SD_NODE_SIZE), at = 0): Buffer {
  buf.fill(0, at, at + SD_NODE_SIZE) // the tree links (bytes 0..23) are never meaningful on the wire
  writeFields(buf, SD_NODE, node, at)
  return buf
}

export function decodeNode(buf: Buffer, at = 0): SdNode {
  return readFields(buf, SD_NODE, at)
}

export function encodeNodes(nodes: readonly SdNode[]): Buffer {
  const buf = Buffer.alloc(nodes.length * SD_NODE_SIZE)
  nodes.forEach((n, i) => {
    encodeNode(n, buf, i * SD_NODE_SIZE)
  })
  return buf
}

export function decodeNodes(buf: Buffer, count: number, at = 0): SdNode[] {
  const nodes: SdNode[] = []
  for (let i = 0; i < count; i++) nodes.push(decodeNode(buf, at + i * SD_NODE_SIZE))
  return nodes
}

/** Node identity is (addr, port); lists are sorted by memcmp(addr) then port (§7.1). */
export function compareNodes(a: { addr: Buffer; port: number }, b: { addr: Buffer; port: number }): number {
  return Buffer.compare(a.addr, b.addr) || a.port - b.port
}

export function sameNode(a: { addr: Buffer; port: number }, b: { addr: Buffer; port: number }): boolean {
  return compareNodes(a, b) === 0
}

/** `A.B.C.D` for IPv4-encoded addresses (12 zero bytes + 4), else IPv6 text (§7.1). */
export const addrToText = addrToString

/** `ip:port` as dog prints it. */
export function nodeAddrText(node: { addr: Buffer; port: number }): string {
  return `${addrToText(node.addr)}:${node.port}`
}

/** `IPv4 ip:A.B.C.D port:P`, the node description of logs, lock lists and znodes. */
export function nodeDescription(node: { addr: Buffer; port: number }): string {
  const text = addrToText(node.addr)
  return `${text.includes(':') ? 'IPv6' : 'IPv4'} ip:${text} port:${node.port}`
}

/** IPv4 dotted text or IPv6 text → the 16-byte wire encoding (IPv4 as 12 zero bytes + 4). */
export function addrFromText(text: string): Buffer | undefined {
  const addr = parseAddr(text)
  return addr ? Buffer.from(addr) : undefined
}

// ---- cluster_info (491 568 bytes), §7.4 --------------------------------------------------------
export const CLUSTER_INFO_HEADER_SIZE = 48
export const CLUSTER_INFO_SIZE = CLUSTER_INFO_HEADER_SIZE + SD_MAX_NODES * SD_NODE_SIZE
export const CLUSTER_INFO = {
  protoVer: [0, 'u8'],
  disableRecovery: [1, 'u8'],
  nrNodes: [2, 'i16'],
  epoch: [4, 'u32'],
  ctime: [8, 'u64'],
  flags: [16, 'u16'],
  nrCopies: [18, 'u8'],
  copyPolicy: [19, 'u8'],
  status: [20, 'u8'],
  blockSizeShift: [21, 'u8'],
  defaultStore: [25, 'string', 16],
} as const satisfies Layout
export type ClusterInfoHeader = Fields<typeof CLUSTER_INFO>
export interface ClusterInfo extends ClusterInfoHeader {
  nodes: SdNode[]
}

/** Encodes cluster_info; `size` lets callers send only the used part (the rest is zeros anyway). */
export function encodeClusterInfo(info: ClusterInfo, size = CLUSTER_INFO_SIZE): Buffer {
  const buf = Buffer.alloc(Math.max(size, CLUSTER_INFO_HEADER_SIZE + info.nodes.length * SD_NODE_SIZE))
  writeFields(buf, CLUSTER_INFO, { ...info, nrNodes: info.nodes.length })
  info.nodes.forEach((n, i) => {
    encodeNode(n, buf, CLUSTER_INFO_HEADER_SIZE + i * SD_NODE_SIZE)
  })
  return buf.subarray(0, size)
}

export function decodeClusterInfo(buf: Buffer): ClusterInfo {
  const head = readFields(buf, CLUSTER_INFO)
  const count = Math.max(0, Math.min(head.nrNodes, Math.floor((buf.length - CLUSTER_INFO_HEADER_SIZE) / SD_NODE_SIZE)))
  return { ...head, nodes: decodeNodes(buf, count, CLUSTER_INFO_HEADER_SIZE) }
}

// ---- epoch_log (48-byte header + nodes), §7.5 --------------------------------------------------
export const EPOCH_LOG_HEADER_SIZE = 48
export const EPOCH_LOG = {
  ctime: [0, 'u64'],
  time: [8, 'u64'],
  epoch: [16, 'u32'],
  nrNodes: [20, 'u32'],
  disableRecovery: [24, 'u8'],
  nrCopies: [25, 'u8'],
  copyPolicy: [26, 'u8'],
  flags: [30, 'u16'],
  drvName: [32, 'string', 16],
} as const satisfies Layout
export type EpochLogHeader = Fields<typeof EPOCH_LOG>
export interface EpochLog extends EpochLogHeader {
  nodes: SdNode[]
}

export function epochLogStride(nodesNr: number): number {
  return EPOCH_LOG_HEADER_SIZE + nodesNr * SD_NODE_SIZE
}

/** Decodes the STAT_CLUSTER payload: entries of `stride(nodesNr)` bytes each. */
export function decodeEpochLogs(buf: Buffer, nodesNr: number): EpochLog[] {
  const stride = epochLogStride(nodesNr)
  const logs: EpochLog[] = []
  for (let at = 0; at + stride <= buf.length; at += stride) {
    const head = readFields(buf, EPOCH_LOG, at)
    const count = Math.min(head.nrNodes, nodesNr)
    logs.push({ ...head, nodes: decodeNodes(buf, count, at + EPOCH_LOG_HEADER_SIZE) })
  }
  return logs
}

export function encodeEpochLog(log: EpochLog, nodesNr: number, buf: Buffer, at: number): void {
  writeFields(buf, EPOCH_LOG, log, at)
  log.nodes.slice(0, nodesNr).forEach((n, i) => {
    encodeNode(n, buf, at + EPOCH_LOG_HEADER_SIZE + i * SD_NODE_SIZE)
  })
}

/** The epoch file / GET_EPOCH payload: nodes × 80 bytes then the u64 creation time (behaviour.md §12.1). */
/** An epoch file: the node list, then the epoch's creation time (u64 seconds). */
const EPOCH_FILE_TIME_SIZE = 8
/** The largest epoch file: every node a cluster can have, and the time. */
export const EPOCH_FILE_MAX_SIZE = SD_MAX_NODES * SD_NODE_SIZE + EPOCH_FILE_TIME_SIZE

export function encodeEpochFile(nodes: readonly SdNode[], timeSec: bigint): Buffer {
  const buf = Buffer.alloc(nodes.length * SD_NODE_SIZE + EPOCH_FILE_TIME_SIZE)
  nodes.forEach((n, i) => {
    encodeNode(n, buf, i * SD_NODE_SIZE)
  })
  buf.writeBigUInt64LE(timeSec, nodes.length * SD_NODE_SIZE)
  return buf
}

export function decodeEpochFile(buf: Buffer): { nodes: SdNode[]; timeSec: bigint } | undefined {
  if (buf.length < EPOCH_FILE_TIME_SIZE || (buf.length - EPOCH_FILE_TIME_SIZE) % SD_NODE_SIZE !== 0) return undefined
  const count = (buf.length - EPOCH_FILE_TIME_SIZE) / SD_NODE_SIZE
  return { nodes: decodeNodes(buf, count), timeSec: buf.readBigUInt64LE(count * SD_NODE_SIZE) }
}

// ---- vdi_state (1428 bytes), §7.6 ------------------------------------------------------------
export const VDI_STATE_SIZE = 1428
export const VDI_STATE_MAX_PARTICIPANTS = 31
export const VDI_STATE = {
  vid: [0, 'u32'],
  nrCopies: [4, 'u8'],
  snapshot: [5, 'u8'],
  deleted: [6, 'u8'],
  copyPolicy: [7, 'u8'],
  blockSizeShift: [8, 'u8'],
  parentVid: [12, 'u32'],
  lockState: [16, 'u32'],
  lockOwner: [20, 'bytes', 40],
  nrParticipants: [60, 'u32'],
} as const satisfies Layout
export const VDI_STATE_PARTICIPANT_STATES_AT = 64
export const VDI_STATE_PARTICIPANTS_AT = 188
export type VdiStateRecord = Fields<typeof VDI_STATE> & { participantStates: number[]; participants: Buffer[] }

export const LOCK_STATE_UNLOCKED = 1
export const LOCK_STATE_NORMAL = 2
export const LOCK_STATE_SHARED = 3

export function encodeVdiState(s: VdiStateRecord, buf: Buffer, at: number): void {
  writeFields(buf, VDI_STATE, s, at)
  s.participantStates.forEach((v, i) => {
    buf.writeUInt32LE(v, at + VDI_STATE_PARTICIPANT_STATES_AT + 4 * i)
  })
  s.participants.forEach((p, i) => {
    p.copy(buf, at + VDI_STATE_PARTICIPANTS_AT + 40 * i, 0, 40)
  })
}

export function decodeVdiState(buf: Buffer, at: number): VdiStateRecord {
  const head = readFields(buf, VDI_STATE, at)
  const n = Math.min(head.nrParticipants, VDI_STATE_MAX_PARTICIPANTS)
  const participantStates: number[] = []
  const participants: Buffer[] = []
  for (let i = 0; i < n; i++) {
    participantStates.push(buf.readUInt32LE(at + VDI_STATE_PARTICIPANT_STATES_AT + 4 * i))
    participants.push(Buffer.from(buf.subarray(at + VDI_STATE_PARTICIPANTS_AT + 40 * i, at + VDI_STATE_PARTICIPANTS_AT + 40 * (i + 1))))
  }
  return { ...head, participantStates, participants }
}

// ---- config file (40 bytes), behaviour.md §12.2 ----------------------------------------------
export const CONFIG_FILE_SIZE = 40
export const CONFIG_FORMAT_VERSION = 6
export const CONFIG_FILE = {
  ctime: [0, 'u64'],
  flags: [8, 'u16'],
  copies: [10, 'u8'],
  defaultStore: [11, 'string', 16],
  shutdown: [27, 'u8'],
  copyPolicy: [28, 'u8'],
  blockSizeShift: [29, 'u8'],
  version: [30, 'u16'],
  space: [32, 'u64'],
} as const satisfies Layout
export type ConfigFile = Fields<typeof CONFIG_FILE>

// ---- sheepdog_vdi_attr (66 320 bytes), wire-protocol.md §12.9 ---------------------------------
export const VDI_ATTR_SIZE = 66320
export const VDI_ATTR = {
  name: [0, 'string', 256],
  tag: [256, 'string', 256],
  ctime: [512, 'u64'],
  snapId: [520, 'u32'],
  valueLen: [524, 'u32'],
  key: [528, 'string', 256],
} as const satisfies Layout
export const VDI_ATTR_VALUE_AT = 784

// ---- small fixed records, §7.7 ----------------------------------------------------------------
export const RECOVERY_STATE = {
  inRecovery: [0, 'u8'],
  state: [4, 'u32'],
  nrFinished: [8, 'u64'],
  nrTotal: [16, 'u64'],
} as const satisfies Layout
export const RECOVERY_STATE_SIZE = 24

export const RECOVERY_THROTTLING = {
  maxExecCount: [0, 'u32'],
  queueWorkInterval: [8, 'u64'],
  throttling: [16, 'u8'],
} as const satisfies Layout
export const RECOVERY_THROTTLING_SIZE = 24

/** SD_OP_SCRUB's actions (REQ_SCRUB.action). */
export const SCRUB_ACTION_STATUS = 0
export const SCRUB_ACTION_START = 1
export const SCRUB_ACTION_STOP = 2

/** SD_OP_SCRUB's answer (our own): the node's scrubber, and its checksum counters since start. */
export const SCRUB_STATUS = {
  running: [0, 'u8'],
  rateMiB: [4, 'u32'],
  objectsDone: [8, 'u64'],
  objectsTotal: [16, 'u64'],
  bytesDone: [24, 'u64'],
  corrupt: [32, 'u64'],
  repaired: [40, 'u64'],
  established: [48, 'u64'],
  unverified: [56, 'u64'],
  startedS: [64, 'u64'],
  finishedS: [72, 'u64'],
  /** Mismatches found by reads and scrubs since the sheep started. */
  mismatches: [80, 'u64'],
  /** Replicas rewritten from a good copy since the sheep started (read-repair and scrub). */
  repairs: [88, 'u64'],
} as const satisfies Layout
export const SCRUB_STATUS_SIZE = 96

/** sd_stat: 15 u64 counters in wire order. */
export const SD_STAT_FIELDS = [
  'gwActive',
  'peerActive',
  'gwTotal',
  'peerTotal',
  'gwRxBytes',
  'gwTxBytes',
  'peerRxBytes',
  'peerTxBytes',
  'gwRemoves',
  'gwReads',
  'gwWrites',
  'gwFlushes',
  'peerRemoves',
  'peerReads',
  'peerWrites',
] as const
export type SdStat = Record<(typeof SD_STAT_FIELDS)[number], bigint>
export const SD_STAT_SIZE = 120

export function encodeSdStat(stat: SdStat): Buffer {
  const buf = Buffer.alloc(SD_STAT_SIZE)
  SD_STAT_FIELDS.forEach((f, i) => {
    buf.writeBigUInt64LE(stat[f], i * 8)
  })
  return buf
}

export function decodeSdStat(buf: Buffer): SdStat {
  const out = {} as SdStat
  SD_STAT_FIELDS.forEach((f, i) => {
    out[f] = buf.length >= (i + 1) * 8 ? buf.readBigUInt64LE(i * 8) : 0n
  })
  return out
}

checkLayout('SD_NODE', SD_NODE, SD_NODE_SIZE)
checkLayout('NODE_ID', NODE_ID, SD_NODE_ID_SIZE)
checkLayout('CLUSTER_INFO', CLUSTER_INFO, CLUSTER_INFO_HEADER_SIZE)
checkLayout('EPOCH_LOG', EPOCH_LOG, EPOCH_LOG_HEADER_SIZE)
checkLayout('VDI_STATE', VDI_STATE, VDI_STATE_SIZE)
checkLayout('CONFIG_FILE', CONFIG_FILE, CONFIG_FILE_SIZE)
checkLayout('VDI_ATTR', VDI_ATTR, VDI_ATTR_SIZE)
checkLayout('RECOVERY_STATE', RECOVERY_STATE, RECOVERY_STATE_SIZE)
checkLayout('RECOVERY_THROTTLING', RECOVERY_THROTTLING, RECOVERY_THROTTLING_SIZE)
checkLayout('SCRUB_STATUS', SCRUB_STATUS, SCRUB_STATUS_SIZE)
