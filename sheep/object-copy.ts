// Copying a whole object into this node's store, for recovery and REPAIR_REPLICA. Objects reach
// 2 GiB (block_size_shift 31) but one request frame carries at most SD_MAX_DATA_LENGTH, so the
// object is read in pieces of OBJECT_CHUNK_BYTES — from another node with READ_PEER at
// increasing offsets, or from a stale copy of our own — and written as it arrives into a staged
// create that becomes visible only when complete. Memory stays at one piece per copy.
import { SdError } from '../lib/errors.js'
import { REQ_OBJ } from '../lib/codec.js'
import { OBJECT_CHUNK_BYTES, SD_OP_READ_PEER, SD_RES_EIO, SD_RES_NETWORK_ERROR, SD_RES_SUCCESS, SD_SHEEP_PROTO_VER } from '../lib/proto.js'
import type { NodeId } from '../lib/structs.js'
import type { StoreDriver } from './store/driver.js'
import type { Sheep } from './sheep.js'

/** Reads `length` bytes at `offset` of the object being copied; a result code when it cannot. */
export type PieceReader = (offset: number, length: number) => Promise<Buffer | number>

export interface PeerReadOptions {
  /** READ_PEER's obj.tgt_epoch (recovery: the epoch whose holder is asked). */
  tgtEpoch?: number
  /** Which strip of an erasure-coded object (obj.ec_index). */
  ecIndex?: number
  flags?: number
  timeoutMs?: number
}

/** Pieces of `oid` read from the sheep `peer` (its node_id: main and I/O address) with READ_PEER. */
export function peerPieceReader(sheep: Sheep, peer: NodeId, oid: bigint, opts: PeerReadOptions = {}): PieceReader {
  const conn = sheep.peers.get(peer)
  return async (offset, length) => {
    try {
      const { rsp, data } = await conn.request({
        opcode: SD_OP_READ_PEER,
        protoVer: SD_SHEEP_PROTO_VER,
        epoch: sheep.epoch,
        flags: opts.flags ?? 0,
        variant: REQ_OBJ,
        fields: { oid, tgtEpoch: opts.tgtEpoch ?? 0, ecIndex: opts.ecIndex ?? 0, offset },
        readLength: length,
        timeoutMs: opts.timeoutMs,
      })
      return rsp.result === SD_RES_SUCCESS ? data : rsp.result
    } catch (e) {
      // the request never got an answer: the peer could not be asked
      return e instanceof SdError ? e.code : SD_RES_NETWORK_ERROR
    }
  }
}

/**
 * Stores `oid` (`objectSize` bytes) read piece by piece through `read`. An object of one piece
 * is an ordinary atomic create; a bigger one is staged and committed once every piece is in, so
 * a failed copy leaves nothing behind and the object never shows half-written. `ifAbsent`: an
 * object created meanwhile (by a client) is kept instead. Answers SUCCESS or why it failed.
 */
export async function copyObject(
  store: Pick<StoreDriver, 'create' | 'beginCreate'>,
  oid: bigint,
  objectSize: number,
  read: PieceReader,
  opts: { ifAbsent?: boolean } = {},
): Promise<number> {
  const readPiece = async (offset: number): Promise<Buffer | number> => {
    const length = Math.min(OBJECT_CHUNK_BYTES, objectSize - offset)
    const piece = await read(offset, length)
    // a short answer would leave zeros where the source has data
    return typeof piece === 'number' || piece.length === length ? piece : SD_RES_EIO
  }
  // the first piece is read before anything is staged: most failures (no such object) end here
  let piece = await readPiece(0)
  if (typeof piece === 'number') return piece
  if (objectSize <= OBJECT_CHUNK_BYTES) return store.create({ oid, offset: 0, data: piece }, objectSize, opts)
  const staged = await store.beginCreate(oid, objectSize)
  let ended = false
  try {
    for (let offset = 0; ; ) {
      await staged.write(offset, piece)
      offset += piece.length
      if (offset >= objectSize) break
      piece = EMPTY // let the written piece go before the next one arrives
      piece = await readPiece(offset)
      if (typeof piece === 'number') return piece
    }
    ended = true
    return await staged.commit(opts)
  } finally {
    if (!ended) await staged.abort()
  }
}

const EMPTY = Buffer.alloc(0)
