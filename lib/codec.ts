// The 48-byte request and response headers with every op-specific variant (wire-protocol.md
// §2–3), and the validator that says why a request header is unacceptable (§1.2, limits).
import { type Fields, type Layout, checkLayout, readFields, writeFields } from './layout.js'
import {
  SD_FLAG_CMD_PIGGYBACK,
  SD_FLAG_CMD_WRITE,
  SD_HEADER_SIZE,
  SD_MAX_DATA_LENGTH,
  SD_PROTO_VER,
  SD_RES_INVALID_PARMS,
  SD_RES_VER_MISMATCH,
  SD_SHEEP_PROTO_VER,
} from './proto.js'

/** Bytes of the fields common to every request and response header; the variants follow. */
export const COMMON_HEADER_SIZE = 16

/** Fields common to every request and response header (offsets 0..15). */
export const COMMON_HEADER = {
  protoVer: [0, 'u8'],
  opcode: [1, 'u8'],
  flags: [2, 'u16'],
  epoch: [4, 'u32'],
  id: [8, 'u32'],
  dataLength: [12, 'u32'],
} as const satisfies Layout

// Request variants (§2.1–2.8); offsets are absolute within the header.
export const REQ_OBJ = {
  oid: [16, 'u64'],
  cowOid: [24, 'u64'],
  copies: [32, 'u8'],
  copyPolicy: [33, 'u8'],
  ecIndex: [34, 'u8'],
  tgtEpoch: [36, 'u32'],
  offset: [40, 'u32'],
} as const satisfies Layout
export const REQ_VDI = {
  vdiSize: [16, 'u64'],
  baseVdiId: [24, 'u32'],
  copies: [28, 'u8'],
  copyPolicy: [29, 'u8'],
  storePolicy: [30, 'u8'],
  blockSizeShift: [31, 'u8'],
  snapid: [32, 'u32'],
  type: [36, 'u32'],
} as const satisfies Layout
export const REQ_CLUSTER = {
  oid: [16, 'u64'],
  ctime: [24, 'u64'],
  copies: [32, 'u8'],
  copyPolicy: [33, 'u8'],
  flags: [34, 'u16'],
  tag: [36, 'u32'],
  nodesNr: [40, 'u32'],
  blockSizeShift: [44, 'u8'],
} as const satisfies Layout
export const REQ_VDI_STATE = {
  oldVid: [16, 'u32'],
  newVid: [20, 'u32'],
  copies: [24, 'u8'],
  setBitmap: [25, 'u8'],
  copyPolicy: [26, 'u8'],
  blockSizeShift: [27, 'u8'],
} as const satisfies Layout
export const REQ_REF = {
  oid: [16, 'u64'],
  generation: [24, 'u32'],
  count: [28, 'u32'],
} as const satisfies Layout
export const REQ_FORW = {
  oid: [16, 'u64'],
  addr: [24, 'bytes', 16],
  port: [40, 'u16'],
} as const satisfies Layout
export const REQ_VDI_STATE_CHECKPOINT = {
  get: [16, 'u32'],
  tgtEpoch: [20, 'u32'],
  vid: [24, 'u32'],
} as const satisfies Layout
export const REQ_INODE_COHERENCE = {
  vid: [16, 'u32'],
  validate: [20, 'u32'],
} as const satisfies Layout
/** SD_OP_SCRUB (our own): what to do (SCRUB_ACTION_*) and, to start, the rate in MiB/s (0: the node's). */
export const REQ_SCRUB = {
  action: [16, 'u32'],
  rateMiB: [20, 'u32'],
} as const satisfies Layout

// Response variants (§3).
export const RSP_RESULT = { result: [16, 'u32'] } as const satisfies Layout
/** Where a response's result is, and where the fields of its variant begin (after the result). */
export const RSP_RESULT_AT = RSP_RESULT.result[0]
export const RSP_VARIANT_AT = RSP_RESULT_AT + 4
export const RSP_OBJ = { copies: [20, 'u8'], offset: [24, 'u64'] } as const satisfies Layout
export const RSP_VDI = {
  rsvd: [20, 'u32'],
  vdiId: [24, 'u32'],
  attrId: [28, 'u32'],
  copies: [32, 'u8'],
  blockSizeShift: [33, 'u8'],
} as const satisfies Layout
export const RSP_NODE = {
  nrNodes: [20, 'u32'],
  storeSize: [32, 'u64'],
  storeFree: [40, 'u64'],
} as const satisfies Layout
export const RSP_HASH = { digest: [24, 'bytes', 20] } as const satisfies Layout
export const RSP_CLUSTER_DEFAULT = {
  nrCopies: [20, 'u8'],
  copyPolicy: [21, 'u8'],
  blockSizeShift: [22, 'u8'],
} as const satisfies Layout

checkLayout('COMMON_HEADER', COMMON_HEADER, COMMON_HEADER_SIZE)
for (const [name, variant] of Object.entries({
  REQ_OBJ,
  REQ_VDI,
  REQ_CLUSTER,
  REQ_VDI_STATE,
  REQ_REF,
  REQ_FORW,
  REQ_VDI_STATE_CHECKPOINT,
  REQ_INODE_COHERENCE,
  REQ_SCRUB,
  RSP_RESULT,
  RSP_OBJ,
  RSP_VDI,
  RSP_NODE,
  RSP_HASH,
  RSP_CLUSTER_DEFAULT,
})) {
  checkLayout(name, variant, SD_HEADER_SIZE, COMMON_HEADER_SIZE)
}

export type CommonHeader = Fields<typeof COMMON_HEADER>

/** A request header as it arrived: the common fields decoded, the variant read on demand. */
export interface SdRequest extends CommonHeader {
  /** The 48 raw header bytes; variants are decoded from here with `reqVariant`. */
  readonly raw: Buffer
}

