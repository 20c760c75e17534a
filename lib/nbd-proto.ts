// The NBD protocol's numbers and byte layouts (NetworkBlockDevice/nbd doc/proto.md): the fixed
// newstyle handshake, option haggling (meta contexts included), and simple and structured replies
// in the transmission phase. Only what sheep's NBD server (sheep/nbd.ts) and its tests need; all
// integers are big-endian on the wire.

// ---- handshake ---------------------------------------------------------------------------------

/** "NBDMAGIC": the first 8 bytes a server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n
/** "IHAVEOPT": follows NBD_INIT_MAGIC in the newstyle greeting and starts every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n
/** Starts every option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n

/** Handshake flags (16 bits, server → client). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_NO_ZEROES = 1 << 1
/** Client flags (32 bits, client → server); any other bit set means the client wants something we lack. */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_C_NO_ZEROES = 1 << 1
export const NBD_KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES

/** Bytes of zeros after NBD_OPT_EXPORT_NAME's answer unless both sides agreed on NO_ZEROES. */
export const NBD_EXPORT_NAME_PADDING_BYTES = 124

/** Options (client → server). */
export const NBD_OPT_EXPORT_NAME = 1
export const NBD_OPT_ABORT = 2
export const NBD_OPT_LIST = 3
export const NBD_OPT_PEEK_EXPORT = 4
export const NBD_OPT_STARTTLS = 5
export const NBD_OPT_INFO = 6
export const NBD_OPT_GO = 7
export const NBD_OPT_STRUCTURED_REPLY = 8
export const NBD_OPT_LIST_META_CONTEXT = 9
export const NBD_OPT_SET_META_CONTEXT = 10
export const NBD_OPT_EXTENDED_HEADERS = 11

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1
export const NBD_REP_SERVER = 2
export const NBD_REP_INFO = 3
export const NBD_REP_META_CONTEXT = 4
export const NBD_REP_FLAG_ERROR = 0x80000000
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0
export const NBD_REP_ERR_PLATFORM = (NBD_REP_FLAG_ERROR | 4) >>> 0
export const NBD_REP_ERR_TLS_REQD = (NBD_REP_FLAG_ERROR | 5) >>> 0
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0
export const NBD_REP_ERR_BLOCK_SIZE_REQD = (NBD_REP_FLAG_ERROR | 8) >>> 0
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0

/** Information types in NBD_REP_INFO (answers to NBD_OPT_INFO / NBD_OPT_GO). */
export const NBD_INFO_EXPORT = 0
export const NBD_INFO_NAME = 1
export const NBD_INFO_DESCRIPTION = 2
export const NBD_INFO_BLOCK_SIZE = 3

/** Transmission flags (16 bits) sent with the export size. */
export const NBD_FLAG_HAS_FLAGS = 1 << 0
export const NBD_FLAG_READ_ONLY = 1 << 1
export const NBD_FLAG_SEND_FLUSH = 1 << 2
export const NBD_FLAG_SEND_FUA = 1 << 3
export const NBD_FLAG_ROTATIONAL = 1 << 4
export const NBD_FLAG_SEND_TRIM = 1 << 5
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
export const NBD_FLAG_SEND_DF = 1 << 7
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8

// ---- transmission ------------------------------------------------------------------------------

export const NBD_REQUEST_MAGIC = 0x25609513
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698
/** magic(4) flags(2) type(2) cookie(8) offset(8) length(4). */
export const NBD_REQUEST_HEADER_BYTES = 28
/** magic(4) error(4) cookie(8). */
export const NBD_SIMPLE_REPLY_HEADER_BYTES = 16
/** magic(8) option(4) length(4). */
export const NBD_OPTION_HEADER_BYTES = 16
/** magic(8) option(4) type(4) length(4). */
export const NBD_OPTION_REPLY_HEADER_BYTES = 20

/** Commands. */
export const NBD_CMD_READ = 0
export const NBD_CMD_WRITE = 1
export const NBD_CMD_DISC = 2
export const NBD_CMD_FLUSH = 3
export const NBD_CMD_TRIM = 4
export const NBD_CMD_CACHE = 5
export const NBD_CMD_WRITE_ZEROES = 6
export const NBD_CMD_BLOCK_STATUS = 7

/** Command flags. */
export const NBD_CMD_FLAG_FUA = 1 << 0
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1
export const NBD_CMD_FLAG_DF = 1 << 2
/** BLOCK_STATUS: one descriptor is enough. */
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3

// ---- structured replies and meta contexts -------------------------------------------------------

export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef
/** magic(4) flags(2) type(2) cookie(8) length(4). */
export const NBD_STRUCTURED_REPLY_HEADER_BYTES = 20
/** Structured reply flag: the last chunk of the reply. */
export const NBD_REPLY_FLAG_DONE = 1 << 0
/** Structured reply chunk types; error types have bit 15 set. */
export const NBD_REPLY_TYPE_NONE = 0
export const NBD_REPLY_TYPE_OFFSET_DATA = 1
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5
export const NBD_REPLY_TYPE_ERROR = (1 << 15) | 1
/** The one meta context served: which ranges are allocated (base:allocation). */
export const NBD_META_CONTEXT_BASE_ALLOCATION = 'base:allocation'
/** base:allocation flags of a block status descriptor. */
export const NBD_STATE_HOLE = 1 << 0
export const NBD_STATE_ZERO = 1 << 1

