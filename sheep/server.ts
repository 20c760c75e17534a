// Sheep's listeners (TCP and PATH/sock) and the request path: frames in → header checks → op
// table → status gate → handler → response frame (wire-protocol.md §1). Requests on one
// connection run concurrently and are answered as they finish (out of order, matched by id).
// A malformed request gets an error result; only a stream that cannot be trusted is closed.
// Clients that misbehave cannot exhaust the daemon (issue 16, "Bad clients"): connections are
// capped in total and per remote address, a frame begun must be complete within a time, bytes
// held for a connection (its frame being read, the payloads of its requests being processed) are
// budgeted per address and in total (reading pauses beyond), and idle connections are closed
// only under pressure, as dog, tgt and QEMU keep theirs open for long. With --admin-from, admin
// ops (op table `admin`) from elsewhere than the listed networks are answered NO_SUPPORT.
import fs from 'node:fs'
import net from 'node:net'
import {
  COMMON_HEADER,
  RSP_VARIANT_AT,
  type SdRequest,
  decodeRequestHeader,
  encodeResponseHeader,
  maxResponsePayload,
  requestCarriesPayload,
  validateRequestHeader,
} from '../lib/codec.js'
import { BufferPool, SmallBufferSlab } from '../lib/buffer-pool.js'
import { FrameReader, decodedOncePerFrame } from '../lib/framing.js'
import { readInPlace } from '../lib/socket-in-place.js'
import { writeFrame, writeFrameNow } from '../lib/coalesced-write.js'
import { resultOfError } from '../lib/errors.js'
import {
  SD_RES_BUFFER_SMALL,
  SD_RES_INVALID_PARMS,
  SD_RES_KILLED,
  SD_RES_NO_SUPPORT,
  SD_RES_SHUTDOWN,
  SD_STATUS_KILLED,
  SD_STATUS_SHUTDOWN,
  opcodeName,
  SD_OP_READ_OBJ,
  SD_OP_READ_PEER,
  SD_OP_WRITE_OBJ,
  SD_OP_WRITE_PEER,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_REMOVE_OBJ,
  SD_OP_REMOVE_PEER,
  SD_HEADER_SIZE,
  SD_MAX_DATA_LENGTH,
} from '../lib/proto.js'
import { type AdminNetworks, adminAllowed } from './admin-access.js'
import type { OpReply } from './op-types.js'
import { OPS, waitingResult } from './ops.js'
import type { Sheep } from './sheep.js'

/** Connections served at once over every listener; further ones are closed on accept. */
export const SERVER_MAX_CONNECTIONS = 1024
/**
 * Connections from one remote TCP address; further ones are closed on accept. The unix socket
 * (local users, the NBD server's connections) has no such cap. Room for a hypervisor host's
 * many VMs (QEMU opens one or two per disk) and a gateway's pooled connections.
 */
export const SERVER_MAX_CONNECTIONS_PER_ADDRESS = 256
/** Requests of one connection being processed at once; reading pauses beyond this. */
export const SERVER_MAX_IN_FLIGHT_PER_CONNECTION = 128
/**
 * A frame whose first byte has come must be complete within this time (a header and never the
 * payload): the connection is closed then. Time spent paused by this server does not count.
 * Generous: a 64 MiB payload at 10 Mbit/s takes under a minute.
 */
export const SERVER_FRAME_TIMEOUT_MS = 60_000
/** A connection that has sent nothing at all since it was opened is closed after this time. */
export const SERVER_SILENT_TIMEOUT_MS = 300_000
/** From this many connections on, the server is under pressure: idle connections are closed. */
export const SERVER_PRESSURE_CONNECTIONS = (SERVER_MAX_CONNECTIONS * 3) / 4
/** Under pressure, a connection with no request for this long is closed (it may reconnect). */
export const SERVER_IDLE_TIMEOUT_UNDER_PRESSURE_MS = 30_000
/** How often the timeouts above are checked. */
export const SERVER_SWEEP_INTERVAL_MS = 1_000
/**
 * Bytes held for the connections of one remote address (frames being read, payloads of requests
 * being processed); a connection that brings more is paused until some are released. Room for
 * two requests of the largest payload at once.
 */
