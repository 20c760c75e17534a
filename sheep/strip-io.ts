// Strip fan-out for erasure-coded objects (behaviour.md §14, wire-protocol.md §11.4): the object
// bytes of a request are widened to whole 512-byte stripes, encoded into D data and P parity
// strips, and strip i goes to replica-order holder i as `<oid>_<i>` (obj.ec_index = i) at offset
// stripe·512/D. A write that does not cover whole stripes first reads the partial head and tail
// stripes through the gateway, as the original does. Every strip must be durable before the write
// is acknowledged. With fewer zones than D+P the first `zones` strips are written (the original
// writes only the D data strips then); with fewer than D nothing can be, as in the original.
//
// Reads gather the D data strips. Beyond the original, a data strip that cannot be read (its
// holder is down, or it has not been recovered) is replaced by parity strips and the range is
// decoded, instead of failing until recovery has rebuilt it.
import { type EcPolicy, SD_EC_DATA_STRIPE_SIZE, erasureCoder } from '../lib/ec/codec.js'
import {
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_READ_OBJ,
  SD_OP_REMOVE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_INVALID_PARMS,
  SD_RES_NETWORK_ERROR,
  SD_RES_NO_OBJ,
  SD_RES_SUCCESS,
  SD_RES_SYSTEM_ERROR,
} from '../lib/proto.js'
import type { SdNode } from '../lib/structs.js'
import { RETRY_RESULTS, forward, withRetries } from './forward.js'
import { type OpReply, reply } from './op-types.js'
import type { ObjFields } from './peer.js'
import type { Sheep } from './sheep.js'

/** The whole stripes a byte range touches, and where they sit in each strip. */
interface StripeRange {
  /** Offset of the first stripe in the object. */
  objectOffset: number
  /** Bytes of whole stripes. */
  bytes: number
  /** Offset and length of the range inside each strip. */
  stripOffset: number
  stripBytes: number
}

function stripeRange(d: number, offset: number, length: number): StripeRange {
  const first = Math.floor(offset / SD_EC_DATA_STRIPE_SIZE)
  const end = Math.ceil((offset + length) / SD_EC_DATA_STRIPE_SIZE)
  const unit = SD_EC_DATA_STRIPE_SIZE / d
  return {
    objectOffset: first * SD_EC_DATA_STRIPE_SIZE,
    bytes: (end - first) * SD_EC_DATA_STRIPE_SIZE,
    stripOffset: first * unit,
    stripBytes: (end - first) * unit,
  }
}

/** Holder i of each strip: min(D+P, zones) nodes in replica order. */
function stripHolders(sheep: Sheep, policy: EcPolicy, oid: bigint): SdNode[] {
  return sheep.ring.replicasFor(oid, policy.d + policy.p)
}

function stripFields(obj: ObjFields, index: number, range: StripeRange): ObjFields {
  return { ...obj, ecIndex: index, offset: range.stripOffset, cowOid: 0n }
}

/**
 * Reads `length` bytes at `obj.offset` of an erasure-coded object: the data strips of the
 * stripes it touches, from holders 0..D−1 in parallel; any that fail are made up for by parity
 * strips, and then the stripes are decoded. NO_OBJ when no holder has the object.
 */
export function stripRead(sheep: Sheep, policy: EcPolicy, obj: ObjFields, length: number): Promise<OpReply> {
  const range = stripeRange(policy.d, obj.offset, length)
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    const holders = stripHolders(sheep, policy, obj.oid)
    if (holders.length < policy.d) return reply(SD_RES_SYSTEM_ERROR)
    const readStrip = (i: number): Promise<OpReply> =>
      forward(sheep, epoch, holders[i] as SdNode, SD_OP_READ_OBJ, stripFields(obj, i, range), undefined, range.stripBytes)
    const strips = new Map<number, Uint8Array>()
    const failures: number[] = []
    const take = (i: number, r: OpReply): void => {
      if (r.result === SD_RES_SUCCESS && r.data?.length === range.stripBytes) strips.set(i, r.data)
      else failures.push(r.result === SD_RES_SUCCESS ? SD_RES_NETWORK_ERROR : r.result)
    }
    const first = await Promise.all(Array.from({ length: policy.d }, (_, i) => readStrip(i)))
    first.forEach((r, i) => {
      take(i, r)
    })
    // a holder that asks for a retry (the epoch moved on) sends the whole read round again
    const retry = failures.find((r) => RETRY_RESULTS.has(r) && r !== SD_RES_NETWORK_ERROR)
    if (retry !== undefined) return reply(retry)
    // parity strips, as many as data strips are missing, then more while they fail
    for (let next = policy.d; strips.size < policy.d && next < holders.length; ) {
      const want = Math.min(policy.d - strips.size, holders.length - next)
      const batch = Array.from({ length: want }, (_, k) => next + k)
      next += want
      const replies = await Promise.all(batch.map(readStrip))
      replies.forEach((r, k) => {
        take(batch[k] as number, r)
      })
    }
    if (strips.size < policy.d) {
      // no strip anywhere: the object does not exist
      if (strips.size === 0 && failures.every((r) => r === SD_RES_NO_OBJ)) return reply(SD_RES_NO_OBJ)
      // some strips but too few: the others are being recovered (or their holders are gone and
      // a new epoch is coming), so the read is tried again like one that met a moved epoch
      return reply(failures.find((r) => r !== SD_RES_NO_OBJ) ?? SD_RES_NETWORK_ERROR)
    }
    if (failures.length > 0) sheep.log.warn(`read of ${obj.oid.toString(16).padStart(16, '0')} decoded from parity: ${failures.length} strip(s) unavailable`)
    const coder = erasureCoder(policy)
    const whole = Buffer.allocUnsafe(range.bytes)
    coder.decode(strips, whole)
    const from = obj.offset - range.objectOffset
    return reply(SD_RES_SUCCESS, whole.subarray(from, from + length))
  })
}

