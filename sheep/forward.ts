// Sending one peer op to one holder of an object, and re-issuing a gateway op after results that
// mean "try again with a fresh ring" (wire-protocol.md §11.5). Both fan-outs build on it: whole
// replicas (replica-io.ts) and erasure-coded strips (strip-io.ts). This node's own holder is
// served through runPeerOp directly; the others through pooled connections. A data object read
// for a server's reply lands in a buffer of the server's payload pool, whichever node answers.
import { BufferPool } from '../lib/buffer-pool.js'
import type { RequestOptions } from '../lib/client.js'
import { REQ_OBJ, REQ_REF } from '../lib/codec.js'
import { SdError } from '../lib/errors.js'
import type { Layout } from '../lib/layout.js'
import {
  GATEWAY_TO_PEER_OP,
  SD_OP_DECREF_PEER,
  SD_OP_READ_PEER,
  SD_OP_SYNC_PEER,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_SUPPORT,
  SD_RES_KILLED,
  SD_RES_NETWORK_ERROR,
  SD_RES_NEW_NODE_VER,
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

/** Results after which a forwarded op is retried with a fresh ring instead of failing (§11.5). */
export const RETRY_RESULTS = new Set([
  SD_RES_OLD_NODE_VER,
  SD_RES_NEW_NODE_VER,
  SD_RES_NETWORK_ERROR,
  SD_RES_WAIT_FOR_JOIN,
  SD_RES_WAIT_FOR_FORMAT,
  SD_RES_KILLED,
])
/** How many times a gateway op is re-issued after retryable failures. */
export const GATEWAY_MAX_RETRIES = 8
/** Pause before a retry, so membership changes can settle. */
export const GATEWAY_RETRY_DELAY_MS = 250
/** Timeout of one forwarded request (the original waits up to ~35 s). */
export const GATEWAY_FORWARD_TIMEOUT_MS = 35_000

/** Generation and count of a reference drop (DECREF_OBJ), forwarded with the ref variant. */
export interface RefFields {
  generation: number
  count: number
}

/**
 * Sends one peer op of epoch `epoch` — the epoch whose ring chose `node` — to `node` (directly
 * when it is this node). A reference drop goes over the wire even to this node: its peer side
 * is reference counting's (refcount.ts), which itself does I/O through this module. A read
 * answered by this node may lend its bytes from `replyPool` (OpReply.release).
 */
export async function forward(
  sheep: Sheep,
  epoch: number,
  node: SdNode,
  opcode: number,
  obj: ObjFields,
  data: Buffer | undefined,
  length: number,
  ref?: RefFields,
  flags = 0,
  replyPool?: BufferPool,
): Promise<OpReply> {
  const peerOp = GATEWAY_TO_PEER_OP.get(opcode) ?? opcode
  if (peerOp === SD_OP_DECREF_PEER) {
    const fields = { oid: obj.oid, generation: ref?.generation ?? 0, count: ref?.count ?? 0 }
    return remote(sheep, epoch, node, { opcode: peerOp, variant: REQ_REF, fields })
  }
  if (sheep.isSelf(node)) return runPeerOp(sheep, { opcode: peerOp, flags, obj, data, length, replyPool }, epoch)
  const opts = { opcode: peerOp, flags, variant: REQ_OBJ, fields: obj, data, readLength: data ? undefined : length }
  if (peerOp === SD_OP_READ_PEER && replyPool && BufferPool.fits(length)) return pooledRemoteRead(sheep, epoch, node, opts, length, replyPool)
  return remote(sheep, epoch, node, opts)
}

/** A peer request as forward() builds it; remote() adds the rest. */
type PeerRequest<L extends Layout> = Pick<RequestOptions<L>, 'opcode' | 'flags' | 'variant' | 'fields' | 'data' | 'readLength'>

async function remote<L extends Layout>(sheep: Sheep, epoch: number, node: SdNode, req: PeerRequest<L>, replyInto?: Buffer): Promise<OpReply> {
  const conn = sheep.peers.get(node)
  try {
    // built whole, not spread from `req`: a spread with keys added costs ~1 µs (codec.ts, RequestFraming)
    const { rsp, data: out } = await conn.request({
      opcode: req.opcode,
      flags: req.flags,
      variant: req.variant,
      fields: req.fields,
      data: req.data,
      readLength: req.readLength,
      replyInto,
      protoVer: SD_SHEEP_PROTO_VER,
      epoch,
      timeoutMs: GATEWAY_FORWARD_TIMEOUT_MS,
      // the only request this sheep serves (a client at queue depth 1): nothing to batch with, so
      // its peer requests leave now — before this node's own copy is handed to the thread pool,
      // which runPeerOp reaches only after an await
      sendAtOnce: sheep.servingOneRequest,
    })
    return reply(rsp.result, rsp.result === SD_RES_SUCCESS && out.length > 0 ? out : undefined)
  } catch (e) {
    if (e instanceof SdError) return reply(e.code)
    throw e
  }
}

/**
 * A read from another node whose reply goes out of the server's socket: the peer's bytes are
 * read in place into a buffer of `pool` (a fresh one per reply made the gateway's collector
 * busy, as local reads did before they were pooled), lent on with the reply (OpReply.release).
 * The buffer goes back at once when the reply did not land in it (a failure, an empty reply).
 * Once the request has settled no read can land in it any more: a request that fails or times
 * out resets its connection.
 */
async function pooledRemoteRead<L extends Layout>(
  sheep: Sheep,
  epoch: number,
  node: SdNode,
  req: PeerRequest<L>,
  length: number,
  pool: BufferPool,
): Promise<OpReply> {
  const into = pool.acquire(length)
  if (!into) return remote(sheep, epoch, node, req)
  let r: OpReply
  try {
    r = await remote(sheep, epoch, node, req, into)
  } catch (e) {
    pool.release(into)
    throw e
  }
  if (r.data?.buffer === into.buffer) r.release = () => pool.release(into)
  else pool.release(into)
  return r
}

/**
 * SYNC_PEER to `node` (this node: its store directly): every unstable write it accepted so far
 * made durable. A peer that does not know the op (the original) never took a write as unstable.
 */
export async function syncPeer(sheep: Sheep, epoch: number, node: SdNode): Promise<OpReply> {
  if (sheep.isSelf(node)) {
    await sheep.store.flush()
    return reply(SD_RES_SUCCESS)
  }
  const r = await remote(sheep, epoch, node, { opcode: SD_OP_SYNC_PEER, variant: REQ_OBJ, fields: {} })
  return r.result === SD_RES_INVALID_PARMS || r.result === SD_RES_NO_SUPPORT ? reply(SD_RES_SUCCESS) : r
}

export async function withRetries(sheep: Sheep, attempt: () => Promise<OpReply>): Promise<OpReply> {
  let last: OpReply = reply(SD_RES_NETWORK_ERROR)
  for (let i = 0; i <= GATEWAY_MAX_RETRIES; i++) {
    last = await attempt()
    if (!RETRY_RESULTS.has(last.result)) return last
    sheep.log.debug(`gateway retry ${i + 1} after result 0x${last.result.toString(16)}`)
    await new Promise((r) => setTimeout(r, GATEWAY_RETRY_DELAY_MS))
  }
  return last
}