export const SERVER_MAX_HELD_BYTES_PER_ADDRESS = 2 * SD_MAX_DATA_LENGTH
/** Bytes held for all connections; beyond, every connection that brings more is paused. */
export const SERVER_MAX_HELD_BYTES = 8 * SD_MAX_DATA_LENGTH
/** The most one socket read takes in when it does not go straight into a payload's buffer. */
export const SERVER_READ_SCRATCH_BYTES = 64 * 1024
/** A payload buffer starts this big and doubles as its bytes come (lib/framing.ts). */
export const SERVER_PAYLOAD_STEP_BYTES = 256 * 1024
/** At the cap in all, a connection idle this long may be closed to make room for a new one. */
export const SERVER_EVICT_IDLE_MIN_MS = 5_000
/** How often refused connections are summed up in the log, rather than a line each. */
export const SERVER_REFUSAL_LOG_INTERVAL_MS = 10_000

/** The key of the per-address limits for the unix socket, which has none. */
const UNIX_SOCKET = 'unix socket'

const READ_OPS = new Set([SD_OP_READ_OBJ, SD_OP_READ_PEER])
const WRITE_OPS = new Set([SD_OP_WRITE_OBJ, SD_OP_WRITE_PEER, SD_OP_CREATE_AND_WRITE_OBJ, SD_OP_CREATE_AND_WRITE_PEER])
const REMOVE_OPS = new Set([SD_OP_REMOVE_OBJ, SD_OP_REMOVE_PEER])

/** Request statistics for STAT (`dog node stat`): gateway and peer requests and bytes. */
function countStart(sheep: Sheep, gateway: boolean, opcode: number, data: Buffer | undefined): void {
  const st = sheep.stats
  const rx = BigInt(data?.length ?? 0)
  if (gateway) {
    st.gwActive++
    st.gwTotal++
    st.gwRxBytes += rx
    if (READ_OPS.has(opcode)) st.gwReads++
    else if (WRITE_OPS.has(opcode)) st.gwWrites++
    else if (REMOVE_OPS.has(opcode)) st.gwRemoves++
  } else {
    st.peerActive++
    st.peerTotal++
    st.peerRxBytes += rx
    if (READ_OPS.has(opcode)) st.peerReads++
    else if (WRITE_OPS.has(opcode)) st.peerWrites++
    else if (REMOVE_OPS.has(opcode)) st.peerRemoves++
  }
}

function countEnd(sheep: Sheep, gateway: boolean, r: OpReply | undefined): void {
  const st = sheep.stats
  const tx = BigInt(r?.data?.length ?? 0)
  if (gateway) {
    st.gwActive--
    st.gwTxBytes += tx
  } else {
    st.peerActive--
    st.peerTxBytes += tx
  }
}

/**
 * Told about every request the server answered (sheep/metrics.ts counts them here, the one
 * place every request passes): the op's kind in the op table ('unknown' when it has none).
 */
export type RequestObserver = (done: { opcode: number; kind: string; result: number; durationMs: number; rxBytes: number; txBytes: number }) => void

export interface Listen {
  host?: string
  port: number
  socketPath: string
  /** The I/O NIC's address (-i): a second TCP listener serving the same requests. */
  io?: { host: string; port: number }
}

const IPV4_MAPPED_PREFIX = '::ffff:'

/** The address of a TCP peer, an IPv4 client of a dual-stack listener as IPv4 ('' when unknown). */
function remoteAddressOf(socket: net.Socket): string {
  const address = socket.remoteAddress ?? ''
  const v4 = address.startsWith(IPV4_MAPPED_PREFIX) ? address.slice(IPV4_MAPPED_PREFIX.length) : ''
  return net.isIPv4(v4) ? v4 : address
}

/** Who sent a request, as far as its handling is concerned. */
export interface RequestSource {
  /** May send admin ops (see admin-access.ts). */
  admin: boolean
  /** The reply goes out of a socket and is released after (OpContext.replyPool). */
  replyPool?: BufferPool
}

