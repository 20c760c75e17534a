// Splits a byte stream into Sheepdog frames: a 48-byte header, then exactly the payload length
// the header implies. The payload is read straight into one buffer of its final size (no
// concatenation of 4 MiB payloads chunk by chunk). Used by the client and by sheep's server.
// A socket created with `onread` (the client) can even read a payload's rest in place:
// nextReadBuffer() hands it the unfilled part of the payload buffer, so 4 MiB replies are not
// copied once more out of the socket's chunks.
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

export class FrameReader {
  private header = Buffer.allocUnsafe(SD_HEADER_SIZE)
  private headerFill = 0
  private payload: Buffer | undefined
  private payloadFill = 0
  private failed = false

  constructor(private readonly sink: FrameSink) {}

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
        this.payload = this.sink.payloadBuffer?.(header, length) ?? Buffer.allocUnsafe(length)
        this.payloadFill = 0
        this.pendingHeader = header
      } else {
        const take = Math.min(this.payload.length - this.payloadFill, chunk.length - at)
        chunk.copy(this.payload, this.payloadFill, at, at + take)
        this.payloadFill += take
        at += take
        if (this.payloadFill === this.payload.length) this.completePayload()
      }
    }
  }

  /** Where the next socket read should land: the unfilled rest of a payload, else `scratch`. */
  nextReadBuffer(scratch: Buffer): Buffer {
    if (this.payload !== undefined && !this.failed) return this.payload.subarray(this.payloadFill)
    return scratch
  }

  /** `n` bytes were read into `target`, a buffer nextReadBuffer returned. */
  received(target: Uint8Array, n: number): void {
    const payload = this.payload
    if (payload !== undefined && target.buffer === payload.buffer && target.byteOffset === payload.byteOffset + this.payloadFill) {
      if (!(n > 0 && this.payloadFill + n <= payload.length)) throw new Error(`read of ${n} bytes does not fit the payload`)
      this.payloadFill += n
      if (this.payloadFill === payload.length) this.completePayload()
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

  /** True when no frame is partially read (a clean place for the peer to close). */
  get idle(): boolean {
    return this.headerFill === 0 && this.payload === undefined
  }
}
