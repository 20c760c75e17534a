// The node-local side of object I/O (wire-protocol.md §13.2–13.3): peer ops act on this node's
// store. Requests from other sheep are epoch-checked first; the gateway calls `runPeerOp`
// directly for replicas that live on this node.
import { resultOfError } from '../lib/errors.js'
import type { Fields } from '../lib/layout.js'
import { REQ_OBJ, type SdRequest, reqVariant } from '../lib/codec.js'
import { isDataObj, oidToVid, objectSizeOf, stripKey } from '../lib/oid.js'
import type { BufferPool } from '../lib/buffer-pool.js'
import {
  SD_FLAG_CMD_RECOVERY,
  SD_FLAG_CMD_UNSTABLE,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_READ_PEER,
  SD_OP_REMOVE_PEER,
  SD_OP_WRITE_PEER,
  SD_RES_INVALID_PARMS,
  SD_RES_NEW_NODE_VER,
  SD_RES_NO_OBJ,
  SD_RES_OLD_NODE_VER,
  SD_RES_SUCCESS,
} from '../lib/proto.js'
import { type OpContext, type OpReply, reply } from './op-types.js'
import type { Sheep } from './sheep.js'

/** How long a peer request from a newer epoch waits for this node to catch up. */
export const PEER_EPOCH_WAIT_MS = 30_000

export type ObjFields = Fields<typeof REQ_OBJ>

/** Size of the object `oid` (inode, attribute, ledger, or the VDI's object size). */
export function objectSizeFor(sheep: Sheep, oid: bigint): number {
  return objectSizeOf(oid, sheep.vdiBlockSizeShift(oidToVid(oid)))
}

/**
 * Size of what one node stores of `oid`: the whole object, or for an erasure-coded one a strip,
 * the VDI's object size / D whatever the object's kind (get_store_objsize).
 */
export function storedSizeFor(sheep: Sheep, oid: bigint): number {
  const policy = sheep.ecPolicyOf(oid)
  return policy ? 2 ** sheep.vdiBlockSizeShift(oidToVid(oid)) / policy.d : objectSizeFor(sheep, oid)
}

/**
 * The store key of what a peer op on `oid` touches: the object, or its strip `ecIndex`;
 * undefined when the index is not one of the object's strips.
 */
export function peerStoreKey(sheep: Sheep, oid: bigint, ecIndex: number): bigint | undefined {
  const policy = sheep.ecPolicyOf(oid)
  if (!policy) return oid
  return ecIndex < policy.d + policy.p ? stripKey(oid, ecIndex) : undefined
}

/**
 * What this node stores of `oid` in the current epoch (local_ec_index): the object itself, or
 * for an erasure-coded one the strip of this node's place among its holders; undefined when it
 * holds no strip of it.
 */
export function localStoreKey(sheep: Sheep, oid: bigint): bigint | undefined {
  const policy = sheep.ecPolicyOf(oid)
  if (!policy) return oid
  const place = sheep.ring.replicasFor(oid, policy.d + policy.p).findIndex((n) => sheep.isSelf(n))
  return place < 0 ? undefined : stripKey(oid, place)
}

export interface PeerOp {
  opcode: number
  /** Request flags (CMD_RECOVERY reads never wait and may be served from a stale copy). */
  flags?: number
  obj: ObjFields
  data?: Buffer
  /** READ_PEER: bytes wanted. */
  length: number
  /**
   * READ_PEER whose reply goes nowhere but out of a socket (the server's): a data object's bytes
   * may be read into a buffer of this pool, and the reply's `release` gives it back.
   */
  replyPool?: BufferPool
}

/** A read's reply; with `pool`, its bytes may be in a buffer of it, given back by `release`. */
async function pooledDataReply(sheep: Sheep, oid: bigint, offset: number, length: number, pool: BufferPool | undefined): Promise<OpReply> {
  const data = await sheep.store.read(oid, offset, length, { pool, lone: sheep.servingOneRequest })
  const r = dataReply(data)
  if (pool && typeof data !== 'number' && pool.lends(data)) r.release = () => pool.release(data)
  return r
}

