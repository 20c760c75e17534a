// Golden bytes of what the cluster drivers carry inside their messages: the join and accept
// payload (struct cluster_info, sheep/cluster/join-info.ts) and the cluster op message (struct
// vdi_op_message, sheep/cluster/op-message.ts). The references were written by
// test/sheep/reference/cluster-payloads.c, compiled against the original's own headers
// (include/internal_proto.h, sheepdog_proto.h of its public source, configured with corosync)
// and filled the way sheep/group.c and sheep/vdi.c fill them; each is checked by length and
// SHA-256, with the head spelled out.
import { createHash } from 'node:crypto'
import t from 'tap'
import { REQ_VDI, REQ_VDI_STATE, RSP_VDI, encodeRequestHeader, encodeResponseHeader } from '../../lib/codec.js'
import {
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_FLAG_CMD_WRITE,
  SD_MAX_VDI_LEN,
  SD_OP_NEW_VDI,
  SD_OP_NOTIFY_VDI_ADD,
  SD_RES_SUCCESS,
  SD_SHEEP_PROTO_VER,
  SD_STATUS_OK,
  SD_STATUS_WAIT,
} from '../../lib/proto.js'
import type { SdNode } from '../../lib/structs.js'
import { JOIN_PAYLOAD_MAX_SIZE, type JoinInfo, decodeJoinInfo, encodeJoinInfo } from '../../sheep/cluster/join-info.js'
import { decodeVdiOpMessage, encodeVdiOpMessage, messageData } from '../../sheep/cluster/op-message.js'

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** The reference's mknode: IPv4-mapped 10.0.0.LAST. */
function node(last: number, port: number, space: bigint, nrVnodes: number): SdNode {
  const addr = Buffer.alloc(16)
  addr[10] = 0xff
  addr[11] = 0xff
  addr[12] = 10
  addr[15] = last
  return { addr, port, ioAddr: Buffer.alloc(16), ioPort: 0, nrVnodes, zone: 0x0a00000a + last, space }
}

/** The length the original's corosync driver sends a join with (corosync.ts pads ours to it). */
function padded(b: Buffer): Buffer {
  const out = Buffer.alloc(JOIN_PAYLOAD_MAX_SIZE)
  b.copy(out)
  return out
}

const settings = {
  ctime: 0x5f00000012345678n,
  flags: SD_CLUSTER_FLAG_AUTO_VNODES,
  nrCopies: 3,
  copyPolicy: 0,
  blockSizeShift: 22,
  defaultStore: 'tree',
  disableRecovery: false,
}
const joiner: JoinInfo = {
  protoVer: SD_SHEEP_PROTO_VER,
  status: SD_STATUS_WAIT,
  epoch: 7,
  settings,
  epochNodes: [node(1, 7000, 0x123456789n, 128), node(2, 7001, 0x223456789n, 128)],
  autoVnodes: true,
  weights: undefined,
}
const member: JoinInfo = {
  ...joiner,
  status: SD_STATUS_OK,
  epoch: 8,
  settings: { ...settings, disableRecovery: true },
  epochNodes: [...joiner.epochNodes, node(3, 7002, 0x323456789n, 64)],
}

const GOLDEN = {
  join: { length: 131072, sha256: '4c591a6dab1bf2e3ebb868bcdc381db74f375ebcf2bc4fcd0e3fa49f1b2e33a7' },
  unformatted: { length: 131072, sha256: '4b930b147947b40b83c7782f380eacff1b57768256326e7a07222e00eb094e8f' },
  accept: { length: 131072, sha256: 'e9d0bf58a7f2527c150267e4fa07e15cc1899a0d08445078264be2a71f66db7e' },
  notifyVdiAdd: { length: 96, sha256: '49102441832be6798f8ecd8ee7432782146d0832f4e0284f00db128b96224a3b' },
  newVdi: { length: 352, sha256: '16780978ed8ed703f672461cb71a17458d1cbba03ad51de20004e205ac8c1ce9' },
}

t.test('a join is the original sys->cinfo, byte for byte', async (t) => {
  const join = padded(encodeJoinInfo(joiner))
  t.equal(join.length, GOLDEN.join.length)
  t.equal(sha256(join), GOLDEN.join.sha256)
  const unformatted = padded(
    encodeJoinInfo({
      protoVer: SD_SHEEP_PROTO_VER,
      status: SD_STATUS_WAIT,
      epoch: 0,
      settings: { ctime: 0n, flags: 0, nrCopies: 0, copyPolicy: 0, blockSizeShift: 0, defaultStore: '', disableRecovery: false },
      epochNodes: [],
      // started with -V: the original clears the bit
      autoVnodes: false,
      weights: undefined,
    }),
  )
  t.equal(sha256(unformatted), GOLDEN.unformatted.sha256, 'an unformatted node with fixed vnodes')
  const back = decodeJoinInfo(join)
  if (typeof back === 'string') throw new Error(back)
  t.same({ ...back, weights: undefined }, joiner, 'decodes to what was encoded')
  t.equal(back.weights, undefined, 'a join carries nothing of ours')
})

