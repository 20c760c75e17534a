// sheep's built-in NBD server (`sheep -N [HOST:]PORT`): QEMU dropped its sheepdog driver in 6.0,
// so modern qemu, qemu-img, qemu-io and the kernel's nbd client reach VDIs through NBD instead.
// Export name = VDI name; NAME:TAG or NAME:SNAPID exports that snapshot read-only (a working VDI
// literally named so wins, as in sheepfs). Fixed newstyle handshake; structured replies and the
// base:allocation meta context when the client asks for them (BLOCK_STATUS, so qemu-img map and
// convert skip holes).
//
// The data path is dog's: a VdiHandle (lib/vdi-io.ts) over a connection to this sheep itself (in
// process: in-process-conn.ts, no socket), so copy-on-write, snapshots and index updates are
// exactly what dog and sheepfs do. The export
// advertises a volatile write cache (sheep/nbd-write-back.ts): a plain WRITE is acknowledged once
// queued and written to every replica in the background; FLUSH waits for every write acknowledged
// before it, on any connection, and fails if one of them failed; a write with FUA is answered once
// every replica has it. Requests run concurrently (bounded) and are answered by cookie as they
// finish; a request waits for the earlier ones of the export whose range it overlaps when either
// of them writes. All connections to one export share one handle and one queue, so two
// connections never create the same object twice and a FLUSH on one covers the others
// (CAN_MULTI_CONN). TRIM and WRITE_ZEROES discard whole objects (index entry cleared, reference
// dropped, as `dog vdi delete` does) and write zeros over partial ones.
import net from 'node:net'
import type { SheepConnection } from '../lib/client.js'
import { writeBuffers } from '../lib/coalesced-write.js'
import { SdError, invariant } from '../lib/errors.js'
import { isSnapshot } from '../lib/inode.js'
import type { Logger } from '../lib/log.js'
import {
  type BlockStatusExtent,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_EXPORT_NAME_PADDING_BYTES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_KNOWN_CLIENT_FLAGS,
  NBD_META_CONTEXT_BASE_ALLOCATION,
  NBD_OPTION_HEADER_BYTES,
  NBD_OPTS_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REQUEST_HEADER_BYTES,
  NBD_REQUEST_MAGIC,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  type NbdRequest,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeRequest,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeOptionReply,
  encodeBlockStatusPayload,
  encodeErrorChunkPayload,
  encodeMetaContextReply,
  encodeSimpleReply,
  encodeStructuredReplyHeader,
} from '../lib/nbd-proto.js'
import {
  SD_NR_VDIS,
  SD_RES_EIO,
  SD_RES_FULL_VDI,
  SD_RES_INVALID_PARMS,
  SD_RES_KILLED,
  SD_RES_NO_SPACE,
  SD_RES_NO_TAG,
  SD_RES_NO_VDI,
  SD_RES_READONLY,
  SD_RES_SHUTDOWN,
} from '../lib/proto.js'
import { type VdiTarget, bitmapTest, readDelVdis, readVdis, syncNodes, vdiTargetsOf } from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { CoveringSync, ExportQueue, WriteBackBudget } from './nbd-write-back.js'

const MiB = 1024 * 1024

/** NBD clients served at once; further connections are closed on accept. */
export const NBD_MAX_CONNECTIONS = 64
/** Largest READ or WRITE payload (the maximum block size advertised in NBD_INFO_BLOCK_SIZE). */
export const NBD_MAX_REQUEST_BYTES = 32 * MiB
/** Requests of one connection processed at once; reading the socket waits beyond this. */
export const NBD_MAX_IN_FLIGHT_PER_CONNECTION = 16
/** Payload bytes (read or write) of one connection held at once; reading waits beyond this. */
export const NBD_MAX_IN_FLIGHT_BYTES_PER_CONNECTION = 64 * MiB
/** From accept to the transmission phase: a client that haggles longer is dropped. */
export const NBD_HANDSHAKE_TIMEOUT_MS = 10_000
/** Options one handshake may send (a client looping on options is dropped). */
export const NBD_MAX_OPTIONS_PER_HANDSHAKE = 128
/** Largest option payload read (the spec caps export names at 4096 bytes). */
export const NBD_MAX_OPTION_BYTES = 8192
/**
 * An oversized WRITE or option payload up to this size is read and dropped so the connection
 * can go on (with an error reply); a larger one closes the connection.
 */
export const NBD_MAX_SKIPPED_PAYLOAD_BYTES = 128 * MiB
/** Object requests one NBD request keeps in flight. */
export const NBD_IO_CONCURRENCY = 8
/** The block size advertised as preferred (a page: smaller writes mean read-modify-write in the guest). */
export const NBD_PREFERRED_BLOCK_BYTES = 4096
/** Export names NBD_OPT_LIST answers at most. */
export const NBD_MAX_LISTED_EXPORTS = 4096
/** Unread bytes of one connection kept before its socket is paused. */
const NBD_READ_HIGH_WATER_BYTES = 4 * MiB
/** Reply bytes queued on one socket before reading more requests waits for the client. */
const NBD_WRITE_HIGH_WATER_BYTES = 64 * MiB
/** WRITE_ZEROES writes zeros in pieces of at most this many bytes (one shared zero buffer). */
const NBD_ZERO_PIECE_BYTES = 4 * MiB
const ZEROS = Buffer.alloc(NBD_ZERO_PIECE_BYTES)
/** Objects one BLOCK_STATUS looks at; a longer range is answered for its start (the spec allows it). */
export const NBD_BLOCK_STATUS_MAX_OBJECTS = 4096
/** On shutdown, acknowledged writes still queued get this long to reach the replicas. */
export const NBD_SHUTDOWN_DRAIN_TIMEOUT_MS = 10_000
/** The id this server gives the base:allocation meta context. */
const BASE_ALLOCATION_CONTEXT_ID = 1

