// Golden bytes of the corosync driver's messages (sheep/cluster/corosync-message.ts): each
// message type encoded from the same nodes and payloads as a reference built by gcc from the
// original's structs (struct rb_node, node_id, sd_node, cpg_node, corosync_message copied from
// sheep/cluster/corosync.c and include/internal_proto.h, filled the way send_message fills
// them), compared by length and SHA-256 of the whole message, with the header bytes spelled out.
import { createHash } from 'node:crypto'
import t from 'tap'
import type { SdNode } from '../../lib/structs.js'
import {
  COROSYNC_MESSAGE_HEADER_SIZE,
  COROSYNC_MSG_TYPE_ACCEPT,
  COROSYNC_MSG_TYPE_BLOCK,
  COROSYNC_MSG_TYPE_JOIN,
  COROSYNC_MSG_TYPE_LEAVE,
  COROSYNC_MSG_TYPE_NOTIFY,
  COROSYNC_MSG_TYPE_UNBLOCK,
  COROSYNC_MSG_TYPE_UPDATE_NODE,
  type CorosyncMessage,
  type CpgNode,
  SD_MAX_EVENT_BUF_SIZE,
  decodeCorosyncMessage,
  encodeCorosyncMessage,
} from '../../sheep/cluster/corosync-message.js'

/** The reference's mknode: an IPv4-mapped 10.0.0.LAST, 128 vnodes, zone 0x0a00000a+LAST. */
function cpgNode(nodeid: number, pid: number, last: number, port: number): CpgNode {
  const addr = Buffer.alloc(16)
  addr[10] = 0xff
  addr[11] = 0xff
  addr[12] = 10
  addr[15] = last
  const node: SdNode = { addr, port, ioAddr: Buffer.alloc(16), ioPort: 0, nrVnodes: 128, zone: 0x0a00000a + last, space: 0x123456789n * BigInt(last) }
  return { nodeid, pid, node }
}

const a = cpgNode(1, 4242, 1, 7000)
const b = cpgNode(2, 777, 2, 7001)
const c = cpgNode(3, 31337, 3, 7002)
const updated: CpgNode = { ...b, node: { ...b.node, space: 999n, nrVnodes: 64 } }

const GOLDEN: Array<{ name: string; message: CorosyncMessage; length: number; sha256: string }> = [
  {
    name: 'JOIN',
    message: { type: COROSYNC_MSG_TYPE_JOIN, sender: c, nodes: [], msg: Buffer.from('join-payload') },
    length: 90220,
    sha256: '27b72a7931efbffe962577cbda9a6aff590ac314a35f985efd50cc0bd1200745',
  },
  {
    name: 'ACCEPT',
    message: { type: COROSYNC_MSG_TYPE_ACCEPT, sender: c, nodes: [a, b], msg: Buffer.from('accept-payload!') },
    length: 90223,
    sha256: '7379c505c4dd27d768663dd74c0db0bb0a200f1a7150b5576fc45c170b8f26d9',
  },
  {
    name: 'LEAVE',
    message: { type: COROSYNC_MSG_TYPE_LEAVE, sender: b, nodes: [], msg: Buffer.alloc(0) },
    length: 90208,
    sha256: 'a3f66d870cf4e5aa07283e3457fbda200ff243bb82086d948476ccdf60f3a6dd',
  },
  {
    name: 'NOTIFY',
    message: { type: COROSYNC_MSG_TYPE_NOTIFY, sender: a, nodes: [], msg: Buffer.from('notify') },
    length: 90214,
    sha256: '310c8289e8fa2dd31c949bf427c198a098dd3c0a3923781246f0806cd48706a4',
  },
  {
    name: 'BLOCK',
    message: { type: COROSYNC_MSG_TYPE_BLOCK, sender: a, nodes: [], msg: Buffer.alloc(0) },
    length: 90208,
    sha256: '1dfc5c052c22ab70694f9e4a60ab1fe9ce210eb1a4ae6b93b63ce372d14c554b',
  },
  {
    name: 'UNBLOCK',
    message: { type: COROSYNC_MSG_TYPE_UNBLOCK, sender: a, nodes: [], msg: Buffer.from('unblock-result') },
    length: 90222,
    sha256: '2fc8eaea76e0f375c64a6bc91d8975c0af766bd07aa984095c284453c2f48f64',
  },
  {
    name: 'UPDATE_NODE',
    message: { type: COROSYNC_MSG_TYPE_UPDATE_NODE, sender: updated, nodes: [], msg: Buffer.alloc(0) },
    length: 90208,
    sha256: 'e9b889de1e869f53ef9896e5a071d34cc85d47dbbb78072a18e8507c4744755c',
  },
]

t.test('every message type matches the original byte for byte', async (t) => {
  for (const g of GOLDEN) {
    const buf = encodeCorosyncMessage(g.message)
    t.equal(buf.length, g.length, `${g.name}: length`)
    t.equal(createHash('sha256').update(buf).digest('hex'), g.sha256, `${g.name}: bytes`)
    t.same(decodeCorosyncMessage(buf), g.message, `${g.name}: decodes to what was encoded`)
  }
})

t.test('the header, spelled out (ACCEPT from the reference, xxd)', async (t) => {
  const buf = encodeCorosyncMessage(GOLDEN[1]!.message)
  // sender: nodeid 3, pid 31337, then sd_node whose first 24 bytes (rb_node) are zero here
  t.same([...buf.subarray(0, 8)], [3, 0, 0, 0, 0x69, 0x7a, 0, 0])
  t.same([...buf.subarray(8 + 24 + 10, 8 + 24 + 18)], [0xff, 0xff, 10, 0, 0, 3, 0x5a, 0x1b], 'sender address and port 7002')
  // type:16 = 1, nr_nodes = 2, msg_len = 15
  t.same([...buf.subarray(88, 96)], [1, 0, 2, 0, 15, 0, 0, 0])
  // nodes[0]: nodeid 1, pid 4242
  t.same([...buf.subarray(96, 104)], [1, 0, 0, 0, 0x92, 0x10, 0, 0])
  // nodes[0].node: nr_vnodes 128 at 64, zone at 68, space at 72
  t.same([...buf.subarray(96 + 8 + 64, 96 + 8 + 80)], [0x80, 0, 0, 0, 0x0b, 0, 0, 0x0a, 0x89, 0x67, 0x45, 0x23, 1, 0, 0, 0])
  t.equal(buf.subarray(COROSYNC_MESSAGE_HEADER_SIZE).toString(), 'accept-payload!')
})

t.test('bounds', async (t) => {
  t.throws(() => encodeCorosyncMessage({ type: COROSYNC_MSG_TYPE_NOTIFY, sender: a, nodes: [], msg: Buffer.alloc(SD_MAX_EVENT_BUF_SIZE + 1) }))
  t.match(decodeCorosyncMessage(Buffer.alloc(100)), /shorter than its header/)
  const cut = encodeCorosyncMessage(GOLDEN[0]!.message).subarray(0, COROSYNC_MESSAGE_HEADER_SIZE + 3)
  t.match(decodeCorosyncMessage(cut), /cut short/)
})
