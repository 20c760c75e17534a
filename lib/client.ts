// A connection to one sheep, used by dog, sheepfs and sheep-to-sheep traffic: requests are
// pipelined on one socket and matched to responses by id, with a bound on requests in flight,
// a per-request timeout, and a lazy reconnect after the socket fails.
import net from 'node:net'
import { type CommonHeader, type RequestInit, type SdResponse, decodeResponseHeader, encodeRequestHeader } from './codec.js'
import { SdConnectError, SdError, SdTransportError } from './errors.js'
import { FrameReader, decodedOncePerFrame } from './framing.js'
import { writeFrame, writeFrameNow } from './coalesced-write.js'
import type { Layout } from './layout.js'
import { SD_FLAG_CMD_PIGGYBACK, SD_FLAG_CMD_WRITE, SD_RES_SUCCESS } from './proto.js'

/** How many requests one connection keeps on the wire before queueing more. */
export const CLIENT_MAX_IN_FLIGHT = 64
/** Default time to wait for one response (the original's receive timeout is 30 s). */
export const CLIENT_REQUEST_TIMEOUT_MS = 30_000
/** Time to wait for a TCP connect. */
export const CLIENT_CONNECT_TIMEOUT_MS = 5_000
/** Socket reads outside a payload (headers, small replies) land in a buffer this big. */
const SOCKET_READ_SCRATCH_BYTES = 64 * 1024

export type SheepAddress = { host: string; port: number } | { path: string }

export function addressText(a: SheepAddress): string {
  return 'path' in a ? a.path : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
}

export interface RequestOptions<L extends Layout = Layout> extends Omit<RequestInit<L>, 'dataLength' | 'id'> {
  /** Payload to send (sets CMD_WRITE and data_length). */
  data?: Buffer
  /** Receive buffer size for reads (data_length of a request without payload). */
  readLength?: number
  /**
   * Where the reply's payload goes when it fits (the reply's data is then a view of it): a
   * reused buffer spares allocating one per reply. It must not be touched until the request
   * has settled.
   */
  replyInto?: Buffer
  timeoutMs?: number
  /**
   * Nothing else is under way that could share its system call (the sheep serves one request):
   * the frame leaves at once instead of with the rest of the turn's (lib/coalesced-write.ts).
   */
  sendAtOnce?: boolean
}

export interface Reply {
  rsp: SdResponse
  data: Buffer
}

interface Pending {
  header: Buffer
  data: Buffer | undefined
  maxReply: number
  replyInto: Buffer | undefined
  resolve: (r: Reply) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout | undefined
  timeoutMs: number
  sendAtOnce: boolean
}

export interface ConnectionOptions {
  maxInFlight?: number
  timeoutMs?: number
  connectTimeoutMs?: number
}

export class SheepConnection {
  private socket: net.Socket | undefined
  private connecting: Promise<net.Socket> | undefined
  private nextId = 1
  private readonly inFlight = new Map<number, Pending>()
  private readonly queued: Pending[] = []
  private closed = false
  readonly maxInFlight: number
  readonly timeoutMs: number
  readonly connectTimeoutMs: number

  constructor(
    readonly address: SheepAddress,
    opts: ConnectionOptions = {},
  ) {
    this.maxInFlight = opts.maxInFlight ?? CLIENT_MAX_IN_FLIGHT
    this.timeoutMs = opts.timeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS
    this.connectTimeoutMs = opts.connectTimeoutMs ?? CLIENT_CONNECT_TIMEOUT_MS
  }

