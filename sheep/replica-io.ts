// Replica fan-out (wire-protocol.md §11): find the holders of an object on the ring of the
// sheep's current epoch and send them a peer op — one holder for reads (this node first, then
// the others from a random start), every holder in parallel for writes, creates, removes and
// reference drops — stamped with that epoch, and again with a fresh ring when a holder answers
// that the epoch moved on. This node's own replica goes through runPeerOp directly; the others
// through pooled connections. It knows nothing of what the ops mean: the gateway (client ops),
// reference counting and VDI operations all do their object I/O through it.
import type { RequestOptions } from '../lib/client.js'
import { REQ_OBJ, REQ_REF } from '../lib/codec.js'
import { SdError } from '../lib/errors.js'
import type { Layout } from '../lib/layout.js'
import { oidToVid } from '../lib/oid.js'
import {
  GATEWAY_TO_PEER_OP,
  SD_CLUSTER_FLAG_STRICT,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_DECREF_OBJ,
  SD_OP_DECREF_PEER,
  SD_OP_READ_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_HALT,
  SD_RES_KILLED,
  SD_RES_NETWORK_ERROR,
  SD_RES_NEW_NODE_VER,
  SD_RES_NO_OBJ,
  SD_RES_OLD_NODE_VER,
  SD_RES_SUCCESS,
  SD_RES_WAIT_FOR_FORMAT,
  SD_RES_WAIT_FOR_JOIN,
  SD_SHEEP_PROTO_VER,
} from '../lib/proto.js'
import type { SdNode } from '../lib/structs.js'
import { type OpReply, reply } from './op-types.js'
import { type ObjFields, runPeerOp } from './peer.js'
import type { Sheep } from './sheep.js'

export type { ObjFields }

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
 * when it is this node). A reference drop goes over the wire even to this node: its peer side
 * is reference counting's (refcount.ts), which itself does I/O through this module.
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
    return remote(sheep, epoch, node, { opcode: peerOp, variant: REQ_REF, fields })
  }
  if (sheep.isSelf(node)) return runPeerOp(sheep, { opcode: peerOp, obj, data, length }, epoch)
  return remote(sheep, epoch, node, { opcode: peerOp, variant: REQ_OBJ, fields: obj, data, readLength: data ? undefined : length })
}

async function remote<L extends Layout>(sheep: Sheep, epoch: number, node: SdNode, opts: RequestOptions<L>): Promise<OpReply> {
  const conn = sheep.peers.get(node)
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
