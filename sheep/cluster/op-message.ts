// A cluster op as it travels through the cluster driver (NOTIFY, and UNBLOCK after a work
// phase): the original's struct vdi_op_message (include/internal_proto.h) — the request header,
// the response header and the data — filled as its prepare_cluster_msg (sheep/group.c) fills it,
// so that original sheep and ours run each other's cluster ops.
//
// One message of ours has no counterpart: a weight a member announces through a driver without
// UPDATE_NODE (local, zookeeper; never mixed with original sheep). It travels as a
// vdi_op_message of a private opcode whose data is the member's new sd_node.
import { SD_FLAG_CMD_WRITE, SD_HEADER_SIZE, SD_OP_PRIVATE_NODE_UPDATE } from '../../lib/proto.js'
import { SD_NODE_SIZE } from '../../lib/structs.js'

export const VDI_OP_MESSAGE_HEADER_SIZE = 2 * SD_HEADER_SIZE
export { SD_OP_PRIVATE_NODE_UPDATE }
const REQ_OPCODE_AT = 1
const REQ_FLAGS_AT = 2
const REQ_DATA_LENGTH_AT = 12

export interface VdiOpMessage {
  /** The request header as the client sent it (48 bytes). */
  req: Buffer
  /** The response header (48 bytes): the work phase's, or a success for a notify. */
  rsp: Buffer
  data: Buffer
}

export function encodeVdiOpMessage(m: VdiOpMessage): Buffer {
  return Buffer.concat([m.req.subarray(0, SD_HEADER_SIZE), m.rsp.subarray(0, SD_HEADER_SIZE), m.data])
}

export function decodeVdiOpMessage(buf: Buffer): VdiOpMessage | string {
  if (buf.length < VDI_OP_MESSAGE_HEADER_SIZE) return `a cluster op message of ${buf.length} bytes is shorter than its headers`
  return {
    req: Buffer.from(buf.subarray(0, SD_HEADER_SIZE)),
    rsp: Buffer.from(buf.subarray(SD_HEADER_SIZE, VDI_OP_MESSAGE_HEADER_SIZE)),
    data: Buffer.from(buf.subarray(VDI_OP_MESSAGE_HEADER_SIZE)),
  }
}

export function messageOpcode(m: VdiOpMessage): number {
  return m.req[REQ_OPCODE_AT]
}

/**
 * The data a cluster op's message carries (prepare_cluster_msg): an op with a main phase that
 * the client sent data with broadcasts that data (the VDI name of NEW_VDI, DEL_VDI, LOCK_VDI;
 * the store of MAKE_FS); any other op what its work phase answered, `replyLength` bytes (zeros
 * where an op without a main phase answered nothing to broadcast).
 */
export function messageData(req: Buffer, hasMain: boolean, requestData: Buffer | undefined, reply: Buffer | undefined, replyLength: number): Buffer {
  const write = (req.readUInt16LE(REQ_FLAGS_AT) & SD_FLAG_CMD_WRITE) !== 0
  if (hasMain && write) {
    const length = req.readUInt32LE(REQ_DATA_LENGTH_AT)
    const out = Buffer.alloc(length)
    requestData?.copy(out, 0, 0, length)
    return out
  }
  const out = Buffer.alloc(replyLength)
  if (hasMain) reply?.copy(out, 0, 0, replyLength)
  return out
}

/** The private node update (see the top of the file): `node` is the sender's new sd_node. */
export function nodeUpdateRequest(): Buffer {
  const req = Buffer.alloc(SD_HEADER_SIZE)
  req[REQ_OPCODE_AT] = SD_OP_PRIVATE_NODE_UPDATE
  req.writeUInt16LE(SD_FLAG_CMD_WRITE, REQ_FLAGS_AT)
  req.writeUInt32LE(SD_NODE_SIZE, REQ_DATA_LENGTH_AT)
  return req
}
