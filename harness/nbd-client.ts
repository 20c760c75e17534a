// A raw NBD client for functional tests (test/functional/sheep-nbd-wire.test.ts,
// nbd-durability.test.ts): exact-length reads with a timeout, the fixed newstyle handshake's
// options, requests, and simple and structured replies, so tests can drive sheep's NBD server
// byte by byte where qemu's tools hide what happens on the wire.
import net from 'node:net'
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPTION_REPLY_HEADER_BYTES,
  NBD_OPT_GO,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_SIMPLE_REPLY_HEADER_BYTES,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_HEADER_BYTES,
  NBD_STRUCTURED_REPLY_MAGIC,
  decodeOptionReplyHeader,
  decodeSimpleReply,
  decodeStructuredReplyHeader,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
} from '../lib/nbd-proto.js'

/** How long a test waits for bytes the server must send. */
const READ_TIMEOUT_MS = 10_000

/** One chunk of a structured reply. */
export interface ReplyChunk {
  flags: number
  type: number
  cookie: bigint
  payload: Buffer
}

/** A raw NBD client: exact-length reads with a timeout, and `closed` once the server hung up. */
export class RawClient {
  private buffered = Buffer.alloc(0)
  private wake: (() => void) | undefined
  ended = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, b])
      this.wake?.()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake?.()
    })
    socket.on('error', () => undefined)
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  async read(n: number): Promise<Buffer> {
    const deadline = Date.now() + READ_TIMEOUT_MS
    while (this.buffered.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buffered.length}/${n} bytes`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`)
      await new Promise<void>((resolve) => {
        this.wake = resolve
        setTimeout(resolve, 100)
      })
    }
    const out = this.buffered.subarray(0, n)
    this.buffered = this.buffered.subarray(n)
    return out
  }

  /** True once the server closed the connection (within the read timeout). */
  async closedByServer(): Promise<boolean> {
    const deadline = Date.now() + READ_TIMEOUT_MS
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    return this.ended
  }

  write(b: Buffer): void {
    this.socket.write(b)
  }

  /** Greeting read, client flags sent. */
  async start(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<Buffer> {
    const greeting = await this.read(18)
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(clientFlags)
    this.write(flags)
    return greeting
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer; magic: bigint }> {
    const head = decodeOptionReplyHeader(await this.read(NBD_OPTION_REPLY_HEADER_BYTES))
    return { ...head, data: await this.read(head.length) }
  }

  /** NBD_OPT_GO on `name`: the info replies, up to the ACK or an error. */
  async go(name: string, option = NBD_OPT_GO): Promise<{ size: bigint; flags: number; blockSizes?: number[]; error?: number }> {
    this.write(encodeOption(option, encodeInfoRequest(name, [NBD_INFO_BLOCK_SIZE])))
    let size = -1n
    let flags = -1
    let blockSizes: number[] | undefined
    for (;;) {
      const r = await this.optionReply()
      if (r.type === NBD_REP_ACK) return { size, flags, blockSizes }
      if (r.type !== NBD_REP_INFO) return { size, flags, error: r.type }
      const infoType = r.data.readUInt16BE(0)
      if (infoType === NBD_INFO_EXPORT) {
        size = r.data.readBigUInt64BE(2)
        flags = r.data.readUInt16BE(10)
      } else if (infoType === NBD_INFO_BLOCK_SIZE) {
        blockSizes = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)]
      }
    }
  }

  request(type: number, cookie: bigint, offset: number, length: number, data?: Buffer, flags = 0): void {
    this.write(encodeRequest({ flags, type, cookie, offset: BigInt(offset), length }))
    if (data) this.write(data)
  }

  async reply(length = 0): Promise<{ error: number; cookie: bigint; data: Buffer }> {
    const r = decodeSimpleReply(await this.read(NBD_SIMPLE_REPLY_HEADER_BYTES))
    if (r.magic !== NBD_SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic ${r.magic.toString(16)}`)
    return { error: r.error, cookie: r.cookie, data: r.error === 0 && length > 0 ? await this.read(length) : Buffer.alloc(0) }
  }

  /** One structured reply chunk (header and payload). */
  async chunk(): Promise<ReplyChunk> {
    const head = decodeStructuredReplyHeader(await this.read(NBD_STRUCTURED_REPLY_HEADER_BYTES))
    if (head.magic !== NBD_STRUCTURED_REPLY_MAGIC) throw new Error(`bad structured reply magic ${head.magic.toString(16)}`)
    return { flags: head.flags, type: head.type, cookie: head.cookie, payload: await this.read(head.length) }
  }

  close(): void {
    this.socket.destroy()
  }
}