  /** Sends one request and resolves with the response whatever its result code. */
  request<L extends Layout>(opts: RequestOptions<L>): Promise<Reply> {
    if (this.closed) return Promise.reject(new SdTransportError(`connection to ${addressText(this.address)} is closed`))
    const data = opts.data
    const flags = (opts.flags ?? 0) | (data && data.length > 0 ? SD_FLAG_CMD_WRITE : 0)
    const dataLength = data ? data.length : (opts.readLength ?? 0)
    const id = this.nextId
    this.nextId = (this.nextId + 1) >>> 0 || 1
    const header = encodeRequestHeader(opts, { flags, dataLength, id })
    const maxReply = (flags & SD_FLAG_CMD_WRITE) === 0 || (flags & SD_FLAG_CMD_PIGGYBACK) !== 0 ? dataLength : 0
    return new Promise<Reply>((resolve, reject) => {
      const pending: Pending = {
        header,
        data,
        maxReply,
        replyInto: opts.replyInto,
        resolve,
        reject,
        timer: undefined,
        timeoutMs: opts.timeoutMs ?? this.timeoutMs,
        sendAtOnce: opts.sendAtOnce === true,
      }
      if (this.inFlight.size >= this.maxInFlight) this.queued.push(pending)
      else this.dispatch(pending)
    })
  }

  /** Like `request`, but a result other than SUCCESS becomes an SdError. */
  async call<L extends Layout>(opts: RequestOptions<L>): Promise<Reply> {
    const reply = await this.request(opts)
    if (reply.rsp.result !== SD_RES_SUCCESS) throw new SdError(reply.rsp.result)
    return reply
  }

  close(): void {
    this.closed = true
    this.fail(new SdTransportError(`connection to ${addressText(this.address)} closed`))
    this.socket?.destroy()
    this.socket = undefined
  }

  get pendingCount(): number {
    return this.inFlight.size + this.queued.length
  }

  private dispatch(p: Pending): void {
    const id = p.header.readUInt32LE(8)
    this.inFlight.set(id, p)
    p.timer = setTimeout(() => {
      this.resetSocket(new SdTransportError(`request to ${addressText(this.address)} timed out after ${p.timeoutMs} ms`))
    }, p.timeoutMs)
    // nothing to wait for (RequestOptions.sendAtOnce): on a connected socket it leaves now
    const socket = this.socket
    if (p.sendAtOnce && socket && !socket.destroyed) {
      writeFrameNow(socket, p.header, p.data)
      return
    }
    this.connect().then(
      (socket) => {
        if (!this.inFlight.has(id)) return
        writeFrame(socket, p.header, p.data)
      },
      (err: Error) => this.resetSocket(err),
    )
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket)
    if (this.connecting) return this.connecting
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const responseOf = decodedOncePerFrame(decodeResponseHeader)
      const reader = new FrameReader({
        payloadLength: (header) => {
          const rsp = responseOf(header)
          const pending = this.inFlight.get(rsp.id)
          if (!pending) return `response with unknown id ${rsp.id}`
          if (rsp.dataLength > pending.maxReply) return `response carries ${rsp.dataLength} bytes, more than the ${pending.maxReply} asked for`
          return rsp.dataLength
        },
        payloadBuffer: (header, length) => {
          const into = this.inFlight.get(responseOf(header).id)?.replyInto
          return into !== undefined && into.length >= length ? into.subarray(0, length) : undefined
        },
        onFrame: (header, payload) => {
          const rsp = responseOf(header)
          const pending = this.inFlight.get(rsp.id)
          if (!pending) return
          this.inFlight.delete(rsp.id)
          clearTimeout(pending.timer)
          pending.resolve({ rsp, data: payload ?? Buffer.alloc(0) })
          this.pump()
        },
        onProtocolError: (reason) => {
          this.resetSocket(new SdTransportError(`protocol error from ${addressText(this.address)}: ${reason}`))
        },
      })
      // replies are read in place into their payload buffers (see FrameReader.nextReadBuffer)
      const scratch = Buffer.allocUnsafeSlow(SOCKET_READ_SCRATCH_BYTES)
      const onread = {
        buffer: () => reader.nextReadBuffer(scratch),
        callback: (n: number, buf: Uint8Array) => {
          reader.received(buf, n)
          return true
        },
      }
      const socket =
        'path' in this.address
          ? net.createConnection({ path: this.address.path, onread })
          : net.createConnection({ host: this.address.host, port: this.address.port, onread })
      const timer = setTimeout(() => {
        socket.destroy()
        this.connecting = undefined
        reject(new SdConnectError(`failed to connect to ${addressText(this.address)}: Connection timed out`))
      }, this.connectTimeoutMs)
      socket.once('connect', () => {
        clearTimeout(timer)
        if ('host' in this.address) socket.setNoDelay(true)
        this.socket = socket
        this.connecting = undefined
        resolve(socket)
      })
      socket.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        if (this.connecting) {
          this.connecting = undefined
          reject(new SdConnectError(`failed to connect to ${addressText(this.address)}: ${describeErrno(err)}`, err))
        } else {
          this.resetSocket(new SdTransportError(`failed to connect to ${addressText(this.address)}: ${describeErrno(err)}`, err))
        }
      })
      socket.on('close', () => {
        if (this.socket === socket) {
          this.socket = undefined
          this.fail(new SdTransportError(`connection to ${addressText(this.address)} was closed by the peer`))
        }
      })
    })
    return this.connecting
  }

  /** Drops the socket and fails everything on it; the next request reconnects. */
  private resetSocket(err: Error): void {
    const socket = this.socket
    this.socket = undefined
    socket?.destroy()
    this.fail(err)
  }

  private fail(err: Error): void {
    const all = [...this.inFlight.values(), ...this.queued.splice(0)]
    this.inFlight.clear()
    for (const p of all) {
      clearTimeout(p.timer)
      p.reject(err)
    }
  }

  private pump(): void {
    while (this.queued.length > 0 && this.inFlight.size < this.maxInFlight) this.dispatch(this.queued.shift()!)
  }
}