/**
 * Flags of every export: a volatile write cache (SEND_FLUSH, SEND_FUA), TRIM and WRITE_ZEROES,
 * and CAN_MULTI_CONN (every connection of an export shares its queue, so FLUSH covers them all).
 */
const NBD_EXPORT_FLAGS =
  NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_TRIM | NBD_FLAG_CAN_MULTI_CONN

// ---- reading a socket as a byte stream ---------------------------------------------------------

/**
 * Exact-length reads from a socket for a sequential protocol loop, with backpressure: the socket
 * is paused while more than NBD_READ_HIGH_WATER_BYTES wait unread and nobody needs them.
 */
class SocketReader {
  private chunks: Buffer[] = []
  private buffered = 0
  private wanted = 0
  private wake: (() => void) | undefined
  private ended = false

  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.buffered += chunk.length
      if (this.buffered > NBD_READ_HIGH_WATER_BYTES && this.buffered >= this.wanted) socket.pause()
      this.notify()
    })
    const end = () => {
      this.ended = true
      this.notify()
    }
    socket.on('end', end)
    socket.on('close', end)
  }

  /** Exactly `length` bytes, or undefined when the stream ends first. */
  async read(length: number): Promise<Buffer | undefined> {
    while (this.buffered < length) {
      if (this.ended) return undefined
      await this.waitForData(length)
    }
    this.wanted = 0
    return this.take(length)
  }

  /** Drops `length` bytes as they arrive; false when the stream ends first. */
  async skip(length: number): Promise<boolean> {
    let left = length
    while (left > 0) {
      if (this.buffered === 0) {
        if (this.ended) return false
        await this.waitForData(1)
        continue
      }
      const n = Math.min(left, this.buffered)
      this.take(n)
      left -= n
    }
    this.wanted = 0
    return true
  }

  private waitForData(wanted: number): Promise<void> {
    this.wanted = wanted
    if (this.socket.isPaused()) this.socket.resume()
    return new Promise<void>((resolve) => {
      this.wake = resolve
    })
  }

  private notify(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  private take(length: number): Buffer {
    if (length === 0) return Buffer.alloc(0)
    let out: Buffer
    const first = this.chunks[0]
    if (first.length >= length) {
      out = first.subarray(0, length)
      if (first.length === length) this.chunks.shift()
      else this.chunks[0] = first.subarray(length)
    } else {
      // one copy into a buffer of the final size, never repeated concatenation
      out = Buffer.allocUnsafe(length)
      let at = 0
      while (at < length) {
        const chunk = this.chunks[0]
        const n = Math.min(chunk.length, length - at)
        chunk.copy(out, at, 0, n)
        at += n
        if (n === chunk.length) this.chunks.shift()
        else this.chunks[0] = chunk.subarray(n)
      }
    }
    this.buffered -= length
    if (this.buffered <= NBD_READ_HIGH_WATER_BYTES && this.socket.isPaused() && !this.ended) this.socket.resume()
    return out
  }
}

// ---- exports: which VDI an export name means, and the handle its connections share -------------

function targetKey(t: VdiTarget): string {
  return `${t.name}\0${t.snapshot.tag ?? ''}\0${t.snapshot.snapid ?? 0}`
}

function isNotFound(error: unknown): boolean {
  return error instanceof SdError && (error.code === SD_RES_NO_VDI || error.code === SD_RES_NO_TAG)
}

/**
 * One exported VDI, and the VdiHandle and write-back queue all its NBD connections share. It stays
 * while a connection uses it or acknowledged writes are still queued. The handle is replaced
 * (looked up again, index cache dropped) when a connection opens the export and when a write
 * finds the VDI turned into a snapshot; writes in flight finish on the old handle first, and
 * writes arriving meanwhile wait, so no two handles ever create the same object.
 */
class ExportedVdi {
  users = 0
  private writers = 0
  private idleWaiters: Array<() => void> = []
  private replacing: Promise<void> | undefined
  /** SYNC_NODES for the export's FLUSHes: one for a burst of them. */
  private readonly syncs = new CoveringSync(() => syncNodes(this.conn))

  constructor(
    readonly key: string,
    readonly target: VdiTarget,
    private readonly conn: SheepConnection,
    public handle: VdiHandle,
    readonly queue: ExportQueue,
  ) {}

  get readOnly(): boolean {
    return this.handle.readOnly
  }

  /**
   * Makes the export's first `finished` writes (ExportQueue.drain: all finished, unstable, on
   * their replicas) durable on every replica, by SYNC_NODES (which makes durable every unstable
   * write a node took before it), shared with the other FLUSHes of the moment (CoveringSync).
   */
  sync(finished: number): Promise<void> {
    return this.syncs.run(finished)
  }

  /** The handle to write through; pair with releaseWriter(). */
  async acquireWriter(): Promise<VdiHandle> {
    while (this.replacing) await this.replacing.catch(() => undefined)
    this.writers++
    return this.handle
  }

  releaseWriter(): void {
    this.writers--
    if (this.writers === 0) for (const wake of this.idleWaiters.splice(0)) wake()
  }

