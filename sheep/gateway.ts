// Gateway object I/O (wire-protocol.md §11): find the replicas of an object on the hash ring and
// turn the client's op into peer ops — one replica for reads (failing over to the next), all
// replicas in parallel for writes, creates and removes. Replicas on this node are served by a
// direct call; the others through pooled connections, with retries when the epoch moves on.
// Snapshot data is read-only, and tgt's I/O keeps the inode coherent between the gateways of a
// shared lock (INODE_INVALIDATED until a stale gateway re-reads the inode).
import type { RequestOptions } from '../lib/client.js'
import { REQ_OBJ, REQ_REF, type SdRequest, decodeRequestHeader, encodeRequestHeader, reqVariant } from '../lib/codec.js'
import type { Layout } from '../lib/layout.js'
import { isAllZero, zeroExtended } from '../lib/bytes.js'
import { SdError } from '../lib/errors.js'
import { OLD_SD_INODE_SIZE, isDataObj, isVdiObj, isVmstateObj, oidToVid } from '../lib/oid.js'
import {
  GATEWAY_TO_PEER_OP,
  OBJECT_CHUNK_BYTES,
  SD_CLUSTER_FLAG_STRICT,
  SD_OP_DECREF_OBJ,
  SD_OP_DECREF_PEER,
  SD_FLAG_CMD_COW,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_READ_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_HALT,
  SD_RES_INVALID_PARMS,
  SD_RES_KILLED,
  SD_RES_NETWORK_ERROR,
  SD_RES_NEW_NODE_VER,
  SD_RES_NO_OBJ,
  SD_RES_OLD_NODE_VER,
  SD_RES_READONLY,
  SD_RES_SUCCESS,
  SD_RES_WAIT_FOR_FORMAT,
  SD_RES_WAIT_FOR_JOIN,
  SD_SHEEP_PROTO_VER,
  SD_FLAG_CMD_TGT,
  SD_RES_INODE_INVALIDATED,
} from '../lib/proto.js'
import { type SdNode, addrToText } from '../lib/structs.js'
import { type OpReply, reply } from './op-types.js'
import { type ObjFields, objectSizeFor, runPeerOp } from './peer.js'
import { decrefPeer, isIndexUpdate, writeIndexWithRefs } from './refcount.js'
import { inodeRefreshRequired, invalidateOtherInodes, validateInode } from './vdi.js'

export type { ObjFields }
import type { Sheep } from './sheep.js'

/** Results after which a forwarded op is retried with a fresh ring instead of failing (§11.5). */
const RETRY_RESULTS = new Set([SD_RES_OLD_NODE_VER, SD_RES_NEW_NODE_VER, SD_RES_NETWORK_ERROR, SD_RES_WAIT_FOR_JOIN, SD_RES_WAIT_FOR_FORMAT, SD_RES_KILLED])
/** How many times a gateway op is re-issued after retryable failures. */
export const GATEWAY_MAX_RETRIES = 8
/** Pause before a retry, so membership changes can settle. */
export const GATEWAY_RETRY_DELAY_MS = 250
/** Timeout of one forwarded request (the original waits up to ~35 s). */
export const GATEWAY_FORWARD_TIMEOUT_MS = 35_000

/** Effective copies for an object: the request's, else its VDI's, capped by zones (§10.3). */
function copiesFor(sheep: Sheep, obj: ObjFields): number {
  return obj.copies || sheep.vdiCopies(oidToVid(obj.oid))
}

/** Generation and count of a reference drop (DECREF_OBJ), forwarded with the ref variant. */
export interface RefFields {
  generation: number
  count: number
}

/**
 * Sends one peer op of epoch `epoch` — the epoch whose ring chose `node` — to `node` (directly
 * when it is this node).
 */
async function forward(
  sheep: Sheep,
  epoch: number,
  node: SdNode,
  opcode: number,
  obj: ObjFields,
  data: Buffer | undefined,
  length: number,
  ref?: RefFields,
): Promise<OpReply> {
  const peerOp = GATEWAY_TO_PEER_OP.get(opcode) ?? opcode
  if (peerOp === SD_OP_DECREF_PEER) {
    const fields = { oid: obj.oid, generation: ref?.generation ?? 0, count: ref?.count ?? 0 }
    if (sheep.isSelf(node)) {
      return decrefPeer(sheep, decodeRequestHeader(encodeRequestHeader({ opcode: peerOp, epoch, variant: REQ_REF, fields })))
    }
    return remote(sheep, epoch, node, { opcode: peerOp, variant: REQ_REF, fields })
  }
  if (sheep.isSelf(node)) return runPeerOp(sheep, { opcode: peerOp, obj, data, length }, epoch)
  return remote(sheep, epoch, node, { opcode: peerOp, variant: REQ_OBJ, fields: obj, data, readLength: data ? undefined : length })
}