/** strerror-like text for the errno codes a connect can fail with. */
export function describeErrno(err: NodeJS.ErrnoException): string {
  const texts: Record<string, string> = {
    ECONNREFUSED: 'Connection refused',
    ECONNRESET: 'Connection reset by peer',
    ETIMEDOUT: 'Connection timed out',
    EHOSTUNREACH: 'No route to host',
    ENETUNREACH: 'Network is unreachable',
    ENOENT: 'No such file or directory',
    EPIPE: 'Broken pipe',
  }
  return (err.code && texts[err.code]) || err.message
}

/** Connections to many sheep, a few per peer, created on first use (sheep-to-sheep, sheepfs). */
export class ConnectionPool {
  private readonly conns = new Map<string, SheepConnection[]>()
  private turn = 0

  constructor(
    private readonly perPeer = 2,
    private readonly opts: ConnectionOptions = {},
  ) {}

  get(address: SheepAddress): SheepConnection {
    const key = addressText(address)
    let list = this.conns.get(key)
    if (!list) {
      list = []
      this.conns.set(key, list)
    }
    if (list.length < this.perPeer) {
      const conn = new SheepConnection(address, this.opts)
      list.push(conn)
      return conn
    }
    // the least busy connection; ties broken round-robin
    this.turn = (this.turn + 1) % list.length
    let best = list[this.turn]
    for (const c of list) if (c.pendingCount < best.pendingCount) best = c
    return best
  }

  /** Forget a peer (it left the cluster): its connections are closed. */
  drop(address: SheepAddress): void {
    const key = addressText(address)
    for (const c of this.conns.get(key) ?? []) c.close()
    this.conns.delete(key)
  }

  closeAll(): void {
    for (const list of this.conns.values()) for (const c of list) c.close()
    this.conns.clear()
  }
}

/**
 * A SheepConnection that spreads requests over up to `sockets` connections to one sheep (the
 * least busy first): bulk VDI I/O (dog vdi read/write, sheepfs volumes) keeps several object
 * requests in flight, and one socket would carry their payloads one after another.
 */
export class PooledConnection extends SheepConnection {
  private readonly pool: ConnectionPool

  constructor(address: SheepAddress, sockets: number, opts: ConnectionOptions = {}) {
    super(address, opts)
    this.pool = new ConnectionPool(sockets, opts)
  }

  override request<L extends Layout>(opts: RequestOptions<L>): Promise<Reply> {
    return this.pool.get(this.address).request(opts)
  }

  override close(): void {
    this.pool.closeAll()
    super.close()
  }
}

export type { CommonHeader }
