// The corosync driver's messages, byte for byte the original's `struct corosync_message`
// (sheep/cluster/corosync.c, x86-64 gcc layout): the sender's cpg_node, the message type in a
// 16-bit bitfield, the number of nodes, the payload length, a fixed array of COROSYNC_MAX_NODES
// cpg_nodes (always sent whole, used by ACCEPT only) and then the payload. A cpg_node is the
// CPG member (node id, pid) and its sd_node (lib/structs.ts).
import { invariant } from '../../lib/errors.js'
import { type Layout, checkLayout, readFields, writeFields } from '../../lib/layout.js'
import { SD_NODE_SIZE, type SdNode, decodeNode, encodeNode } from '../../lib/structs.js'

/** Members a message's node array holds (the original's COROSYNC_MAX_NODES). */
export const COROSYNC_MAX_NODES = 1024
/** Largest payload: the original sends at most SD_MAX_EVENT_BUF_SIZE bytes (sheep/cluster.h). */
export const SD_MAX_EVENT_BUF_SIZE = 128 * 1024
/** struct cpg_node: nodeid u32, pid u32, sd_node. */
export const CPG_NODE_SIZE = 8 + SD_NODE_SIZE
const CPG_NODE_AT_SD_NODE = 8
export const CPG_NODE = {
  nodeid: [0, 'u32'],
  pid: [4, 'u32'],
} as const satisfies Layout
checkLayout('cpg_node', CPG_NODE, CPG_NODE_AT_SD_NODE)

/** Offsets in struct corosync_message. */
const SENDER_AT = 0
const NODES_AT = 96
export const COROSYNC_MESSAGE_HEADER = {
  type: [CPG_NODE_SIZE, 'u16'], // enum corosync_message_type type:16
  nrNodes: [CPG_NODE_SIZE + 2, 'u16'],
  msgLen: [CPG_NODE_SIZE + 4, 'u32'],
} as const satisfies Layout
/** sizeof(struct corosync_message): what precedes the payload in every message. */
export const COROSYNC_MESSAGE_HEADER_SIZE = NODES_AT + COROSYNC_MAX_NODES * CPG_NODE_SIZE
checkLayout('corosync_message', COROSYNC_MESSAGE_HEADER, NODES_AT, CPG_NODE_SIZE)
invariant(CPG_NODE_SIZE === 88 && COROSYNC_MESSAGE_HEADER_SIZE === 90208, 'corosync_message layout differs from the original')

/**
 * enum corosync_message_type, the original's numbers. There is no refusal: a member accepts
 * every joiner, and a joiner that finds the cluster it was accepted into is not one it may join
 * leaves again (the original's cluster_join_check in sd_accept_handler).
 */
export const COROSYNC_MSG_TYPE_JOIN = 0
export const COROSYNC_MSG_TYPE_ACCEPT = 1
export const COROSYNC_MSG_TYPE_LEAVE = 2
export const COROSYNC_MSG_TYPE_NOTIFY = 3
export const COROSYNC_MSG_TYPE_BLOCK = 4
export const COROSYNC_MSG_TYPE_UNBLOCK = 5
export const COROSYNC_MSG_TYPE_UPDATE_NODE = 6

export const COROSYNC_MSG_TYPE_NAMES: Readonly<Record<number, string>> = {
  [COROSYNC_MSG_TYPE_JOIN]: 'JOIN',
  [COROSYNC_MSG_TYPE_ACCEPT]: 'ACCEPT',
  [COROSYNC_MSG_TYPE_LEAVE]: 'LEAVE',
  [COROSYNC_MSG_TYPE_NOTIFY]: 'NOTIFY',
  [COROSYNC_MSG_TYPE_BLOCK]: 'BLOCK',
  [COROSYNC_MSG_TYPE_UNBLOCK]: 'UNBLOCK',
  [COROSYNC_MSG_TYPE_UPDATE_NODE]: 'UPDATE_NODE',
}

/** A CPG member process and the sheep it is. */
export interface CpgNode {
  nodeid: number
  pid: number
  node: SdNode
}

export interface CorosyncMessage {
  type: number
  sender: CpgNode
  /** The member list (ACCEPT), else empty. */
  nodes: CpgNode[]
  msg: Buffer
}

export function encodeCpgNode(n: CpgNode, buf: Buffer, at: number): void {
  writeFields(buf, CPG_NODE, n, at)
  encodeNode(n.node, buf, at + CPG_NODE_AT_SD_NODE)
}

export function decodeCpgNode(buf: Buffer, at: number): CpgNode {
  return { ...readFields(buf, CPG_NODE, at), node: decodeNode(buf, at + CPG_NODE_AT_SD_NODE) }
}

/** The message as the original's send_message hands it to cpg_mcast_joined. */
export function encodeCorosyncMessage(m: CorosyncMessage): Buffer {
  invariant(m.nodes.length <= COROSYNC_MAX_NODES, `a corosync message holds at most ${COROSYNC_MAX_NODES} nodes`)
  invariant(m.msg.length <= SD_MAX_EVENT_BUF_SIZE, `a corosync message payload is at most ${SD_MAX_EVENT_BUF_SIZE} bytes`)
  const buf = Buffer.alloc(COROSYNC_MESSAGE_HEADER_SIZE + m.msg.length)
  encodeCpgNode(m.sender, buf, SENDER_AT)
  writeFields(buf, COROSYNC_MESSAGE_HEADER, { type: m.type, nrNodes: m.nodes.length, msgLen: m.msg.length })
  m.nodes.forEach((n, i) => {
    encodeCpgNode(n, buf, NODES_AT + i * CPG_NODE_SIZE)
  })
  m.msg.copy(buf, COROSYNC_MESSAGE_HEADER_SIZE)
  return buf
}

/** A delivered message, or why it is not one (too short, lengths out of bounds). */
export function decodeCorosyncMessage(buf: Buffer): CorosyncMessage | string {
  if (buf.length < COROSYNC_MESSAGE_HEADER_SIZE) return `a corosync message of ${buf.length} bytes is shorter than its header`
  const head = readFields(buf, COROSYNC_MESSAGE_HEADER)
  if (head.nrNodes > COROSYNC_MAX_NODES) return `a corosync message lists ${head.nrNodes} nodes`
  if (COROSYNC_MESSAGE_HEADER_SIZE + head.msgLen > buf.length) return `a corosync message's payload of ${head.msgLen} bytes is cut short`
  const nodes: CpgNode[] = []
  for (let i = 0; i < head.nrNodes; i++) nodes.push(decodeCpgNode(buf, NODES_AT + i * CPG_NODE_SIZE))
  const msg = Buffer.from(buf.subarray(COROSYNC_MESSAGE_HEADER_SIZE, COROSYNC_MESSAGE_HEADER_SIZE + head.msgLen))
  return { type: head.type, sender: decodeCpgNode(buf, SENDER_AT), nodes, msg }
}

/** cpg_node_cmp: the same CPG member process. */
export function sameCpgNode(a: { nodeid: number; pid: number }, b: { nodeid: number; pid: number }): boolean {
  return a.nodeid === b.nodeid && a.pid === b.pid
}