/** A response ready to send, or as received: header fields plus payload. */
export interface SdResponse {
  readonly raw: Buffer
  readonly result: number
  readonly epoch: number
  readonly id: number
  readonly dataLength: number
  readonly opcode: number
}

export function decodeRequestHeader(raw: Buffer): SdRequest {
  if (raw.length !== SD_HEADER_SIZE) throw new Error(`header must be ${SD_HEADER_SIZE} bytes`)
  return Object.assign(readFields(raw, COMMON_HEADER), { raw })
}

export function reqVariant<L extends Layout>(req: { raw: Buffer }, layout: L): Fields<L> {
  return readFields(req.raw, layout)
}

export function rspVariant<L extends Layout>(rsp: { raw: Buffer }, layout: L): Fields<L> {
  return readFields(rsp.raw, layout)
}

export interface RequestInit<L extends Layout = Layout> {
  opcode: number
  protoVer?: number
  flags?: number
  epoch?: number
  id?: number
  dataLength?: number
  variant?: L
  fields?: Partial<Fields<L>>
}

/**
 * What a connection sets in each request it frames, over its caller's RequestInit. Passed apart
 * rather than spread into a copy of the init: in Node 20's V8 a spread followed by keys the source
 * lacks (`{ ...init, id }`) takes a slow path, ~1 µs each time, on every request.
 */
export interface RequestFraming {
  flags: number
  dataLength: number
  id: number
}

/** Builds a 48-byte request header. proto_ver defaults by opcode class (§1.2). */
export function encodeRequestHeader<L extends Layout>(init: RequestInit<L>, framing?: RequestFraming): Buffer {
  const raw = Buffer.alloc(SD_HEADER_SIZE)
  writeFields(raw, COMMON_HEADER, {
    protoVer: init.protoVer ?? (init.opcode >= 0x80 ? SD_SHEEP_PROTO_VER : SD_PROTO_VER),
    opcode: init.opcode,
    flags: framing ? framing.flags : (init.flags ?? 0),
    epoch: init.epoch ?? 0,
    id: framing ? framing.id : (init.id ?? 0),
    dataLength: framing ? framing.dataLength : (init.dataLength ?? 0),
  })
  if (init.variant && init.fields) writeFields(raw, init.variant, init.fields)
  return raw
}

export interface ResponseInit<L extends Layout = Layout> {
  opcode: number
  epoch: number
  id: number
  dataLength: number
  result: number
  variant?: L
  fields?: Partial<Fields<L>>
}

/** Builds a 48-byte response header: proto_ver 0, flags 0, the request's id echoed (§1.1 rule 5). */
export function encodeResponseHeader<L extends Layout>(init: ResponseInit<L>): Buffer {
  const raw = Buffer.alloc(SD_HEADER_SIZE)
  writeFields(raw, COMMON_HEADER, {
    protoVer: 0,
    opcode: init.opcode,
    flags: 0,
    epoch: init.epoch,
    id: init.id,
    dataLength: init.dataLength,
  })
  raw.writeUInt32LE(init.result >>> 0, RSP_RESULT_AT)
  if (init.variant && init.fields) writeFields(raw, init.variant, init.fields)
  return raw
}

export function decodeResponseHeader(raw: Buffer): SdResponse {
  const common = readFields(raw, COMMON_HEADER)
  return { raw, result: raw.readUInt32LE(RSP_RESULT_AT), epoch: common.epoch, id: common.id, dataLength: common.dataLength, opcode: common.opcode }
}

/** True when a request header announces a payload that follows it on the wire (§1.1 rule 2). */
export function requestCarriesPayload(req: CommonHeader): boolean {
  return (req.flags & SD_FLAG_CMD_WRITE) !== 0 && req.dataLength > 0
}

/**
 * How many payload bytes a response to `req` may carry at most (§1.1 rule 4): a read may fill
 * the client's buffer; a write gets nothing back unless it asked for a piggy-backed answer.
 */
export function maxResponsePayload(req: CommonHeader): number {
  if ((req.flags & SD_FLAG_CMD_WRITE) === 0) return req.dataLength
  return (req.flags & SD_FLAG_CMD_PIGGYBACK) !== 0 ? req.dataLength : 0
}

export type HeaderVerdict =
  | { ok: true }
  /** The request can be answered with `result`; the connection stays usable. */
  | { ok: false; result: number; reason: string; fatal: false }
  /** The stream cannot be trusted any more (e.g. an absurd payload length): close it. */
  | { ok: false; result: number; reason: string; fatal: true }

/**
 * Checks a request header before anything else happens (§1.2): protocol version by opcode
 * class, and the payload / receive-buffer bound. A payload over the bound would have to be read
 * to keep the stream in sync, so that case is fatal for the connection.
 */
export function validateRequestHeader(req: CommonHeader): HeaderVerdict {
  if (req.dataLength > SD_MAX_DATA_LENGTH) {
    const carries = requestCarriesPayload(req)
    return {
      ok: false,
      result: SD_RES_INVALID_PARMS,
      reason: `data_length ${req.dataLength} exceeds the limit of ${SD_MAX_DATA_LENGTH}`,
      fatal: carries,
    }
  }
  if (req.opcode >= 0x80) {
    if (req.protoVer !== SD_SHEEP_PROTO_VER) {
      return { ok: false, result: SD_RES_VER_MISMATCH, reason: `internal op with proto_ver ${req.protoVer}`, fatal: false }
    }
  } else if (req.protoVer > SD_PROTO_VER) {
    return { ok: false, result: SD_RES_VER_MISMATCH, reason: `client op with proto_ver ${req.protoVer}`, fatal: false }
  }
  return { ok: true }
}