/** Error values in replies (Linux errno numbers, as the spec fixes them). */
export const NBD_EPERM = 1
export const NBD_EIO = 5
export const NBD_ENOMEM = 12
export const NBD_EINVAL = 22
export const NBD_ENOSPC = 28
export const NBD_EOVERFLOW = 75
export const NBD_ENOTSUP = 95
export const NBD_ESHUTDOWN = 108

// ---- codec -------------------------------------------------------------------------------------

/** The newstyle greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const buf = Buffer.alloc(18)
  buf.writeBigUInt64BE(NBD_INIT_MAGIC, 0)
  buf.writeBigUInt64BE(NBD_OPTS_MAGIC, 8)
  buf.writeUInt16BE(handshakeFlags, 16)
  return buf
}

export interface OptionHeader {
  magic: bigint
  option: number
  length: number
}

export function decodeOptionHeader(buf: Buffer): OptionHeader {
  return { magic: buf.readBigUInt64BE(0), option: buf.readUInt32BE(8), length: buf.readUInt32BE(12) }
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(NBD_OPTION_HEADER_BYTES)
  head.writeBigUInt64BE(NBD_OPTS_MAGIC, 0)
  head.writeUInt32BE(option, 8)
  head.writeUInt32BE(data.length, 12)
  return Buffer.concat([head, data])
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(NBD_OPTION_REPLY_HEADER_BYTES)
  head.writeBigUInt64BE(NBD_REP_MAGIC, 0)
  head.writeUInt32BE(option, 8)
  head.writeUInt32BE(type >>> 0, 12)
  head.writeUInt32BE(data.length, 16)
  return Buffer.concat([head, data])
}

export interface OptionReply {
  magic: bigint
  option: number
  type: number
  length: number
}

export function decodeOptionReplyHeader(buf: Buffer): OptionReply {
  return { magic: buf.readBigUInt64BE(0), option: buf.readUInt32BE(8), type: buf.readUInt32BE(12), length: buf.readUInt32BE(16) }
}

/** NBD_INFO_EXPORT: type(2) size(8) transmission flags(2). */
export function encodeInfoExport(sizeBytes: bigint, transmissionFlags: number): Buffer {
  const buf = Buffer.alloc(12)
  buf.writeUInt16BE(NBD_INFO_EXPORT, 0)
  buf.writeBigUInt64BE(sizeBytes, 2)
  buf.writeUInt16BE(transmissionFlags, 10)
  return buf
}

/** NBD_INFO_BLOCK_SIZE: type(2) minimum(4) preferred(4) maximum(4). */
export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const buf = Buffer.alloc(14)
  buf.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0)
  buf.writeUInt32BE(minimumBytes, 2)
  buf.writeUInt32BE(preferredBytes, 6)
  buf.writeUInt32BE(maximumBytes, 10)
  return buf
}

/** NBD_OPT_INFO / NBD_OPT_GO payload: name length(4), name, count(2), info types(2 each). */
export function encodeInfoRequest(name: string, infoTypes: number[] = []): Buffer {
  const nameBytes = Buffer.from(name, 'utf8')
  const buf = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoTypes.length)
  buf.writeUInt32BE(nameBytes.length, 0)
  nameBytes.copy(buf, 4)
  buf.writeUInt16BE(infoTypes.length, 4 + nameBytes.length)
  infoTypes.forEach((t, i) => {
    buf.writeUInt16BE(t, 6 + nameBytes.length + 2 * i)
  })
  return buf
}

/** The parsed NBD_OPT_INFO / NBD_OPT_GO payload, or undefined when its lengths do not add up. */
export function decodeInfoRequest(data: Buffer): { name: string; infoTypes: number[] } | undefined {
  if (data.length < 6) return undefined
  const nameLength = data.readUInt32BE(0)
  if (nameLength > data.length - 6) return undefined
  const count = data.readUInt16BE(4 + nameLength)
  if (data.length !== 6 + nameLength + 2 * count) return undefined
  const infoTypes: number[] = []
  for (let i = 0; i < count; i++) infoTypes.push(data.readUInt16BE(6 + nameLength + 2 * i))
  return { name: data.toString('utf8', 4, 4 + nameLength), infoTypes }
}

export interface NbdRequest {
  magic: number
  flags: number
  type: number
  /** The client's opaque handle, echoed in the reply. */
  cookie: bigint
  offset: bigint
  length: number
}

export function decodeRequest(buf: Buffer): NbdRequest {
  return {
    magic: buf.readUInt32BE(0),
    flags: buf.readUInt16BE(4),
    type: buf.readUInt16BE(6),
    cookie: buf.readBigUInt64BE(8),
    offset: buf.readBigUInt64BE(16),
    length: buf.readUInt32BE(24),
  }
}