/** One client or peer connection, and what the limits watch of it. */
interface Connection {
  socket: net.Socket
  /** The remote address, the key of the per-address limits; UNIX_SOCKET for the unix socket. */
  address: string
  /** May send admin ops (see admin-access.ts). */
  admin: boolean
  reader: FrameReader
  /** Requests of this connection being processed. */
  inFlight: number
  /** Paused because SERVER_MAX_IN_FLIGHT_PER_CONNECTION requests are being processed. */
  pausedForRequests: boolean
  /** Paused because the held bytes of its address or of the server are over budget. */
  pausedForBytes: boolean
  /** Bytes counted against the budgets now: its frame being read and its requests' payloads. */
  heldBytes: number
  /** When the frame being read began (performance.now()), or undefined between frames. */
  frameStartMs: number | undefined
  /** When it last brought a whole request or was answered; when it opened, before that. */
  lastActiveMs: number
  /** Has sent at least one byte. */
  spoken: boolean
  closed: boolean
}

export interface SheepServerOptions {
  /** Networks admin ops are accepted from besides the unix socket (--admin-from); absent: anywhere. */
  adminFrom?: AdminNetworks
}

export class SheepServer {
  private readonly servers: net.Server[] = []
  /**
   * Where the payloads of object writes land (lib/buffer-pool.ts), and the bytes of data-object
   * reads this node answers itself (OpContext.replyPool): a write's payload is given back once
   * its request has been answered, every replica written, a read's once the socket took the
   * reply; so 1 MiB requests reuse buffers instead of making V8 collect a fresh one each.
   */
  readonly payloadPool = new BufferPool()
  /** Where small object-write payloads are cut from (lib/buffer-pool.ts). */
  private readonly smallPayloads = new SmallBufferSlab()
  /** Where reads not into a payload's own buffer land: one for all connections, as each read is consumed at once. */
  private readonly readScratch = Buffer.allocUnsafeSlow(SERVER_READ_SCRATCH_BYTES)
  private readonly connections = new Set<Connection>()
  /** Open connections by remote address. */
  private readonly perAddress = new Map<string, number>()
  /** Held bytes by remote address, and over all of them. */
  private readonly heldPerAddress = new Map<string, number>()
  private heldTotal = 0
  private readonly pausedForBytes = new Set<Connection>()
  /** Connections refused since the last summary in the log, by the limit that refused them. */
  private refused = new Map<string, number>()
  private lastRefusalLogMs = 0
  /** Idle connections closed to make room since the last summary in the log. */
  private evicted = 0
  private sweeper: NodeJS.Timeout | undefined
  private inFlight = 0
  private drainWaiters: Array<() => void> = []
  /** Set by whoever watches the requests (metrics); none by default. */
  observer: RequestObserver | undefined

  constructor(
    private readonly sheep: Sheep,
    private readonly options: SheepServerOptions = {},
  ) {}

  /** Client and peer connections open now. */
  get connectionCount(): number {
    return this.connections.size
  }

  /** Requests being processed now, over every connection. */
  get requestsInFlight(): number {
    return this.inFlight
  }

  /** Bytes held now for frames being read and payloads of requests being processed. */
  get heldBytes(): number {
    return this.heldTotal
  }

  async listen(opts: Listen): Promise<void> {
    await this.listenTcp(opts.host, opts.port)
    // the original opens it right after the main port; other sheep send object traffic here
    if (opts.io) await this.listenTcp(opts.io.host, opts.io.port)
    try {
      fs.rmSync(opts.socketPath, { force: true })
    } catch {
      // a stale socket that cannot be removed makes the listen below fail with its reason
    }
    const unix = net.createServer({ pauseOnConnect: true }, (s) => this.accept(s, false))
    await new Promise<void>((resolve, reject) => {
      unix.once('error', reject)
      unix.listen(opts.socketPath, () => {
        unix.off('error', reject)
        resolve()
      })
    })
    this.servers.push(unix)
    // once listening, an error is one accept's (EMFILE when out of descriptors): the daemon goes on
    for (const server of this.servers) server.on('error', (e) => this.sheep.log.warn(`accepting a connection failed: ${String(e)}`))
    this.sweeper = setInterval(() => this.sweep(), SERVER_SWEEP_INTERVAL_MS)
    this.sweeper.unref()
    const admin = this.options.adminFrom
    if (admin) this.sheep.log.info(`admin requests accepted from the unix socket and ${admin.text} only`)
  }

