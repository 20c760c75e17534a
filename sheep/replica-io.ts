// Replica fan-out (wire-protocol.md §11): find the holders of an object on the ring of the
// sheep's current epoch and send them a peer op — one holder for reads (this node first, then
// the others from a random start), every holder in parallel for writes, creates, removes and
// reference drops — stamped with that epoch, and again with a fresh ring when a holder answers
// that the epoch moved on (forward.ts). Objects of erasure-coded VDIs go to the strip fan-out
// instead (strip-io.ts). It knows nothing of what the ops mean: the gateway (client ops),
// reference counting and VDI operations all do their object I/O through it.
import type { BufferPool } from '../lib/buffer-pool.js'
import { SdError } from '../lib/errors.js'
import { oidToVid } from '../lib/oid.js'
import {
  SD_CLUSTER_FLAG_STRICT,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_DECREF_OBJ,
  SD_OP_READ_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_HALT,
  SD_RES_NETWORK_ERROR,
  SD_RES_NO_OBJ,
  SD_RES_SUCCESS,
} from '../lib/proto.js'
import type { SdNode } from '../lib/structs.js'
import { RETRY_RESULTS, type RefFields, forward, syncPeer, withRetries } from './forward.js'
import { type OpReply, reply } from './op-types.js'
import type { ObjFields } from './peer.js'
import type { Sheep } from './sheep.js'
import { stripRead, stripWriteAll } from './strip-io.js'

export type { ObjFields, RefFields }

/** Effective copies for an object: the request's, else its VDI's, capped by zones (§10.3). */
function copiesFor(sheep: Sheep, obj: ObjFields): number {
  return obj.copies || sheep.vdiCopies(oidToVid(obj.oid))
}

/** Reads from one replica: this node first when it holds one, then the others from a random start. */
export async function gatewayRead(sheep: Sheep, obj: ObjFields, length: number, replyPool?: BufferPool): Promise<OpReply> {
  if (sheep.ring.isEmpty) return reply(SD_RES_HALT)
  const policy = sheep.ecPolicyOf(obj.oid)
  if (policy) return stripRead(sheep, policy, obj, length)
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
      last = await forward(sheep, epoch, node, SD_OP_READ_OBJ, obj, undefined, length, undefined, 0, replyPool)
      if (last.result === SD_RES_SUCCESS) return last
      if (RETRY_RESULTS.has(last.result) && last.result !== SD_RES_NETWORK_ERROR) return last
    }
    return last
  })
}

/**
 * Sends a write-type op to every replica at once; success only if all succeed (§11.2). `flags`
 * go to the peers (SD_FLAG_CMD_UNSTABLE); the strips of erasure-coded objects are always durable.
 */
export async function gatewayWriteAll(sheep: Sheep, opcode: number, obj: ObjFields, data: Buffer | undefined, ref?: RefFields, flags = 0): Promise<OpReply> {
  if (sheep.ring.isEmpty) return reply(SD_RES_HALT)
  const copies = copiesFor(sheep, obj)
  if (opcode !== SD_OP_REMOVE_OBJ && opcode !== SD_OP_DECREF_OBJ && sheep.settings.flags & SD_CLUSTER_FLAG_STRICT && sheep.ring.nrZones < copies) {
    return reply(SD_RES_HALT)
  }
  const policy = sheep.ecPolicyOf(obj.oid)
  if (policy) return stripWriteAll(sheep, policy, opcode, obj, data)
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    const targets = sheep.ring.replicasFor(obj.oid, copies)
    const replies = await Promise.all(targets.map((node) => forward(sheep, epoch, node, opcode, obj, data, 0, ref, flags)))
    return worstOf(replies)
  })
}

/** A reply that asks for a retry (the epoch moved on) wins over one that failed for good. */
function worstOf(replies: OpReply[]): OpReply {
  const failed = replies.filter((r) => r.result !== SD_RES_SUCCESS)
  return reply((failed.find((r) => RETRY_RESULTS.has(r.result)) ?? failed[0] ?? reply(SD_RES_SUCCESS)).result)
}

/**
 * SYNC_NODES: every unstable write accepted so far made durable on every node of the cluster
 * (SYNC_PEER to all of them at once; again, on the new members, when membership moved on).
 */
export async function gatewaySyncAll(sheep: Sheep): Promise<OpReply> {
  if (sheep.ring.isEmpty) return reply(SD_RES_HALT)
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    return worstOf(await Promise.all(sheep.members.map((node) => syncPeer(sheep, epoch, node))))
  })
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
