// A SheepConnection that reaches this sheep without a socket (issue #15): the NBD server's
// requests go through the same header checks, op table and response encoding as a request on
// the unix socket (SheepServer.process and responseOf), but skip encoding onto a socket, the
// server's frame parsing and the reply's trip back — one round trip and its wake-ups less per
// request. Requests count as coming from the unix socket (admin ops allowed).
import { type Reply, type RequestOptions, SheepConnection } from '../lib/client.js'
import { type SdRequest, decodeRequestHeader, decodeResponseHeader, encodeRequestHeader } from '../lib/codec.js'
import { SdTransportError } from '../lib/errors.js'
import type { Layout } from '../lib/layout.js'
import { SD_FLAG_CMD_PIGGYBACK, SD_FLAG_CMD_WRITE } from '../lib/proto.js'
import type { OpReply } from './op-types.js'

/** What runs one request in this sheep and encodes its answer (SheepServer). */
export interface RequestProcessor {
  process(req: SdRequest, data: Buffer | undefined, from: { admin: boolean }): Promise<OpReply>
  responseOf(req: SdRequest, r: OpReply): { header: Buffer; data: Buffer | undefined }
}

export class InProcessConnection extends SheepConnection {
  private nextRequestId = 1
  private shut = false

  constructor(private readonly server: RequestProcessor) {
    super({ path: '(in process)' })
  }

  override request<L extends Layout>(opts: RequestOptions<L>): Promise<Reply> {
    if (this.shut) return Promise.reject(new SdTransportError('in-process connection is closed'))
    const data = opts.data && opts.data.length > 0 ? opts.data : undefined
    const flags = (opts.flags ?? 0) | (data ? SD_FLAG_CMD_WRITE : 0)
    const dataLength = data ? data.length : (opts.readLength ?? 0)
    const id = this.nextRequestId
    this.nextRequestId = (this.nextRequestId + 1) >>> 0 || 1
    const req = decodeRequestHeader(encodeRequestHeader(opts, { flags, dataLength, id }))
    const maxReply = (flags & SD_FLAG_CMD_WRITE) === 0 || (flags & SD_FLAG_CMD_PIGGYBACK) !== 0 ? dataLength : 0
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SdTransportError(`in-process request timed out after ${timeoutMs} ms`)), timeoutMs)
      this.server.process(req, data, { admin: true }).then(
        (r) => {
          clearTimeout(timer)
          const { header, data: out } = this.server.responseOf(req, r)
          const rsp = decodeResponseHeader(header)
          if (!out || out.length === 0) return resolve({ rsp, data: Buffer.alloc(0) })
          if (out.length > maxReply) return reject(new SdTransportError(`response carries ${out.length} bytes, more than the ${maxReply} asked for`))
          const into = opts.replyInto
          if (into === undefined || into.length < out.length) return resolve({ rsp, data: out })
          out.copy(into)
          resolve({ rsp, data: into.subarray(0, out.length) })
        },
        (e: unknown) => {
          clearTimeout(timer)
          reject(e instanceof Error ? e : new Error(String(e)))
        },
      )
    })
  }

  override close(): void {
    this.shut = true
  }
}
