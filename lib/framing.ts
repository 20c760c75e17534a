// Splits a byte stream into Sheepdog frames: a 48-byte header, then exactly the payload length
// the header implies. The payload is read straight into one buffer of its final size (no
// concatenation of 4 MiB payloads chunk by chunk). Used by the client and by sheep's server.
// A socket created with `onread` (the client) can even read a payload's rest in place:
// nextReadBuffer() hands it the unfilled part of the payload buffer, so 4 MiB replies are not
// copied once more out of the socket's chunks.
// A reader given `payloadStepBytes` (sheep's server) instead grows the payload buffer as its bytes
// arrive, so a header that announces 64 MiB and never sends them costs no more than what came;
// a payload is read in place then only into a buffer of its full length (one the sink brought).
import { SD_HEADER_SIZE } from './proto.js'

export interface FrameSink {
  /**
   * Called with each complete header; returns how many payload bytes follow it, or a string
   * saying why the stream must be abandoned (nothing more is read then).
   */
  payloadLength(header: Buffer): number | string
  /** Where a payload of `length` bytes (> 0) should land, when the caller brought a buffer for it. */
  payloadBuffer?(header: Buffer, length: number): Buffer | undefined
  onFrame(header: Buffer, payload: Buffer | undefined): void
  onProtocolError(reason: string): void
}

export interface FrameReaderOptions {
  /**
   * Allocate a payload in steps as its bytes arrive: none before its first byte, then this many
   * bytes, each next step doubling it (never past the payload's length); absent: at once, at
   * its full length when the header has come.
   * Read in place (nextReadBuffer), a payload lands in its own buffer only once that has its
   * full length (one the sink brought); before, reads land in the scratch buffer and are copied.
   */
  payloadStepBytes?: number
}

const EMPTY = Buffer.alloc(0)

/**
 * `decode` of a frame's header, done once per frame: a reader hands each frame's header (a
 * Buffer of its own) to payloadLength, payloadBuffer and onFrame in turn, and a sink that decodes
 * it in each would pay for it up to three times.
 */
export function decodedOncePerFrame<T>(decode: (header: Buffer) => T): (header: Buffer) => T {
  let last: Buffer | undefined
  let value: T | undefined
  return (header) => {
    if (header !== last) {
      value = decode(header)
      last = header
    }
    return value as T
  }
}

export class FrameReader {
  private header = Buffer.allocUnsafe(SD_HEADER_SIZE)
  private headerFill = 0
  private payload: Buffer | undefined
  private payloadFill = 0
  /** The length the pending header announced: the payload is complete when this many have come. */
  private payloadLength = 0
  private failed = false

  constructor(
    private readonly sink: FrameSink,
    private readonly options: FrameReaderOptions = {},
  ) {
    if (options.payloadStepBytes !== undefined && !(options.payloadStepBytes > 0)) throw new Error(`payload step of ${options.payloadStepBytes} bytes`)
  }

  push(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length && !this.failed) {
      if (this.payload === undefined) {
        const take = Math.min(SD_HEADER_SIZE - this.headerFill, chunk.length - at)
        chunk.copy(this.header, this.headerFill, at, at + take)
        this.headerFill += take
        at += take
        if (this.headerFill < SD_HEADER_SIZE) return
        const header = this.header
        this.header = Buffer.allocUnsafe(SD_HEADER_SIZE)
        this.headerFill = 0
        const length = this.sink.payloadLength(header)
        if (typeof length === 'string') {
          this.failed = true
          this.sink.onProtocolError(length)
          return
        }
        if (length === 0) {
          this.sink.onFrame(header, undefined)
          continue
        }
        // stepped: nothing is allocated before the first payload byte comes
        const step = this.options.payloadStepBytes
        this.payload = this.sink.payloadBuffer?.(header, length) ?? (step === undefined ? Buffer.allocUnsafe(length) : EMPTY)
        this.payloadLength = length
        this.payloadFill = 0
        this.pendingHeader = header
      } else {
        const take = Math.min(this.payloadLength - this.payloadFill, chunk.length - at)
        if (this.payloadFill + take > this.payload.length) this.growPayload(this.payloadFill + take)
        chunk.copy(this.payload, this.payloadFill, at, at + take)
        this.payloadFill += take
        at += take
        if (this.payloadFill === this.payloadLength) this.completePayload()
      }
    }
  }

  /** A stepped payload buffer made big enough for `needed` bytes (doubling, capped at its length). */
  private growPayload(needed: number): void {
    const old = this.payload!
    if (!(needed <= this.payloadLength)) throw new Error(`payload of ${needed} bytes past the announced ${this.payloadLength}`)
    const step = this.options.payloadStepBytes ?? 0
    const grown = Buffer.allocUnsafe(Math.min(this.payloadLength, Math.max(needed, step, old.length * 2)))
    old.copy(grown, 0, 0, this.payloadFill)
    this.payload = grown
  }

  /**
   * Where the next socket read should land: the unfilled rest of a payload whose buffer has its
   * full length (always, unless stepped), else `scratch`.
   */
  nextReadBuffer(scratch: Buffer): Buffer {
    const payload = this.payload
    if (payload !== undefined && !this.failed && payload.length === this.payloadLength) return payload.subarray(this.payloadFill)
    return scratch
  }

  /** `n` bytes were read into `target`, a buffer nextReadBuffer returned. */
  received(target: Uint8Array, n: number): void {
    const payload = this.payload
    if (payload !== undefined && target.buffer === payload.buffer && target.byteOffset === payload.byteOffset + this.payloadFill) {
      if (!(n > 0 && this.payloadFill + n <= payload.length)) throw new Error(`read of ${n} bytes does not fit the payload`)
      this.payloadFill += n
      if (this.payloadFill === this.payloadLength) this.completePayload()
      return
    }
    this.push(Buffer.from(target.buffer, target.byteOffset, n))
  }

  private completePayload(): void {
    const payload = this.payload!
    const header = this.pendingHeader!
    this.payload = undefined
    this.pendingHeader = undefined
    this.sink.onFrame(header, payload)
  }

  private pendingHeader: Buffer | undefined

  /** Bytes of the frame being read that have arrived (header and payload): what it holds now. */
  get pendingBytes(): number {
    return this.payload === undefined ? this.headerFill : SD_HEADER_SIZE + this.payloadFill
  }

  /**
   * The stream ends: the buffer of a payload partly read (the sink's own, from payloadBuffer, or
   * one allocated here), for its owner to take back; nothing more is read.
   */
  abandon(): Buffer | undefined {
    const payload = this.payload
    this.payload = undefined
    this.pendingHeader = undefined
    this.failed = true
    return payload
  }

  /** True when no frame is partially read (a clean place for the peer to close). */
  get idle(): boolean {
    return this.headerFill === 0 && this.payload === undefined
  }
}