  /** Switches to `fresh` (opened but unused) once the writes in flight are done. */
  replace(fresh: VdiHandle): Promise<void> {
    const run = (this.replacing ?? Promise.resolve())
      .catch(() => undefined)
      .then(async () => {
        if (this.writers > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
        this.handle = fresh
      })
    const tracked = run.finally(() => {
      if (this.replacing === tracked) this.replacing = undefined
    })
    this.replacing = tracked
    return tracked
  }

  /** Looks the VDI up again unless someone already replaced `stale` (e.g. after READONLY). */
  async reloadIfStill(stale: VdiHandle): Promise<void> {
    if (this.replacing) return this.replacing
    if (this.handle !== stale) return
    await this.replace(await VdiHandle.open(this.conn, this.target.name, this.target.snapshot, { concurrency: NBD_IO_CONCURRENCY }))
  }
}

// ---- the server ----------------------------------------------------------------------------------

export interface NbdServerOptions {
  /** Address to listen on (default: all). */
  host?: string
  port: number
  /** How the NBD server reaches this sheep (in process; closed with the server). */
  conn: SheepConnection
  log: Logger
}

export class NbdServer {
  private server: net.Server | undefined
  private readonly sessions = new Set<NbdSession>()
  private readonly exported = new Map<string, ExportedVdi>()
  /** Acknowledged but unwritten writes of every export, bounded together. */
  private readonly writeBack = new WriteBackBudget()
  readonly conn: SheepConnection
  readonly log: Logger

  constructor(private readonly opts: NbdServerOptions) {
    this.conn = opts.conn
    this.log = opts.log
  }

  async listen(): Promise<void> {
    const server = net.createServer((socket) => this.accept(socket))
    server.maxConnections = NBD_MAX_CONNECTIONS
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (e) => this.log.error(`NBD listener: ${e.message}`))
    this.server = server
  }

  /** The port listened on (useful when asked for port 0). */
  get port(): number {
    return (this.server?.address() as net.AddressInfo | null)?.port ?? this.opts.port
  }

  /** Stops accepting and drops every NBD connection (their unanswered requests are lost, as on a crash). */
  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
    for (const s of this.sessions) s.destroy()
    await this.drainOnShutdown()
    this.conn.close()
    await closed
  }

  /** Gives acknowledged writes still queued a bounded time to reach the replicas and be made durable there. */
  private async drainOnShutdown(): Promise<void> {
    const queues = [...this.exported.values()].map((v) => v.queue)
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, NBD_SHUTDOWN_DRAIN_TIMEOUT_MS)
    })
    const synced = async () => {
      await Promise.all(queues.map((q) => q.drain()))
      if (queues.length > 0) await syncNodes(this.conn).catch((e: unknown) => this.log.error(`NBD: syncing acknowledged writes at shutdown: ${messageOf(e)}`))
    }
    await Promise.race([synced(), timeout])
    clearTimeout(timer)
    for (const [key, v] of this.exported) {
      if (v.queue.pendingBytes > 0) this.log.error(`NBD export ${key.split('\0')[0]}: ${v.queue.pendingBytes} acknowledged bytes not written at shutdown`)
    }
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true)
    const session = new NbdSession(this, socket)
    this.sessions.add(session)
    void session.run().finally(() => this.sessions.delete(session))
  }

  /** Opens the export `name` for a connection (NO_VDI / NO_TAG as SdError when there is none). */
  async attach(name: string): Promise<ExportedVdi> {
    const { target, handle } = await this.resolve(name)
    const key = targetKey(target)
    let vdi = this.exported.get(key)
    if (vdi) {
      vdi.users++
      // a new connection sees what others wrote meanwhile: fresh lookup, fresh index
      await vdi.replace(handle)
      return vdi
    }
    const queue = new ExportQueue((offset, length, error) => {
      this.log.error(`NBD export ${target.name}: write-back of ${length} bytes at ${offset} failed: ${messageOf(error)}; the next FLUSH fails`)
    }, this.writeBack)
    vdi = new ExportedVdi(key, target, this.conn, handle, queue)
    vdi.users++
    this.exported.set(key, vdi)
    return vdi
  }

  detach(vdi: ExportedVdi): void {
    vdi.users--
    if (vdi.users > 0) return
    // its queued writes finish first: a new connection must not start a second queue beside them
    void vdi.queue.drain().then(() => {
      if (vdi.users === 0 && this.exported.get(vdi.key) === vdi) this.exported.delete(vdi.key)
    })
  }

  /** The VDI an export name means, with a freshly opened handle. */
  async resolve(name: string): Promise<{ target: VdiTarget; handle: VdiHandle }> {
    let notFound: unknown = new SdError(SD_RES_NO_VDI, `export ${JSON.stringify(name)}`)
    if (name === '') throw notFound
    for (const target of vdiTargetsOf(name)) {
      try {
        const handle = await VdiHandle.open(this.conn, target.name, target.snapshot, { concurrency: NBD_IO_CONCURRENCY })
        return { target, handle }
      } catch (error) {
        if (!isNotFound(error)) throw error
        notFound = error
      }
    }
    throw notFound
  }

  /** Names of the working VDIs (NBD_OPT_LIST), in vid order. */
  async exportNames(): Promise<string[]> {
    const inUse = await readVdis(this.conn)
    const deleted = await readDelVdis(this.conn)
    const names: string[] = []
    for (let byteAt = 0; byteAt < SD_NR_VDIS / 8 && names.length < NBD_MAX_LISTED_EXPORTS; byteAt++) {
      if (inUse[byteAt] === 0) continue
      for (let bit = 0; bit < 8 && names.length < NBD_MAX_LISTED_EXPORTS; bit++) {
        const vid = byteAt * 8 + bit
        if (!bitmapTest(inUse, vid) || bitmapTest(deleted, vid)) continue
        try {
          const { header } = await VdiHandle.openByVid(this.conn, vid)
          if (header.name !== '' && !isSnapshot(header)) names.push(header.name)
        } catch (error) {
          this.log.warn(`NBD list: inode of vid ${vid.toString(16)}: ${error instanceof Error ? error.message : String(error)}`)
        }
      }
    }
    return names
  }
}