  private async listenTcp(host: string | undefined, port: number): Promise<void> {
    const tcp = net.createServer({ pauseOnConnect: true }, (s) => this.accept(s, true))
    // pushed first: a listener that fails is closed with the others
    this.servers.push(tcp)
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen({ host, port }, () => {
        tcp.off('error', reject)
        resolve()
      })
    })
  }

  /** Stops accepting; resolves when in-flight requests have been answered. */
  async close(): Promise<void> {
    clearInterval(this.sweeper)
    for (const s of this.servers) s.close()
    if (this.inFlight > 0) await new Promise<void>((r) => this.drainWaiters.push(r))
    // the last replies may still be corked until the end of this turn (lib/coalesced-write.ts):
    // let them go out before the sockets do (a shutdown's own reply is one of them)
    await new Promise<void>((r) => setImmediate(r))
    for (const c of this.connections) c.socket.destroy()
  }

  /**
   * Why a new connection from `address` must be refused, or undefined when it may be served.
   * At the cap in all, the connection idle longest makes room if it has been idle for a while
   * (one that never spoke first): a client that fills the server from many addresses does not
   * lock out the next well-behaved one.
   */
  private refusal(address: string): string | undefined {
    if (address !== UNIX_SOCKET && (this.perAddress.get(address) ?? 0) >= SERVER_MAX_CONNECTIONS_PER_ADDRESS) {
      return `${SERVER_MAX_CONNECTIONS_PER_ADDRESS} connections from ${address}`
    }
    if (this.connections.size >= SERVER_MAX_CONNECTIONS && !this.evictIdle()) return `${SERVER_MAX_CONNECTIONS} connections in all`
    return undefined
  }

  /** Closes the connection idle longest (silent ones first) if idle for SERVER_EVICT_IDLE_MIN_MS; false when none is. */
  private evictIdle(): boolean {
    const nowMs = performance.now()
    let victim: Connection | undefined
    for (const conn of this.connections) {
      if (conn.inFlight > 0 || conn.frameStartMs !== undefined || nowMs - conn.lastActiveMs < SERVER_EVICT_IDLE_MIN_MS) continue
      const better = victim === undefined || (conn.spoken === victim.spoken ? conn.lastActiveMs < victim.lastActiveMs : !conn.spoken)
      if (better) victim = conn
    }
    if (victim === undefined) return false
    this.evicted++
    victim.socket.destroy()
    // counted out now, not when its close event comes: the new connection takes its place
    this.onClose(victim)
    return true
  }

  private accept(accepted: net.Socket, tcp: boolean): void {
    const address = tcp ? remoteAddressOf(accepted) : UNIX_SOCKET
    const why = this.refusal(address)
    if (why !== undefined) {
      this.refused.set(why, (this.refused.get(why) ?? 0) + 1)
      accepted.destroy()
      return
    }
    const nowMs = performance.now()
    const conn: Connection = {
      socket: accepted,
      address,
      admin: !tcp || adminAllowed(this.options.adminFrom, address),
      reader: undefined as unknown as FrameReader,
      inFlight: 0,
      pausedForRequests: false,
      pausedForBytes: false,
      heldBytes: 0,
      frameStartMs: undefined,
      lastActiveMs: nowMs,
      spoken: false,
      closed: false,
    }
    const requestOf = decodedOncePerFrame(decodeRequestHeader)
    conn.reader = new FrameReader(
      {
        payloadLength: (raw) => {
          const req = requestOf(raw)
          const verdict = validateRequestHeader(req)
          if (!verdict.ok && verdict.fatal) return verdict.reason
          return requestCarriesPayload(req) ? req.dataLength : 0
        },
        // only object writes: their handlers are done with the payload once they answer (an
        // op's reply never hands it on); any other op's payload is the handler's to keep
        payloadBuffer: (raw, length) => {
          if (!WRITE_OPS.has(raw[COMMON_HEADER.opcode[0]] as number)) return undefined
          if (SmallBufferSlab.fits(length)) return this.smallPayloads.take(length)
          return BufferPool.fits(length) ? this.payloadPool.acquire(length) : undefined
        },
        onFrame: (raw, payload) => this.onFrame(conn, requestOf(raw), payload),
        onProtocolError: (reason) => {
          this.sheep.log.warn(`closing connection from ${address}: ${reason}`)
          conn.socket.destroy()
        },
      },
      { payloadStepBytes: SERVER_PAYLOAD_STEP_BYTES },
    )
    // pooled payloads are read straight into their buffers; the rest lands in the scratch
    const inPlace = readInPlace(accepted, {
      buffer: () => conn.reader.nextReadBuffer(this.readScratch),
      received: (target, n) => this.onReceived(conn, target, n),
    })
    if (inPlace) conn.socket = inPlace
    else {
      accepted.on('data', (chunk: Buffer) => this.onReceived(conn, chunk, chunk.length))
      accepted.resume()
    }
    const socket = conn.socket
    if (tcp) socket.setNoDelay(true)
    this.connections.add(conn)
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1)
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.onClose(conn))
  }

  /** `n` bytes came in `target` (the reader's own buffer when read in place). */
  private onReceived(conn: Connection, target: Uint8Array, n: number): void {
    conn.spoken = true
    const before = conn.reader.pendingBytes
    conn.reader.received(target, n)
    // frames completed by this chunk moved their payloads from the reader to their requests
    this.hold(conn, conn.reader.pendingBytes - before)
    // a frame begun by this chunk (each completed one cleared the mark in onFrame)
    if (!conn.reader.idle) conn.frameStartMs ??= performance.now()
    if (!conn.pausedForBytes && !conn.socket.destroyed && this.overBudget(conn.address)) {
      conn.pausedForBytes = true
      this.pausedForBytes.add(conn)
      conn.socket.pause()
    }
  }

  private onFrame(conn: Connection, req: SdRequest, payload: Buffer | undefined): void {
    // the payload stays held until its request is answered: counted here, released below
    this.hold(conn, payload?.length ?? 0)
    conn.inFlight++
    this.inFlight++
    conn.frameStartMs = undefined
    conn.lastActiveMs = performance.now()
    if (conn.inFlight >= SERVER_MAX_IN_FLIGHT_PER_CONNECTION && !conn.pausedForRequests) {
      conn.pausedForRequests = true
      conn.socket.pause()
    }
    void this.process(req, payload, { admin: conn.admin, replyPool: this.payloadPool }).then((r) => {
      // nothing else in progress here: the reply has nothing to wait for and leaves at once
      this.send(conn.socket, req, r, this.sheep.requestsInProgress === 0)
      conn.lastActiveMs = performance.now()
      conn.inFlight--
      this.inFlight--
      this.hold(conn, -(payload?.length ?? 0))
      if (payload && this.payloadPool.lends(payload) && r.data?.buffer !== payload.buffer) this.payloadPool.release(payload)
      if (conn.pausedForRequests && conn.inFlight < SERVER_MAX_IN_FLIGHT_PER_CONNECTION / 2) {
        conn.pausedForRequests = false
        // a frame half read when reading paused gets its full time again
        if (conn.frameStartMs !== undefined) conn.frameStartMs = performance.now()
        if (!conn.pausedForBytes) conn.socket.resume()
      }
      this.resumeWithinBudget()
      if (this.inFlight === 0) for (const w of this.drainWaiters.splice(0)) w()
    })
  }

  private onClose(conn: Connection): void {
    if (conn.closed) return
    conn.closed = true
    this.connections.delete(conn)
    const left = (this.perAddress.get(conn.address) ?? 1) - 1
    if (left > 0) this.perAddress.set(conn.address, left)
    else this.perAddress.delete(conn.address)
    this.pausedForBytes.delete(conn)
    // the frame being read is dropped; payloads of requests still processed are released by them
    this.hold(conn, -conn.reader.pendingBytes)
    const partial = conn.reader.abandon()
    if (partial && this.payloadPool.lends(partial)) this.payloadPool.release(partial)
    this.resumeWithinBudget()
  }

  /** Counts `bytes` (negative: releases) against the connection's address and the total. */
  private hold(conn: Connection, bytes: number): void {
    if (bytes === 0) return
    conn.heldBytes += bytes
    this.heldTotal += bytes
    const address = (this.heldPerAddress.get(conn.address) ?? 0) + bytes
    if (address > 0) this.heldPerAddress.set(conn.address, address)
    else this.heldPerAddress.delete(conn.address)
    if (conn.heldBytes < 0 || this.heldTotal < 0 || address < 0) throw new Error(`held bytes below zero for ${conn.address}`)
  }

  private overBudget(address: string): boolean {
    return this.heldTotal > SERVER_MAX_HELD_BYTES || (this.heldPerAddress.get(address) ?? 0) > SERVER_MAX_HELD_BYTES_PER_ADDRESS
  }

  /** Resumes the connections paused for bytes whose address and the server are within budget again. */
  private resumeWithinBudget(): void {
    if (this.pausedForBytes.size === 0 || this.heldTotal > SERVER_MAX_HELD_BYTES) return
    for (const conn of this.pausedForBytes) {
      if (this.overBudget(conn.address)) continue
      this.pausedForBytes.delete(conn)
      conn.pausedForBytes = false
      if (!conn.pausedForRequests) conn.socket.resume()
    }
  }

  /**
   * Closes the connections the timeouts condemn: a frame begun and not finished in time
   * (unless this server paused its reading for its own requests), silence since opening, and
   * under pressure idleness; then sums up the refused connections in the log.
   */
  private sweep(): void {
    const nowMs = performance.now()
    const pressure = this.connections.size >= SERVER_PRESSURE_CONNECTIONS
    const closed = new Map<string, number>()
    const close = (conn: Connection, why: string): void => {
      closed.set(why, (closed.get(why) ?? 0) + 1)
      conn.socket.destroy()
    }
    for (const conn of this.connections) {
      const idle = conn.inFlight === 0 && conn.frameStartMs === undefined
      if (conn.frameStartMs !== undefined && !conn.pausedForRequests && nowMs - conn.frameStartMs > SERVER_FRAME_TIMEOUT_MS) {
        close(conn, `a request not complete within ${SERVER_FRAME_TIMEOUT_MS} ms`)
      } else if (!conn.spoken && nowMs - conn.lastActiveMs > SERVER_SILENT_TIMEOUT_MS) {
        close(conn, `silent for ${SERVER_SILENT_TIMEOUT_MS} ms`)
      } else if (pressure && idle && nowMs - conn.lastActiveMs > SERVER_IDLE_TIMEOUT_UNDER_PRESSURE_MS) {
        close(conn, `idle for ${SERVER_IDLE_TIMEOUT_UNDER_PRESSURE_MS} ms with ${this.connections.size} connections open`)
      }
    }
    for (const [why, n] of closed) this.sheep.log.warn(`closed ${n} connection(s): ${why}`)
    if ((this.refused.size > 0 || this.evicted > 0) && nowMs - this.lastRefusalLogMs >= SERVER_REFUSAL_LOG_INTERVAL_MS) {
      for (const [why, n] of this.refused) this.sheep.log.warn(`refused ${n} connection(s): already ${why}`)
      if (this.evicted > 0) this.sheep.log.warn(`closed ${this.evicted} idle connection(s) to make room for new ones`)
      this.refused = new Map()
      this.evicted = 0
      this.lastRefusalLogMs = nowMs
    }
  }

  /**
   * Runs one request through the op table, and tells the observer about it; never throws.
   * `from.admin`: the sender may send admin ops (see admin-access.ts).
   */
  async process(req: SdRequest, data: Buffer | undefined, from: RequestSource): Promise<OpReply> {
    this.sheep.requestsInProgress++
    try {
      return await this.observed(req, data, from)
    } finally {
      this.sheep.requestsInProgress--
    }
  }

  private async observed(req: SdRequest, data: Buffer | undefined, from: RequestSource): Promise<OpReply> {
    const observer = this.observer
    if (observer === undefined) return this.dispatch(req, data, from)
    const startMs = performance.now()
    const r = await this.dispatch(req, data, from)
    const done = {
      opcode: req.opcode,
      kind: OPS.get(req.opcode)?.kind ?? 'unknown',
      result: r.result,
      durationMs: performance.now() - startMs,
      rxBytes: data?.length ?? 0,
      txBytes: r.data?.length ?? 0,
    }
    try {
      observer(done)
    } catch (e) {
      this.sheep.log.error(`request observer failed: ${String(e)}`)
    }
    return r
  }

  private async dispatch(req: SdRequest, data: Buffer | undefined, from: RequestSource): Promise<OpReply> {
    const sheep = this.sheep
    const verdict = validateRequestHeader(req)
    if (!verdict.ok) {
      sheep.log.warn(`refused ${opcodeName(req.opcode)}: ${verdict.reason}`)
      return { result: verdict.result }
    }
    const op = OPS.get(req.opcode)
    if (!op) return { result: SD_RES_INVALID_PARMS }
    if (op.admin && !from.admin) {
      sheep.log.warn(`refused ${opcodeName(req.opcode)}: admin requests are accepted only from ${this.options.adminFrom?.text}`)
      return { result: SD_RES_NO_SUPPORT }
    }
    if (sheep.status === SD_STATUS_KILLED) return { result: SD_RES_KILLED }
    if (sheep.status === SD_STATUS_SHUTDOWN) return { result: SD_RES_SHUTDOWN }
    const waiting = waitingResult(sheep)
    if (waiting !== undefined && !op.force) return { result: waiting }
    const counted = op.kind === 'gateway' || op.kind === 'peer'
    if (counted) countStart(sheep, op.kind === 'gateway', req.opcode, data)
    try {
      if (op.kind !== 'cluster') {
        const r = await op.handler(sheep, req, data, { replyPool: from.replyPool })
        if (counted) countEnd(sheep, op.kind === 'gateway', r)
        return r
      }
      const { work } = op
      if (work) return await sheep.exclusiveOp(req.raw, data, () => work(sheep, req, data))
      return await sheep.broadcastOp(req.raw, data)
    } catch (e) {
      if (counted) countEnd(sheep, op.kind === 'gateway', undefined)
      sheep.log.error(`${opcodeName(req.opcode)} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
      return { result: resultOfError(e) }
    }
  }

  /**
   * Sends the reply — at once when `now`, else with the other replies of this turn on the socket
   * (coalesced-write.ts); lent reply bytes (OpReply.release) go back once the socket took them.
   */
  private send(socket: net.Socket, req: SdRequest, r: OpReply, now: boolean): void {
    if (socket.destroyed) {
      r.release?.()
      return
    }
    const { header, data } = this.responseOf(req, r)
    if (data !== r.data) r.release?.()
    ;(now ? writeFrameNow : writeFrame)(socket, header, data, data === r.data ? r.release : undefined)
  }

  /** The response header and payload answering `req` with `r`, as they go on the wire. */
  responseOf(req: SdRequest, r: OpReply): { header: Buffer; data: Buffer | undefined } {
    let result = r.result
    let data = r.data
    if (data && data.length > maxResponsePayload(req)) {
      // never more payload than the client can take (§1.1 rule 4). The client's doing (a buffer
      // too small, or a write flag on a read): a warning, since any client could otherwise fill
      // the log with errors (the wire fuzz of the fault suite did)
      this.sheep.log.warn(`${opcodeName(req.opcode)}: reply of ${data.length} bytes exceeds the client's ${maxResponsePayload(req)}: BUFFER_SMALL`)
      result = SD_RES_BUFFER_SMALL
      data = undefined
    }
    const header = encodeResponseHeader({
      opcode: req.opcode,
      epoch: this.sheep.epoch,
      id: req.id,
      dataLength: data?.length ?? 0,
      result,
      variant: r.variant,
      fields: r.fields as never,
    })
    if (r.rawRsp) {
      // a cluster op's response fields come from its work phase, the result from its main phase
      r.rawRsp.copy(header, RSP_VARIANT_AT, RSP_VARIANT_AT, SD_HEADER_SIZE)
    }
    return { header, data }
  }
}