async function remote<L extends Layout>(sheep: Sheep, epoch: number, node: SdNode, opts: RequestOptions<L>): Promise<OpReply> {
  const conn = sheep.peers.get({ host: addrToText(node.addr), port: node.port })
  try {
    const { rsp, data: out } = await conn.request({
      ...opts,
      protoVer: SD_SHEEP_PROTO_VER,
      epoch,
      timeoutMs: GATEWAY_FORWARD_TIMEOUT_MS,
    })
    return reply(rsp.result, rsp.result === SD_RES_SUCCESS && out.length > 0 ? out : undefined)
  } catch (e) {
    if (e instanceof SdError) return reply(e.code)
    throw e
  }
}

async function withRetries(sheep: Sheep, attempt: () => Promise<OpReply>): Promise<OpReply> {
  let last: OpReply = reply(SD_RES_NETWORK_ERROR)
  for (let i = 0; i <= GATEWAY_MAX_RETRIES; i++) {
    last = await attempt()
    if (!RETRY_RESULTS.has(last.result)) return last
    sheep.log.debug(`gateway retry ${i + 1} after result 0x${last.result.toString(16)}`)
    await new Promise((r) => setTimeout(r, GATEWAY_RETRY_DELAY_MS))
  }
  return last
}

/** Reads from one replica: this node first when it holds one, then the others from a random start. */
export async function gatewayRead(sheep: Sheep, obj: ObjFields, length: number): Promise<OpReply> {
  if (sheep.ring.isEmpty) return reply(SD_RES_HALT)
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    const targets = sheep.ring.replicasFor(obj.oid, copiesFor(sheep, obj))
    const local = targets.findIndex((n) => sheep.isSelf(n))
    const order: SdNode[] = []
    if (local >= 0) order.push(targets[local])
    const others = targets.filter((_, i) => i !== local)
    const start = others.length > 0 ? Math.floor(Math.random() * others.length) : 0
    for (let i = 0; i < others.length; i++) order.push(others[(start + i) % others.length])
    let last: OpReply = reply(SD_RES_NO_OBJ)
    for (const node of order) {
      last = await forward(sheep, epoch, node, SD_OP_READ_OBJ, obj, undefined, length)
      if (last.result === SD_RES_SUCCESS) return last
      if (RETRY_RESULTS.has(last.result) && last.result !== SD_RES_NETWORK_ERROR) return last
    }
    return last
  })
}

/** Sends a write-type op to every replica at once; success only if all succeed (§11.2). */
export async function gatewayWriteAll(sheep: Sheep, opcode: number, obj: ObjFields, data: Buffer | undefined, ref?: RefFields): Promise<OpReply> {
  if (sheep.ring.isEmpty) return reply(SD_RES_HALT)
  const copies = copiesFor(sheep, obj)
  if (opcode !== SD_OP_REMOVE_OBJ && opcode !== SD_OP_DECREF_OBJ && sheep.settings.flags & SD_CLUSTER_FLAG_STRICT && sheep.ring.nrZones < copies) {
    return reply(SD_RES_HALT)
  }
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    const targets = sheep.ring.replicasFor(obj.oid, copies)
    const replies = await Promise.all(targets.map((node) => forward(sheep, epoch, node, opcode, obj, data, 0, ref)))
    // a replica that asks for a retry (the epoch moved on) wins over one that failed for good
    const failed = replies.filter((r) => r.result !== SD_RES_SUCCESS)
    return reply((failed.find((r) => RETRY_RESULTS.has(r.result)) ?? failed[0] ?? reply(SD_RES_SUCCESS)).result)
  })
}

/** Data objects of a snapshot are read-only (§11.6). */
function isReadonlyTarget(sheep: Sheep, oid: bigint): boolean {
  if (!isDataObj(oid) && !isVmstateObj(oid)) return false
  return sheep.vdis.get(oidToVid(oid))?.snapshot === true
}

/** A read of a whole inode (header and index, as tgt re-reads it): it re-validates this node (§11.6). */
function isInodeRefreshRead(oid: bigint, offset: number, length: number): boolean {
  return isVdiObj(oid) && offset === 0 && length === OLD_SD_INODE_SIZE
}

/** I/O from tgt (CMD_TGT) through a node whose copy of the inode a shared-lock peer invalidated. */
function mustRefreshInode(sheep: Sheep, req: SdRequest, oid: bigint): boolean {
  return (req.flags & SD_FLAG_CMD_TGT) !== 0 && inodeRefreshRequired(sheep, oidToVid(oid))
}