// ---- one client connection -----------------------------------------------------------------------

/** What an option handler decided: go on haggling, close, or start transmission on an export. */
type OptionOutcome = { next: 'haggle' } | { next: 'close' } | { next: 'transmit'; vdi: ExportedVdi }

type OptionHandler = (session: NbdSession, option: number, data: Buffer) => Promise<OptionOutcome>

const HAGGLE: OptionOutcome = { next: 'haggle' }
const CLOSE: OptionOutcome = { next: 'close' }

/** Option → handler; options not listed (STARTTLS, EXTENDED_HEADERS …) get ERR_UNSUP. */
const OPTION_HANDLERS: ReadonlyMap<number, OptionHandler> = new Map<number, OptionHandler>([
  [NBD_OPT_EXPORT_NAME, (s, _option, data) => s.optExportName(data)],
  [NBD_OPT_INFO, (s, option, data) => s.optInfoOrGo(option, data)],
  [NBD_OPT_GO, (s, option, data) => s.optInfoOrGo(option, data)],
  [NBD_OPT_LIST, (s, option, data) => s.optList(option, data)],
  [NBD_OPT_ABORT, (s, option) => s.optAbort(option)],
  [NBD_OPT_STRUCTURED_REPLY, (s, option, data) => s.optStructuredReply(option, data)],
  [NBD_OPT_LIST_META_CONTEXT, (s, option, data) => s.optMetaContext(option, data)],
  [NBD_OPT_SET_META_CONTEXT, (s, option, data) => s.optMetaContext(option, data)],
])

/** One request of a connection being processed (the connection waits for them when it ends). */
interface ActiveRequest {
  done: Promise<void>
}

/** How a command's success is answered: no payload, the data read, or block status extents. */
type Answer = 'none' | 'data' | 'blockStatus'

interface CommandSpec {
  /** Changes data: refused on read-only exports, ordered after overlapping requests. */
  writes: boolean
  /** The error for a range past the export's end (ENOSPC for writes, as the spec says). */
  pastEndError: number
  /** Largest length taken (beyond: EINVAL). */
  maxLengthBytes: number
  /** Runs after every earlier write of the export, whatever its range (FLUSH). */
  barrier?: boolean
  /** May be acknowledged once queued, before it runs (the write-back cache), unless the request says otherwise. */
  deferrable?: (req: NbdRequest) => boolean
  /** How success is answered (default: no payload). */
  answer?: Answer
  /** `finished`, for a barrier: the export's first that many writes are finished (ExportQueue.drain). */
  run(session: NbdSession, vdi: ExportedVdi, req: NbdRequest, data: Buffer | undefined, finished?: number): Promise<Buffer | undefined>
}

const U32_MAX = 0xffffffff

/** Command → handler; other commands (CACHE, unknown) get EINVAL. */
const COMMANDS: ReadonlyMap<number, CommandSpec> = new Map<number, CommandSpec>([
  [
    NBD_CMD_READ,
    {
      writes: false,
      pastEndError: NBD_EINVAL,
      maxLengthBytes: NBD_MAX_REQUEST_BYTES,
      answer: 'data',
      run: (_s, vdi, req) => vdi.handle.read(Number(req.offset), req.length),
    },
  ],
  [
    NBD_CMD_WRITE,
    {
      writes: true,
      pastEndError: NBD_ENOSPC,
      maxLengthBytes: NBD_MAX_REQUEST_BYTES,
      // FUA: durable before the reply, i.e. written through to every replica. Without it the
      // write is acknowledged at once and written in the background, to the replicas' page
      // cache only (unstable): FLUSH makes it durable.
      deferrable: (req) => (req.flags & NBD_CMD_FLAG_FUA) === 0,
      run: async (_s, vdi, req, data) => {
        const unstable = (req.flags & NBD_CMD_FLAG_FUA) === 0
        await withWriter(vdi, (handle) => handle.write(Number(req.offset), data!, { unstable }))
        return undefined
      },
    },
  ],
  [
    NBD_CMD_WRITE_ZEROES,
    {
      writes: true,
      pastEndError: NBD_ENOSPC,
      maxLengthBytes: U32_MAX,
      run: async (_s, vdi, req) => {
        const holesAllowed = (req.flags & NBD_CMD_FLAG_NO_HOLE) === 0
        await zeroRange(vdi, Number(req.offset), req.length, { discardWhole: holesAllowed, skipUnallocated: holesAllowed })
        return undefined
      },
    },
  ],
  [
    NBD_CMD_TRIM,
    {
      writes: true,
      pastEndError: NBD_EINVAL,
      maxLengthBytes: U32_MAX,
      run: async (_s, vdi, req) => {
        await zeroRange(vdi, Number(req.offset), req.length, { discardWhole: true, skipUnallocated: true })
        return undefined
      },
    },
  ],
  [
    NBD_CMD_FLUSH,
    {
      // runs once every write acknowledged before it has reached every replica, then makes
      // them durable there (SYNC_NODES)
      writes: false,
      pastEndError: NBD_EINVAL,
      maxLengthBytes: U32_MAX,
      barrier: true,
      run: async (session, vdi, _req, _data, finished) => {
        session.takeWriteBackFailures(vdi)
        invariant(finished !== undefined, 'FLUSH runs as a barrier')
        await vdi.sync(finished)
        return undefined
      },
    },
  ],
  [
    NBD_CMD_BLOCK_STATUS,
    {
      writes: false,
      pastEndError: NBD_EINVAL,
      maxLengthBytes: U32_MAX,
      answer: 'blockStatus',
      run: (session, vdi, req) => blockStatus(session, vdi, req),
    },
  ],
])