export function encodeRequest(r: Omit<NbdRequest, 'magic'>): Buffer {
  const buf = Buffer.alloc(NBD_REQUEST_HEADER_BYTES)
  buf.writeUInt32BE(NBD_REQUEST_MAGIC, 0)
  buf.writeUInt16BE(r.flags, 4)
  buf.writeUInt16BE(r.type, 6)
  buf.writeBigUInt64BE(r.cookie, 8)
  buf.writeBigUInt64BE(r.offset, 16)
  buf.writeUInt32BE(r.length, 24)
  return buf
}

export function encodeSimpleReply(error: number, cookie: bigint): Buffer {
  const buf = Buffer.alloc(NBD_SIMPLE_REPLY_HEADER_BYTES)
  buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0)
  buf.writeUInt32BE(error, 4)
  buf.writeBigUInt64BE(cookie, 8)
  return buf
}

export function decodeSimpleReply(buf: Buffer): { magic: number; error: number; cookie: bigint } {
  return { magic: buf.readUInt32BE(0), error: buf.readUInt32BE(4), cookie: buf.readBigUInt64BE(8) }
}

/** A structured reply chunk's header (its payload follows: `length` bytes). */
export function encodeStructuredReplyHeader(flags: number, type: number, cookie: bigint, length: number): Buffer {
  const buf = Buffer.alloc(NBD_STRUCTURED_REPLY_HEADER_BYTES)
  buf.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0)
  buf.writeUInt16BE(flags, 4)
  buf.writeUInt16BE(type, 6)
  buf.writeBigUInt64BE(cookie, 8)
  buf.writeUInt32BE(length, 16)
  return buf
}

export function decodeStructuredReplyHeader(buf: Buffer): { magic: number; flags: number; type: number; cookie: bigint; length: number } {
  return { magic: buf.readUInt32BE(0), flags: buf.readUInt16BE(4), type: buf.readUInt16BE(6), cookie: buf.readBigUInt64BE(8), length: buf.readUInt32BE(16) }
}

/** NBD_REPLY_TYPE_ERROR's payload: error(4), message length(2), message. */
export function encodeErrorChunkPayload(error: number, message: string): Buffer {
  const text = Buffer.from(message, 'utf8').subarray(0, 0xffff)
  const buf = Buffer.alloc(6 + text.length)
  buf.writeUInt32BE(error, 0)
  buf.writeUInt16BE(text.length, 4)
  text.copy(buf, 6)
  return buf
}

/** One extent of a BLOCK_STATUS answer: its length and its base:allocation flags. */
export interface BlockStatusExtent {
  length: number
  flags: number
}

/** NBD_REPLY_TYPE_BLOCK_STATUS's payload: context id(4), then length(4) flags(4) per extent. */
export function encodeBlockStatusPayload(contextId: number, extents: readonly BlockStatusExtent[]): Buffer {
  const buf = Buffer.alloc(4 + 8 * extents.length)
  buf.writeUInt32BE(contextId, 0)
  extents.forEach((e, i) => {
    buf.writeUInt32BE(e.length, 4 + 8 * i)
    buf.writeUInt32BE(e.flags, 8 + 8 * i)
  })
  return buf
}

/** NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT payload: name length(4), name, query count(4), queries (length(4), string). */
export function encodeMetaContextRequest(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = []
  const name = Buffer.from(exportName, 'utf8')
  const head = Buffer.alloc(4)
  head.writeUInt32BE(name.length, 0)
  parts.push(head, name)
  const count = Buffer.alloc(4)
  count.writeUInt32BE(queries.length, 0)
  parts.push(count)
  for (const q of queries) {
    const bytes = Buffer.from(q, 'utf8')
    const len = Buffer.alloc(4)
    len.writeUInt32BE(bytes.length, 0)
    parts.push(len, bytes)
  }
  return Buffer.concat(parts)
}

/** The parsed meta context request, or undefined when its lengths do not add up. */
export function decodeMetaContextRequest(data: Buffer): { exportName: string; queries: string[] } | undefined {
  if (data.length < 8) return undefined
  const nameLength = data.readUInt32BE(0)
  if (nameLength > data.length - 8) return undefined
  const exportName = data.toString('utf8', 4, 4 + nameLength)
  const count = data.readUInt32BE(4 + nameLength)
  const queries: string[] = []
  let at = 8 + nameLength
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return undefined
    const length = data.readUInt32BE(at)
    if (length > data.length - at - 4) return undefined
    queries.push(data.toString('utf8', at + 4, at + 4 + length))
    at += 4 + length
  }
  return at === data.length ? { exportName, queries } : undefined
}

/** NBD_REP_META_CONTEXT's payload: context id(4), name. */
export function encodeMetaContextReply(contextId: number, name: string): Buffer {
  const text = Buffer.from(name, 'utf8')
  const buf = Buffer.alloc(4 + text.length)
  buf.writeUInt32BE(contextId, 0)
  text.copy(buf, 4)
  return buf
}