/**
 * Executes one peer op of epoch `epoch` on the local store. The op waits for this node's store
 * to have settled into the current epoch (stale moves) and, unless it creates or is a recovery
 * read, for the object to be recovered. Only then, in the same synchronous step that queues it
 * on the store, is the epoch checked once more: an op of an older epoch (a parked one, or the
 * gateway's own local replica) never touches the store after the epoch moved on — the gateway
 * sends it again to the new holders (docs/recovery.md).
 */
export async function runPeerOp(sheep: Sheep, op: PeerOp, epoch: number): Promise<OpReply> {
  const { offset } = op.obj
  if (sheep.gateway) return reply(SD_RES_NO_OBJ)
  // from here on `oid` is the store key: the object, or the strip of it this op is about
  const oid = peerStoreKey(sheep, op.obj.oid, op.obj.ecIndex)
  if (oid === undefined) return reply(SD_RES_INVALID_PARMS)
  const forRecovery = ((op.flags ?? 0) & SD_FLAG_CMD_RECOVERY) !== 0
  await sheep.recovery.storeSettled()
  // an object this node should hold but has not recovered yet: recover it first (§7.6)
  if (!forRecovery && op.opcode !== SD_OP_CREATE_AND_WRITE_PEER) await sheep.recovery.waitForObject(oid)
  if (((epoch - sheep.epoch) | 0) < 0) return reply(SD_RES_OLD_NODE_VER)
  try {
    switch (op.opcode) {
      case SD_OP_READ_PEER: {
        const size = storedSizeFor(sheep, op.obj.oid)
        if (offset + op.length > Math.max(size, offset)) return reply(SD_RES_INVALID_PARMS)
        if (!forRecovery) return pooledDataReply(sheep, oid, offset, op.length, isDataObj(op.obj.oid) ? op.replyPool : undefined)
        // recovery: the live copy with every write accepted before this read, else the stale
        // copy of exactly the epoch asked about (a copy of another epoch may miss writes)
        const live = await sheep.store.readAfterMutations(oid, offset, op.length)
        if (live !== SD_RES_NO_OBJ) return dataReply(live)
        return dataReply(await sheep.store.readStale(oid, op.obj.tgtEpoch, offset, op.length))
      }
      case SD_OP_WRITE_PEER: {
        const data = op.data ?? Buffer.alloc(0)
        if (offset + data.length > storedSizeFor(sheep, op.obj.oid)) return reply(SD_RES_INVALID_PARMS)
        const unstable = ((op.flags ?? 0) & SD_FLAG_CMD_UNSTABLE) !== 0
        return reply(await sheep.store.write({ oid, offset, data, unstable }))
      }
      case SD_OP_CREATE_AND_WRITE_PEER: {
        const data = op.data ?? Buffer.alloc(0)
        const size = storedSizeFor(sheep, op.obj.oid)
        if (offset + data.length > size) return reply(SD_RES_INVALID_PARMS)
        return reply(await sheep.store.create({ oid, offset, data }, size))
      }
      case SD_OP_REMOVE_PEER:
        return reply(await sheep.store.remove(oid))
      default:
        return reply(SD_RES_INVALID_PARMS)
    }
  } catch (e) {
    // a full disk answers NO_SPACE ("Server has no space for new objects"), other disk errors EIO
    const result = resultOfError(e)
    sheep.log.error(`peer op 0x${op.opcode.toString(16)} on ${oid.toString(16)} failed: ${String(e)}`)
    return reply(result)
  }
}

function dataReply(data: Buffer | number): OpReply {
  return typeof data === 'number' ? reply(data) : reply(SD_RES_SUCCESS, data)
}

/** A peer op from another sheep: epoch check (§13.3), then the local store. */
export async function handlePeerRequest(sheep: Sheep, req: SdRequest, data: Buffer | undefined, ctx?: OpContext): Promise<OpReply> {
  const obj = reqVariant(req, REQ_OBJ)
  if (obj.oid !== 0n) {
    const diff = (req.epoch - sheep.epoch) | 0
    if (diff < 0) return reply(SD_RES_OLD_NODE_VER)
    if (diff > 0 && !(await sheep.group.waitForEpoch(req.epoch, PEER_EPOCH_WAIT_MS))) return reply(SD_RES_NEW_NODE_VER)
  }
  const op = { opcode: req.opcode, flags: req.flags, obj, data, length: req.dataLength, replyPool: ctx?.replyPool }
  return runPeerOp(sheep, op, obj.oid !== 0n ? req.epoch : sheep.epoch)
}