/** Runs `write` on the shared handle; a VDI snapshotted meanwhile (READONLY) is reloaded and the write retried once. */
async function withWriter(vdi: ExportedVdi, write: (handle: VdiHandle) => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const handle = await vdi.acquireWriter()
    try {
      await write(handle)
      return
    } catch (error) {
      const snapshotted = error instanceof SdError && error.code === SD_RES_READONLY && !handle.readOnly
      if (!snapshotted || attempt > 1) throw error
    } finally {
      vdi.releaseWriter()
    }
    await vdi.reloadIfStill(handle)
  }
}

interface ZeroRangeOptions {
  /** Discard objects the range covers whole (TRIM, and WRITE_ZEROES without NO_HOLE). */
  discardWhole: boolean
  /** Leave objects never written alone: they read as zeros already. */
  skipUnallocated: boolean
}

/**
 * Zeros a range object by object: an object covered whole is discarded when allowed and possible
 * (index entry cleared, reference dropped; it reads as zeros), an unallocated one is skipped when
 * allowed, the rest is written with zeros piece by piece from one shared zero buffer.
 */
async function zeroRange(vdi: ExportedVdi, offset: number, length: number, opts: ZeroRangeOptions): Promise<void> {
  const end = offset + length
  for (let pos = offset; pos < end; ) {
    const handle = vdi.handle
    const idx = Math.floor(pos / handle.objectSize)
    const objectEnd = Math.min(end, (idx + 1) * handle.objectSize)
    // the VDI's last object may be cut short by its size: reaching the VDI's end covers it whole
    const whole = pos === idx * handle.objectSize && objectEnd >= Math.min((idx + 1) * handle.objectSize, handle.size)
    if (opts.discardWhole && whole && handle.canDiscard) {
      await withWriter(vdi, (h) => h.discard(idx))
      pos = objectEnd
      continue
    }
    if (opts.skipUnallocated && (await handle.ownerOf(idx)) === 0) {
      pos = objectEnd
      continue
    }
    const n = Math.min(objectEnd - pos, NBD_ZERO_PIECE_BYTES)
    await withWriter(vdi, (h) => h.write(pos, ZEROS.subarray(0, n)))
    pos += n
  }
}

/**
 * BLOCK_STATUS for base:allocation: object by object, an unallocated object is a hole reading as
 * zeros, an allocated one is data; neighbours alike are merged. At most NBD_BLOCK_STATUS_MAX_OBJECTS
 * objects are looked at (a shorter answer is allowed), REQ_ONE gets the first extent only.
 */
async function blockStatus(session: NbdSession, vdi: ExportedVdi, req: NbdRequest): Promise<Buffer> {
  if (session.metaContextId === undefined || req.length === 0) throw new SdError(SD_RES_INVALID_PARMS, 'BLOCK_STATUS without base:allocation, or of no bytes')
  const handle = vdi.handle
  const objectSize = handle.objectSize
  const start = Number(req.offset)
  const end = start + req.length
  const firstIdx = Math.floor(start / objectSize)
  const lastIdx = Math.min(Math.floor((end - 1) / objectSize), firstIdx + NBD_BLOCK_STATUS_MAX_OBJECTS - 1)
  const owners = await handle.ownersOf(firstIdx, lastIdx)
  const extents: BlockStatusExtent[] = []
  for (let i = 0; i < owners.length; i++) {
    const from = Math.max(start, (firstIdx + i) * objectSize)
    const to = Math.min(end, (firstIdx + i + 1) * objectSize)
    const flags = owners[i] === 0 ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0
    const last = extents[extents.length - 1]
    if (last && last.flags === flags) last.length += to - from
    else extents.push({ length: to - from, flags })
  }
  const answered = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? extents.slice(0, 1) : extents
  return encodeBlockStatusPayload(session.metaContextId, answered)
}

