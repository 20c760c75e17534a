// Sheep's listeners (TCP and PATH/sock) and the request path: frames in → header checks → op
// table → status gate → handler → response frame (wire-protocol.md §1). Requests on one
// connection run concurrently and are answered as they finish (out of order, matched by id).
// A malformed request gets an error result; only a stream that cannot be trusted is closed.
import fs from 'node:fs'
import net from 'node:net'
import {
  RSP_VARIANT_AT,
  type SdRequest,
  decodeRequestHeader,
  encodeResponseHeader,
  maxResponsePayload,
  requestCarriesPayload,
  validateRequestHeader,
} from '../lib/codec.js'
import { FrameReader } from '../lib/framing.js'
import { resultOfError } from '../lib/errors.js'
import {
  SD_RES_BUFFER_SMALL,
  SD_RES_INVALID_PARMS,
  SD_RES_KILLED,
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
} from '../lib/proto.js'
import type { OpReply } from './op-types.js'
import { OPS, waitingResult } from './ops.js'
import type { Sheep } from './sheep.js'

/** Connections served at once; further ones are closed on accept. */
export const SERVER_MAX_CONNECTIONS = 1024
/** Requests of one connection being processed at once; reading pauses beyond this. */
export const SERVER_MAX_IN_FLIGHT_PER_CONNECTION = 128

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

export class SheepServer {
  private readonly servers: net.Server[] = []
  private readonly sockets = new Set<net.Socket>()
  private inFlight = 0
  private drainWaiters: Array<() => void> = []
  /** Set by whoever watches the requests (metrics); none by default. */
  observer: RequestObserver | undefined

  constructor(private readonly sheep: Sheep) {}

  /** Client and peer connections open now. */
  get connectionCount(): number {
    return this.sockets.size
  }

  /** Requests being processed now, over every connection. */
  get requestsInFlight(): number {
    return this.inFlight
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
    const unix = net.createServer((s) => this.accept(s, false))
    unix.maxConnections = SERVER_MAX_CONNECTIONS
    await new Promise<void>((resolve, reject) => {
      unix.once('error', reject)
      unix.listen(opts.socketPath, () => {
        unix.off('error', reject)
        resolve()
      })
    })
    this.servers.push(unix)
  }

  private async listenTcp(host: string | undefined, port: number): Promise<void> {
    const tcp = net.createServer((s) => this.accept(s, true))
    tcp.maxConnections = SERVER_MAX_CONNECTIONS
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
    for (const s of this.servers) s.close()
    if (this.inFlight > 0) await new Promise<void>((r) => this.drainWaiters.push(r))
    for (const s of this.sockets) s.destroy()
  }

  private accept(socket: net.Socket, tcp: boolean): void {
    if (tcp) socket.setNoDelay(true)
    this.sockets.add(socket)
    let connInFlight = 0
    let paused = false
    const reader = new FrameReader({
      payloadLength: (raw) => {
        const req = decodeRequestHeader(raw)
        const verdict = validateRequestHeader(req)
        if (!verdict.ok && verdict.fatal) return verdict.reason
        return requestCarriesPayload(req) ? req.dataLength : 0
      },
      onFrame: (raw, payload) => {
        connInFlight++
        this.inFlight++
        if (connInFlight >= SERVER_MAX_IN_FLIGHT_PER_CONNECTION && !paused) {
          paused = true
          socket.pause()
        }
        const req = decodeRequestHeader(raw)
        void this.process(req, payload).then((r) => {
          this.send(socket, req, r)
          connInFlight--
          this.inFlight--
          if (paused && connInFlight < SERVER_MAX_IN_FLIGHT_PER_CONNECTION / 2) {
            paused = false
            socket.resume()
          }
          if (this.inFlight === 0) for (const w of this.drainWaiters.splice(0)) w()
        })
      },
      onProtocolError: (reason) => {
        this.sheep.log.warn(`closing connection from ${socket.remoteAddress ?? 'unix socket'}: ${reason}`)
        socket.destroy()
      },
    })
    socket.on('data', (chunk: Buffer) => reader.push(chunk))
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.sockets.delete(socket))
  }

  /** Runs one request through the op table, and tells the observer about it; never throws. */
  async process(req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
    const observer = this.observer
    if (observer === undefined) return this.dispatch(req, data)
    const startMs = performance.now()
    const r = await this.dispatch(req, data)
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

  private async dispatch(req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
    const sheep = this.sheep
    const verdict = validateRequestHeader(req)
    if (!verdict.ok) {
      sheep.log.warn(`refused ${opcodeName(req.opcode)}: ${verdict.reason}`)
      return { result: verdict.result }
    }
    const op = OPS.get(req.opcode)
    if (!op) return { result: SD_RES_INVALID_PARMS }
    if (sheep.status === SD_STATUS_KILLED) return { result: SD_RES_KILLED }
    if (sheep.status === SD_STATUS_SHUTDOWN) return { result: SD_RES_SHUTDOWN }
    const waiting = waitingResult(sheep)
    if (waiting !== undefined && !op.force) return { result: waiting }
    const counted = op.kind === 'gateway' || op.kind === 'peer'
    if (counted) countStart(sheep, op.kind === 'gateway', req.opcode, data)
    try {
      if (op.kind !== 'cluster') {
        const r = await op.handler(sheep, req, data)
        if (counted) countEnd(sheep, op.kind === 'gateway', r)
        return r
      }
      const { work } = op
      if (work) return await sheep.exclusiveOp(req.raw, () => work(sheep, req, data))
      return await sheep.broadcastOp(req.raw, data)
    } catch (e) {
      if (counted) countEnd(sheep, op.kind === 'gateway', undefined)
      sheep.log.error(`${opcodeName(req.opcode)} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
      return { result: resultOfError(e) }
    }
  }

  private send(socket: net.Socket, req: SdRequest, r: OpReply): void {
    if (socket.destroyed) return
    let result = r.result
    let data = r.data
    if (data && data.length > maxResponsePayload(req)) {
      // never more payload than the client can take (§1.1 rule 4)
      this.sheep.log.error(`${opcodeName(req.opcode)}: reply of ${data.length} bytes exceeds the client's ${maxResponsePayload(req)}`)
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
    socket.cork()
    socket.write(header)
    if (data && data.length > 0) socket.write(data)
    socket.uncork()
  }
}