/** CREATE_AND_WRITE_OBJ, READ_OBJ, WRITE_OBJ, REMOVE_OBJ as received from a client. */
export async function handleGatewayRequest(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
  const obj = reqVariant(req, REQ_OBJ)
  const size = objectSizeFor(sheep, obj.oid)
  switch (req.opcode) {
    case SD_OP_READ_OBJ: {
      const refresh = isInodeRefreshRead(obj.oid, obj.offset, req.dataLength)
      if (!refresh && mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
      if (obj.offset + req.dataLength > size) return reply(SD_RES_INVALID_PARMS)
      const r = await gatewayRead(sheep, obj, req.dataLength)
      if (refresh && r.result === SD_RES_SUCCESS) await validateInode(sheep, oidToVid(obj.oid))
      return r
    }
    case SD_OP_WRITE_OBJ:
      if (mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
      if (isReadonlyTarget(sheep, obj.oid)) return reply(SD_RES_READONLY)
      if (obj.offset + (data?.length ?? 0) > size) return reply(SD_RES_INVALID_PARMS)
      if (data && isIndexUpdate(obj.oid, obj.offset, data.length)) {
        await invalidateOtherInodes(sheep, oidToVid(obj.oid))
        return writeIndexWithRefs(sheep, obj, data)
      }
      return gatewayWriteAll(sheep, SD_OP_WRITE_OBJ, obj, data ?? Buffer.alloc(0))
    case SD_OP_CREATE_AND_WRITE_OBJ: {
      if (mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
      if (isReadonlyTarget(sheep, obj.oid)) return reply(SD_RES_READONLY)
      const payload = data ?? Buffer.alloc(0)
      if (obj.offset + payload.length > size) return reply(SD_RES_INVALID_PARMS)
      if (req.flags & SD_FLAG_CMD_COW) return copyOnWrite(sheep, obj, payload, size)
      return gatewayWriteAll(sheep, SD_OP_CREATE_AND_WRITE_OBJ, { ...obj, cowOid: 0n }, payload)
    }
    case SD_OP_REMOVE_OBJ:
      return gatewayWriteAll(sheep, SD_OP_REMOVE_OBJ, obj, undefined)
    case SD_OP_DECREF_OBJ: {
      const ref = reqVariant(req, REQ_REF)
      return gatewayWriteAll(sheep, SD_OP_DECREF_OBJ, { ...obj, oid: ref.oid }, undefined, { generation: ref.generation, count: ref.count })
    }
    default:
      return reply(SD_RES_INVALID_PARMS)
  }
}

/**
 * COW create (§11.3): the new object = the source object with the payload laid over it. It is
 * built a piece of at most OBJECT_CHUNK_BYTES at a time, as objects may be bigger than one
 * request: the first piece creates it (full size, zero-filled) on every replica, later pieces are
 * written over it, and those that are all zeros are skipped. Nobody reads the object half-built:
 * the VDI's index names it only once the client has recorded it after this succeeded. A missing
 * source reads as zeros; a source that cannot be read fails the create.
 */
async function copyOnWrite(sheep: Sheep, obj: ObjFields, payload: Buffer, size: number): Promise<OpReply> {
  const target = { ...obj, cowOid: 0n }
  if (obj.offset === 0 && payload.length === size) return gatewayWriteAll(sheep, SD_OP_CREATE_AND_WRITE_OBJ, { ...target, offset: 0 }, payload)
  for (let at = 0; at < size; at += OBJECT_CHUNK_BYTES) {
    const length = Math.min(OBJECT_CHUNK_BYTES, size - at)
    const src = await gatewayRead(sheep, { ...obj, oid: obj.cowOid, offset: at, copies: 0 }, length)
    if (src.result !== SD_RES_SUCCESS && src.result !== SD_RES_NO_OBJ) return src
    // the source's bytes are a buffer of our own: the payload is laid over them in place
    const piece = src.data?.length === length ? src.data : zeroExtended(src.data?.subarray(0, length) ?? Buffer.alloc(0), length)
    const from = Math.max(obj.offset, at)
    const to = Math.min(obj.offset + payload.length, at + length)
    if (from < to) payload.copy(piece, from - at, from - obj.offset, to - obj.offset)
    if (at > 0 && isAllZero(piece)) continue
    const r = await gatewayWriteAll(sheep, at === 0 ? SD_OP_CREATE_AND_WRITE_OBJ : SD_OP_WRITE_OBJ, { ...target, offset: at }, piece)
    if (r.result !== SD_RES_SUCCESS) return r
  }
  return reply(SD_RES_SUCCESS)
}

/** Reads an object through the gateway from inside sheep (VDI lookups); throws SdError. */
export async function readObject(sheep: Sheep, oid: bigint, offset: number, length: number, copies = 0): Promise<Buffer> {
  const r = await gatewayRead(sheep, { oid, cowOid: 0n, copies, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset }, length)
  if (r.result !== SD_RES_SUCCESS || !r.data) throw new SdError(r.result)
  return r.data
}

/** Creates or overwrites an object through the gateway from inside sheep; throws SdError. */
export async function writeObject(sheep: Sheep, oid: bigint, offset: number, data: Buffer, opts: { create: boolean; copies?: number }): Promise<void> {
  const obj = { oid, cowOid: 0n, copies: opts.copies ?? 0, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset }
  const r = await gatewayWriteAll(sheep, opts.create ? SD_OP_CREATE_AND_WRITE_OBJ : SD_OP_WRITE_OBJ, obj, data)
  if (r.result !== SD_RES_SUCCESS) throw new SdError(r.result)
}