/**
 * WRITE_OBJ, CREATE_AND_WRITE_OBJ and REMOVE_OBJ of an erasure-coded object: every holder gets
 * its strip (or removes it), all in parallel; success only if all succeed.
 */
export function stripWriteAll(sheep: Sheep, policy: EcPolicy, opcode: number, obj: ObjFields, data: Buffer | undefined): Promise<OpReply> {
  if (opcode !== SD_OP_WRITE_OBJ && opcode !== SD_OP_CREATE_AND_WRITE_OBJ && opcode !== SD_OP_REMOVE_OBJ) return Promise.resolve(reply(SD_RES_INVALID_PARMS))
  const payload = data ?? Buffer.alloc(0)
  const range = stripeRange(policy.d, obj.offset, opcode === SD_OP_REMOVE_OBJ ? 0 : payload.length)
  return withRetries(sheep, async () => {
    const epoch = sheep.epoch
    const holders = stripHolders(sheep, policy, obj.oid)
    if (holders.length < policy.d) {
      sheep.log.error(`not enough zones (${holders.length}) for the ${policy.d} data strips of ${obj.oid.toString(16)}`)
      return reply(SD_RES_SYSTEM_ERROR)
    }
    let strips: readonly Uint8Array[] = []
    if (opcode !== SD_OP_REMOVE_OBJ) {
      const stripes = await wholeStripes(sheep, policy, opcode, obj, payload, range)
      if (typeof stripes === 'number') return reply(stripes)
      strips = erasureCoder(policy).encode(stripes)
    }
    const replies = await Promise.all(
      holders.map((node, i) => {
        const strip = strips[i]
        const body = strip ? Buffer.from(strip.buffer, strip.byteOffset, strip.byteLength) : undefined
        return forward(sheep, epoch, node, opcode, stripFields(obj, i, range), body, 0)
      }),
    )
    const failed = replies.filter((r) => r.result !== SD_RES_SUCCESS)
    return reply((failed.find((r) => RETRY_RESULTS.has(r.result)) ?? failed[0] ?? reply(SD_RES_SUCCESS)).result)
  })
}

/**
 * The payload widened to whole stripes. A write (not a create: that starts from zeros) first
 * reads the partial stripe at each end, so the bytes around the payload are kept.
 */
async function wholeStripes(sheep: Sheep, policy: EcPolicy, opcode: number, obj: ObjFields, payload: Buffer, range: StripeRange): Promise<Buffer | number> {
  const head = obj.offset - range.objectOffset
  if (head === 0 && payload.length === range.bytes) return payload
  const stripes = Buffer.alloc(range.bytes)
  const tail = range.objectOffset + range.bytes - SD_EC_DATA_STRIPE_SIZE
  const partial =
    opcode === SD_OP_WRITE_OBJ
      ? [...new Set([head !== 0 ? range.objectOffset : -1, (obj.offset + payload.length) % SD_EC_DATA_STRIPE_SIZE !== 0 ? tail : -1])].filter((at) => at >= 0)
      : []
  for (const at of partial) {
    const r = await stripRead(sheep, policy, { ...obj, offset: at }, SD_EC_DATA_STRIPE_SIZE)
    if (r.result !== SD_RES_SUCCESS) return r.result
    r.data?.copy(stripes, at - range.objectOffset)
  }
  payload.copy(stripes, head)
  return stripes
}
