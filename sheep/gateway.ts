// Gateway object I/O (wire-protocol.md §11): one function per client op — READ_OBJ, WRITE_OBJ,
// CREATE_AND_WRITE_OBJ (with copy-on-write), REMOVE_OBJ, DECREF_OBJ — giving each op its
// meaning and handing the object I/O to the replica fan-out (replica-io.ts). Snapshot data is
// read-only; a write of an inode's index goes through reference counting; tgt's I/O keeps the
// inode coherent between the gateways of a shared lock (INODE_INVALIDATED until a stale gateway
// re-reads the inode).
import { isAllZero, zeroExtended } from '../lib/bytes.js'
import { REQ_OBJ, REQ_REF, type SdRequest, reqVariant } from '../lib/codec.js'
import { OLD_SD_INODE_SIZE, isDataObj, isVdiObj, isVmstateObj, oidToVid } from '../lib/oid.js'
import {
  OBJECT_CHUNK_BYTES,
  SD_FLAG_CMD_COW,
  SD_FLAG_CMD_TGT,
  SD_FLAG_CMD_UNSTABLE,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_DECREF_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_INODE_INVALIDATED,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_OBJ,
  SD_RES_READONLY,
  SD_RES_SUCCESS,
} from '../lib/proto.js'
import { type OpContext, type OpReply, reply } from './op-types.js'
import { objectSizeFor } from './peer.js'
import { isIndexUpdate, writeIndexWithRefs } from './refcount.js'
import { type ObjFields, gatewayRead, gatewaySyncAll, gatewayWriteAll } from './replica-io.js'
import type { Sheep } from './sheep.js'
import { inodeRefreshRequired, invalidateOtherInodes, validateInode } from './vdi.js'

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

/**
 * READ_OBJ: one replica; a whole-inode read (tgt re-reading it) re-validates this node's copy.
 * A data object read here may be answered in a buffer of the server's pool (ctx.replyPool).
 */
export async function gatewayReadObj(sheep: Sheep, req: SdRequest, _data?: Buffer, ctx?: OpContext): Promise<OpReply> {
  const obj = reqVariant(req, REQ_OBJ)
  const refresh = isInodeRefreshRead(obj.oid, obj.offset, req.dataLength)
  if (!refresh && mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
  if (obj.offset + req.dataLength > objectSizeFor(sheep, obj.oid)) return reply(SD_RES_INVALID_PARMS)
  const r = await gatewayRead(sheep, obj, req.dataLength, isDataObj(obj.oid) ? ctx?.replyPool : undefined)
  if (refresh && r.result === SD_RES_SUCCESS) await validateInode(sheep, oidToVid(obj.oid))
  return r
}

/** WRITE_OBJ: every replica; an inode index update also drops the references it replaces. */
export async function gatewayWriteObj(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
  const obj = reqVariant(req, REQ_OBJ)
  if (mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
  if (isReadonlyTarget(sheep, obj.oid)) return reply(SD_RES_READONLY)
  if (obj.offset + (data?.length ?? 0) > objectSizeFor(sheep, obj.oid)) return reply(SD_RES_INVALID_PARMS)
  if (data && isIndexUpdate(obj.oid, obj.offset, data.length)) {
    await invalidateOtherInodes(sheep, oidToVid(obj.oid))
    return writeIndexWithRefs(sheep, obj, data)
  }
  return gatewayWriteAll(sheep, SD_OP_WRITE_OBJ, obj, data ?? Buffer.alloc(0), undefined, req.flags & SD_FLAG_CMD_UNSTABLE)
}

/** SYNC_NODES (ours): every unstable write accepted before it durable on every node. */
export function gatewaySyncNodes(sheep: Sheep): Promise<OpReply> {
  return gatewaySyncAll(sheep)
}

/** CREATE_AND_WRITE_OBJ: every replica, built from the source object with CMD_COW. */
export async function gatewayCreateAndWriteObj(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
  const obj = reqVariant(req, REQ_OBJ)
  const size = objectSizeFor(sheep, obj.oid)
  if (mustRefreshInode(sheep, req, obj.oid)) return reply(SD_RES_INODE_INVALIDATED)
  if (isReadonlyTarget(sheep, obj.oid)) return reply(SD_RES_READONLY)
  const payload = data ?? Buffer.alloc(0)
  if (obj.offset + payload.length > size) return reply(SD_RES_INVALID_PARMS)
  if (req.flags & SD_FLAG_CMD_COW) return copyOnWrite(sheep, obj, payload, size)
  return gatewayWriteAll(sheep, SD_OP_CREATE_AND_WRITE_OBJ, { ...obj, cowOid: 0n }, payload)
}

/** REMOVE_OBJ: every replica. */
export function gatewayRemoveObj(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  return gatewayWriteAll(sheep, SD_OP_REMOVE_OBJ, reqVariant(req, REQ_OBJ), undefined)
}

/** DECREF_OBJ: every replica of the ledger object drops one reference. */
export function gatewayDecrefObj(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  const ref = reqVariant(req, REQ_REF)
  const obj = { oid: ref.oid, cowOid: 0n, copies: 0, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset: 0 }
  return gatewayWriteAll(sheep, SD_OP_DECREF_OBJ, obj, undefined, { generation: ref.generation, count: ref.count })
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