/** A failed request's NBD error number. */
function errnoOf(error: unknown): number {
  if (!(error instanceof SdError)) return NBD_EIO
  switch (error.code) {
    case SD_RES_READONLY:
      return NBD_EPERM
    case SD_RES_INVALID_PARMS:
      return NBD_EINVAL
    case SD_RES_NO_SPACE:
    case SD_RES_FULL_VDI:
      return NBD_ENOSPC
    case SD_RES_SHUTDOWN:
    case SD_RES_KILLED:
      return NBD_ESHUTDOWN
    default:
      return NBD_EIO
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

class NbdSession {
  private readonly reader: SocketReader
  private readonly peer: string
  private noZeroes = false
  /** NBD_OPT_STRUCTURED_REPLY was agreed: READ and BLOCK_STATUS are answered in chunks. */
  private structured = false
  /** The base:allocation context's id once NBD_OPT_SET_META_CONTEXT chose it, for export `metaExport`. */
  metaContextId: number | undefined
  private metaExport = ''
  /** The export queue's failure count this connection's last FLUSH reported. */
  private seenFailures = 0
  private readonly active = new Set<ActiveRequest>()
  private inFlight = 0
  private inFlightBytes = 0
  private roomWaiters: Array<() => void> = []
  private handshakeTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly server: NbdServer,
    private readonly socket: net.Socket,
  ) {
    this.reader = new SocketReader(socket)
    this.peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
    socket.on('error', () => socket.destroy())
    socket.on('drain', () => this.wakeRoomWaiters())
    socket.on('close', () => this.wakeRoomWaiters())
  }

  destroy(): void {
    this.socket.destroy()
  }

  async run(): Promise<void> {
    this.handshakeTimer = setTimeout(() => {
      this.server.log.warn(`NBD ${this.peer}: no export chosen within ${NBD_HANDSHAKE_TIMEOUT_MS} ms; closing`)
      this.socket.destroy()
    }, NBD_HANDSHAKE_TIMEOUT_MS)
    let vdi: ExportedVdi | undefined
    try {
      vdi = await this.handshake()
      clearTimeout(this.handshakeTimer)
      if (vdi) await this.transmit(vdi)
    } catch (error) {
      // a bug on one connection must not take the daemon down
      this.server.log.error(`NBD ${this.peer}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    } finally {
      clearTimeout(this.handshakeTimer)
      await Promise.all([...this.active].map((a) => a.done))
      if (vdi) this.server.detach(vdi)
      if (!this.socket.destroyed) this.socket.end()
    }
  }

  // ---- handshake (fixed newstyle) ----------------------------------------------------------------

  private async handshake(): Promise<ExportedVdi | undefined> {
    this.send(encodeGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
    const clientFlagBytes = await this.reader.read(4)
    if (!clientFlagBytes) return undefined
    const clientFlags = clientFlagBytes.readUInt32BE(0)
    if ((clientFlags & ~NBD_KNOWN_CLIENT_FLAGS) !== 0) {
      // the spec: a client flag the server does not know ends the handshake
      this.server.log.warn(`NBD ${this.peer}: unknown client flags 0x${clientFlags.toString(16)}; closing`)
      return undefined
    }
    this.noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0
    for (let count = 0; ; count++) {
      const head = await this.reader.read(NBD_OPTION_HEADER_BYTES)
      if (!head) return undefined
      const { magic, option, length } = decodeOptionHeader(head)
      if (magic !== NBD_OPTS_MAGIC) {
        this.server.log.warn(`NBD ${this.peer}: bad option magic 0x${magic.toString(16)}; closing`)
        return undefined
      }
      if (length > NBD_MAX_OPTION_BYTES) {
        // EXPORT_NAME has no error reply; anything else can be skipped and refused
        if (option === NBD_OPT_EXPORT_NAME || length > NBD_MAX_SKIPPED_PAYLOAD_BYTES || !(await this.reader.skip(length))) return undefined
        this.sendOptionReply(option, NBD_REP_ERR_TOO_BIG, `option payload of ${length} bytes exceeds ${NBD_MAX_OPTION_BYTES}`)
        continue
      }
      const data = await this.reader.read(length)
      if (!data) return undefined
      if (count >= NBD_MAX_OPTIONS_PER_HANDSHAKE) {
        this.sendOptionReply(option, NBD_REP_ERR_POLICY, 'too many options')
        return undefined
      }
      const handler = OPTION_HANDLERS.get(option)
      const outcome = handler ? await handler(this, option, data) : this.unsupported(option)
      if (outcome.next === 'close') return undefined
      if (outcome.next === 'transmit') return outcome.vdi
    }
  }

  private unsupported(option: number): OptionOutcome {
    this.sendOptionReply(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`)
    return HAGGLE
  }

  async optExportName(data: Buffer): Promise<OptionOutcome> {
    const name = data.toString('utf8')
    let vdi: ExportedVdi
    try {
      vdi = await this.server.attach(name)
    } catch (error) {
      // NBD_OPT_EXPORT_NAME has no way to say no but closing
      this.server.log.warn(`NBD ${this.peer}: export ${JSON.stringify(name)}: ${messageOf(error)}; closing`)
      return CLOSE
    }
    const answer = Buffer.alloc(10 + (this.noZeroes ? 0 : NBD_EXPORT_NAME_PADDING_BYTES))
    answer.writeBigUInt64BE(BigInt(vdi.handle.size), 0)
    answer.writeUInt16BE(this.transmissionFlags(vdi.handle), 8)
    if (!this.send(answer)) {
      this.server.detach(vdi)
      return CLOSE
    }
    return { next: 'transmit', vdi }
  }

  async optInfoOrGo(option: number, data: Buffer): Promise<OptionOutcome> {
    const request = decodeInfoRequest(data)
    if (!request) {
      this.sendOptionReply(option, NBD_REP_ERR_INVALID, 'malformed request')
      return HAGGLE
    }
    let handle: VdiHandle
    let vdi: ExportedVdi | undefined
    try {
      if (option === NBD_OPT_GO) {
        vdi = await this.server.attach(request.name)
        handle = vdi.handle
      } else {
        handle = (await this.server.resolve(request.name)).handle
      }
    } catch (error) {
      const type = isNotFound(error) ? NBD_REP_ERR_UNKNOWN : NBD_REP_ERR_SHUTDOWN
      this.sendOptionReply(option, type, `export ${JSON.stringify(request.name)}: ${messageOf(error)}`)
      return HAGGLE
    }
    this.sendOptionReply(option, NBD_REP_INFO, encodeInfoExport(BigInt(handle.size), this.transmissionFlags(handle)))
    // sent whether asked or not: minimum 1 means no alignment is required
    this.sendOptionReply(option, NBD_REP_INFO, encodeInfoBlockSize(1, NBD_PREFERRED_BLOCK_BYTES, NBD_MAX_REQUEST_BYTES))
    const sent = this.sendOptionReply(option, NBD_REP_ACK)
    if (!vdi) return HAGGLE
    // a meta context chosen for another export does not carry over
    if (this.metaExport !== request.name) this.metaContextId = undefined
    if (!sent) {
      this.server.detach(vdi)
      return CLOSE
    }
    return { next: 'transmit', vdi }
  }

  async optList(option: number, data: Buffer): Promise<OptionOutcome> {
    if (data.length !== 0) {
      this.sendOptionReply(option, NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data')
      return HAGGLE
    }
    let names: string[]
    try {
      names = await this.server.exportNames()
    } catch (error) {
      this.sendOptionReply(option, NBD_REP_ERR_SHUTDOWN, `cannot list VDIs: ${messageOf(error)}`)
      return HAGGLE
    }
    for (const name of names) {
      const bytes = Buffer.from(name, 'utf8')
      const entry = Buffer.alloc(4 + bytes.length)
      entry.writeUInt32BE(bytes.length, 0)
      bytes.copy(entry, 4)
      this.sendOptionReply(option, NBD_REP_SERVER, entry)
    }
    this.sendOptionReply(option, NBD_REP_ACK)
    return HAGGLE
  }

  async optStructuredReply(option: number, data: Buffer): Promise<OptionOutcome> {
    if (data.length !== 0) {
      this.sendOptionReply(option, NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data')
      return HAGGLE
    }
    this.structured = true
    this.sendOptionReply(option, NBD_REP_ACK)
    return HAGGLE
  }

  /** LIST_META_CONTEXT and SET_META_CONTEXT: base:allocation is the one context there is. */
  async optMetaContext(option: number, data: Buffer): Promise<OptionOutcome> {
    if (!this.structured) {
      this.sendOptionReply(option, NBD_REP_ERR_INVALID, 'meta contexts need structured replies first')
      return HAGGLE
    }
    const request = decodeMetaContextRequest(data)
    if (!request) {
      this.sendOptionReply(option, NBD_REP_ERR_INVALID, 'malformed request')
      return HAGGLE
    }
    const listing = option === NBD_OPT_LIST_META_CONTEXT
    // LIST with no query lists everything; "base:" asks for every context of the namespace
    const wanted =
      (listing && request.queries.length === 0) || request.queries.some((q) => q === NBD_META_CONTEXT_BASE_ALLOCATION || (listing && q === 'base:'))
    if (!listing) {
      this.metaContextId = wanted ? BASE_ALLOCATION_CONTEXT_ID : undefined
      this.metaExport = request.exportName
    }
    if (wanted) this.sendOptionReply(option, NBD_REP_META_CONTEXT, encodeMetaContextReply(BASE_ALLOCATION_CONTEXT_ID, NBD_META_CONTEXT_BASE_ALLOCATION))
    this.sendOptionReply(option, NBD_REP_ACK)
    return HAGGLE
  }

  /** FLUSH's verdict on the writes before it: an error once for every background write failure since the last FLUSH. */
  takeWriteBackFailures(vdi: ExportedVdi): void {
    const failures = vdi.queue.failures
    if (failures === this.seenFailures) return
    const lost = failures - this.seenFailures
    this.seenFailures = failures
    throw new SdError(SD_RES_EIO, `${lost} acknowledged write(s) failed to reach the replicas (see the log)`)
  }

  async optAbort(option: number): Promise<OptionOutcome> {
    this.sendOptionReply(option, NBD_REP_ACK)
    return CLOSE
  }

  private transmissionFlags(handle: VdiHandle): number {
    return NBD_EXPORT_FLAGS | (handle.readOnly ? NBD_FLAG_READ_ONLY : 0)
  }

  // ---- transmission ----------------------------------------------------------------------------

  private async transmit(vdi: ExportedVdi): Promise<void> {
    // failures of writes queued before this connection came are not its to report
    this.seenFailures = vdi.queue.failures
    for (;;) {
      await this.waitForRoom()
      await vdi.queue.waitForRoom()
      if (this.socket.destroyed) return
      const head = await this.reader.read(NBD_REQUEST_HEADER_BYTES)
      if (!head) return
      const req = decodeRequest(head)
      if (req.magic !== NBD_REQUEST_MAGIC) {
        // nothing after a bad header can be trusted to be a header
        this.server.log.warn(`NBD ${this.peer}: bad request magic 0x${req.magic.toString(16)}; closing`)
        this.socket.destroy()
        return
      }
      if (req.type === NBD_CMD_DISC) return
      let data: Buffer | undefined
      if (req.type === NBD_CMD_WRITE) {
        if (req.length > NBD_MAX_REQUEST_BYTES) {
          if (req.length > NBD_MAX_SKIPPED_PAYLOAD_BYTES || !(await this.reader.skip(req.length))) {
            this.server.log.warn(`NBD ${this.peer}: write of ${req.length} bytes; closing`)
            this.socket.destroy()
            return
          }
          this.replyError(req, NBD_EINVAL, `write of ${req.length} bytes exceeds ${NBD_MAX_REQUEST_BYTES}`)
          continue
        }
        data = await this.reader.read(req.length)
        if (!data) return
      }
      this.dispatch(vdi, req, data)
    }
  }

  /** Starts one request; it waits for earlier overlapping ones of the export as ordering requires. */
  private dispatch(vdi: ExportedVdi, req: NbdRequest, data: Buffer | undefined): void {
    const spec = COMMANDS.get(req.type)
    const early = this.precheck(vdi, spec, req)
    if (early !== 0) {
      this.replyError(req, early, `command ${req.type} refused`)
      return
    }
    const command = spec!
    if (command.deferrable?.(req)) {
      // write-back: acknowledged now, written in the background; FLUSH reports a failure. A small
      // payload cut from a larger socket chunk is copied, so the queue holds what it counts.
      const held = data && data.buffer.byteLength > 2 * data.length ? Buffer.from(data) : data
      vdi.queue.defer(req.offset, req.length, async () => {
        await command.run(this, vdi, req, held)
      })
      this.replySuccess(req, command, undefined)
      return
    }
    const bytes = req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE ? req.length : 0
    this.inFlight++
    this.inFlightBytes += bytes
    const task = () => command.run(this, vdi, req, data)
    const ordered = command.barrier
      ? vdi.queue.drain().then((finished) => command.run(this, vdi, req, data, finished))
      : vdi.queue.run(req.offset, req.offset + BigInt(req.length), command.writes, task)
    const entry: ActiveRequest = { done: Promise.resolve() }
    entry.done = ordered
      .then(
        (out) => this.replySuccess(req, command, out),
        (error: unknown) => {
          this.server.log.warn(`NBD ${this.peer}: command ${req.type} at ${req.offset} (${req.length} bytes): ${messageOf(error)}`)
          this.replyError(req, errnoOf(error), messageOf(error))
        },
      )
      .finally(() => {
        this.active.delete(entry)
        this.inFlight--
        this.inFlightBytes -= bytes
        this.wakeRoomWaiters()
      })
    this.active.add(entry)
  }

  /** The error a request gets without running (0: run it). */
  private precheck(vdi: ExportedVdi, spec: CommandSpec | undefined, req: NbdRequest): number {
    if (!spec) return NBD_EINVAL
    if (req.length > spec.maxLengthBytes) return NBD_EINVAL
    if (spec.writes && vdi.readOnly) return NBD_EPERM
    if (spec.barrier) return 0
    if (req.offset + BigInt(req.length) > BigInt(vdi.handle.size)) return spec.pastEndError
    return 0
  }

  private async waitForRoom(): Promise<void> {
    while (
      !this.socket.destroyed &&
      (this.inFlight >= NBD_MAX_IN_FLIGHT_PER_CONNECTION ||
        (this.inFlight > 0 && this.inFlightBytes >= NBD_MAX_IN_FLIGHT_BYTES_PER_CONNECTION) ||
        this.socket.writableLength > NBD_WRITE_HIGH_WATER_BYTES)
    ) {
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve))
    }
  }

  private wakeRoomWaiters(): void {
    for (const wake of this.roomWaiters.splice(0)) wake()
  }

  /** A request's success: a simple reply, or the chunks structured replies call for. */
  private replySuccess(req: NbdRequest, command: CommandSpec, out: Buffer | undefined): void {
    const answer = command.answer ?? 'none'
    if (answer === 'none' || !this.structured) {
      this.sendReply([encodeSimpleReply(0, req.cookie), ...(answer === 'data' && out && out.length > 0 ? [out] : [])])
      return
    }
    if (answer === 'blockStatus') {
      this.sendReply([encodeStructuredReplyHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, req.cookie, out!.length), out!])
      return
    }
    if (!out || out.length === 0) {
      this.sendReply([encodeStructuredReplyHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, req.cookie, 0)])
      return
    }
    const offset = Buffer.alloc(8)
    offset.writeBigUInt64BE(req.offset, 0)
    this.sendReply([encodeStructuredReplyHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, req.cookie, 8 + out.length), offset, out])
  }

  /** A request's failure: a simple error reply, or an error chunk where a structured reply is due. */
  private replyError(req: NbdRequest, error: number, message: string): void {
    const answer = COMMANDS.get(req.type)?.answer ?? 'none'
    if (answer === 'none' || !this.structured) {
      this.sendReply([encodeSimpleReply(error, req.cookie)])
      return
    }
    const payload = encodeErrorChunkPayload(error, message)
    this.sendReply([encodeStructuredReplyHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, req.cookie, payload.length), payload])
  }

  /**
   * Sends one reply's buffers together, with the other replies of this event-loop turn: the
   * write-back cache answers a client's burst of writes in one turn, in one writev.
   */
  private sendReply(parts: Buffer[]): void {
    if (this.socket.destroyed || !this.socket.writable) return
    writeBuffers(this.socket, parts)
  }

  private sendOptionReply(option: number, type: number, data?: Buffer | string): boolean {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    return this.send(encodeOptionReply(option, type, payload))
  }

  /** False when the socket is gone. */
  private send(bytes: Buffer): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false
    this.socket.write(bytes)
    return true
  }
}