t.test("an accept is the member's cluster_info written over the join (sd_join_handler)", async (t) => {
  const join = padded(encodeJoinInfo(joiner))
  const accept = encodeJoinInfo(member, join)
  t.equal(accept.length, GOLDEN.accept.length, 'as long as the join')
  t.equal(sha256(accept), GOLDEN.accept.sha256)
  t.same(
    [...accept.subarray(0, 0x20)],
    [
      0x0a, 0x01, 0x03, 0x00, 0x08, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00, 0x5f, 0x04, 0x00, 0x03, 0x00, 0x01, 0x16, 0x00, 0x00, 0x00,
      0x74, 0x72, 0x65, 0x65, 0x00, 0x00, 0x00,
    ],
    'proto_ver, disable_recovery, nr_nodes, epoch, ctime, flags, copies, policy, status, block size shift, store',
  )
})

t.test('an accept of ours keeps the weights after the nodes, where the original does not look', async (t) => {
  const join = padded(encodeJoinInfo(joiner))
  const weights = [{ addr: member.epochNodes[1].addr, port: 7001, space: 99n, nrVnodes: 32 }]
  const ours = encodeJoinInfo({ ...member, weights }, join)
  const original = encodeJoinInfo(member, join)
  const nodesEnd = 48 + 3 * 80
  t.ok(ours.subarray(0, nodesEnd).equals(original.subarray(0, nodesEnd)), 'cluster_info as the original would send it')
  t.equal(ours.length, original.length)
  const back = decodeJoinInfo(ours)
  if (typeof back === 'string') throw new Error(back)
  t.same(back.weights, weights)
  const fromOriginal = decodeJoinInfo(original)
  t.equal(typeof fromOriginal !== 'string' && fromOriginal.weights, undefined, "an original member's accept has none")
})

t.test('cluster op messages are vdi_op_message as prepare_cluster_msg fills it', async (t) => {
  const addReq = encodeRequestHeader({
    opcode: SD_OP_NOTIFY_VDI_ADD,
    variant: REQ_VDI_STATE,
    fields: { oldVid: 0xabcdef, newVid: 0xabcdf0, copies: 3, setBitmap: 0, copyPolicy: 0, blockSizeShift: 22 },
  })
  const addRsp = Buffer.alloc(48)
  const notify = encodeVdiOpMessage({ req: addReq, rsp: addRsp, data: messageData(addReq, true, undefined, undefined, 0) })
  t.equal(notify.length, GOLDEN.notifyVdiAdd.length)
  t.equal(sha256(notify), GOLDEN.notifyVdiAdd.sha256, 'NOTIFY_VDI_ADD (notify_vdi_add)')

  const req = encodeRequestHeader({
    opcode: SD_OP_NEW_VDI,
    flags: SD_FLAG_CMD_WRITE,
    id: 5,
    dataLength: SD_MAX_VDI_LEN,
    variant: REQ_VDI,
    fields: { vdiSize: 1n << 30n, copies: 2, blockSizeShift: 22 },
  })
  const rsp = encodeResponseHeader({
    opcode: SD_OP_NEW_VDI,
    id: 5,
    epoch: 8,
    dataLength: 0,
    result: SD_RES_SUCCESS,
    variant: RSP_VDI,
    fields: { vdiId: 0xabcdf0, copies: 2, blockSizeShift: 22 },
  })
  const name = Buffer.from('alpha')
  const unblock = encodeVdiOpMessage({ req, rsp, data: messageData(req, true, name, undefined, 0) })
  t.equal(unblock.length, GOLDEN.newVdi.length, 'the name travels at the length the request said')
  t.equal(sha256(unblock), GOLDEN.newVdi.sha256, "NEW_VDI's UNBLOCK: request, the work's answer, the name")
  const back = decodeVdiOpMessage(unblock)
  if (typeof back === 'string') throw new Error(back)
  t.ok(back.req.equals(req) && back.rsp.equals(rsp), 'decodes to its parts')
  t.equal(back.data.subarray(0, 5).toString(), 'alpha')
})

t.test('message data: what the op broadcasts', async (t) => {
  const read = encodeRequestHeader({ opcode: 0x8a, dataLength: 160 })
  const nodes = Buffer.alloc(160, 7)
  t.same(messageData(read, true, undefined, nodes, 160), nodes, 'a main phase without client data gets the work reply')
  t.same(messageData(read, false, undefined, nodes, 160), Buffer.alloc(160), 'an op without a main phase sends zeros in its place')
  t.equal(messageData(read, false, undefined, undefined, 0).length, 0)
})
