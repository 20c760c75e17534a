// One mounted VDI (a file under /volume): a pool of connections to the sheep, and a VdiHandle
// (lib/vdi-io.ts) that reads and writes it exactly as dog does — split at the VDI's object
// size, zeros for unallocated objects, create / copy-on-write / overwrite plus the index update.
// The handle is reloaded on every open (the name is looked up again and the index cache
// dropped), so what dog wrote in the meantime, a snapshot taken, or a resize is seen.
// Sequential readers are read ahead (read-ahead.ts); writes go behind (write-behind.ts) unless
// the file was opened O_SYNC/O_DSYNC or config/write_behind is 0: fsync, close, a read and a
// reload first send everything buffered and wait for it.
import { PooledConnection, type Reply, type RequestOptions, type SheepAddress } from '../lib/client.js'
import { REQ_OBJ } from '../lib/codec.js'
import { SdError } from '../lib/errors.js'
import type { Layout } from '../lib/layout.js'
import { vidToVdiOid } from '../lib/oid.js'
import {
  SD_FLAG_CMD_CACHE,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_FLUSH_DEL_CACHE,
  SD_OP_READ_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_NO_VDI,
  SD_RES_SUCCESS,
  opcodeName,
} from '../lib/proto.js'
import { type VdiTarget, flushVdi, vdiTargetsOf } from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { FsError } from './errno.js'
import { ReadAhead } from './read-ahead.js'
import { WriteBehind } from './write-behind.js'

/** Sockets to the sheep per mounted volume (the original's pool size: a VM's usual queue depth). */
export const VOLUME_CONNECTIONS = 31
/** Object requests one read or write of a volume keeps in flight. */
export const VOLUME_IO_CONCURRENCY = 8
/** Times an I/O call waits for a reload that another open started before giving up with EIO. */
const VOLUME_RELOAD_WAITS_MAX = 8

/** Opcodes that carry CMD_CACHE when the object cache is on (the original's volume requests). */
const OBJECT_CACHE_OPCODES: ReadonlySet<number> = new Set([SD_OP_READ_OBJ, SD_OP_WRITE_OBJ, SD_OP_CREATE_AND_WRITE_OBJ])

/** Settings that change while mounted (config/object_cache, config/write_behind). */
export interface VolumeSettings {
  objectCache: boolean
  /** Answer writes once buffered (write-behind.ts); off: every write is on every replica first. */
  writeBehind: boolean
}

/**
 * The volume's pool of sockets to one sheep, adding CMD_CACHE to volume I/O while the object
 * cache is on. VdiHandle takes it as its connection.
 */
class VolumeConnections extends PooledConnection {
  constructor(
    address: SheepAddress,
    private readonly settings: VolumeSettings,
  ) {
    super(address, VOLUME_CONNECTIONS)
  }

  override request<L extends Layout>(opts: RequestOptions<L>): Promise<Reply> {
    const cache = this.settings.objectCache && OBJECT_CACHE_OPCODES.has(opts.opcode) ? SD_FLAG_CMD_CACHE : 0
    return super.request(cache === 0 ? opts : Object.assign({}, opts, { flags: (opts.flags ?? 0) | cache }))
  }
}

/** What a volume counts for sheepfs's metrics (plain numbers: read when scraped, never reset). */
export interface VolumeCounters {
  /** Reads answered at once from what read-ahead had fetched. */
  readAheadHits: number
  /** Reads that waited for the sheep (a read-ahead window still on its way, or not fetched ahead). */
  readsWaited: number
  readBytes: number
  /** Bytes of writes taken by write-behind (answered before the sheep has them). */
  writeBehindBytes: number
  /** Bytes of writes answered only once every replica had them. */
  writeThroughBytes: number
}

export class Volume {
  readonly counters: VolumeCounters = { readAheadHits: 0, readsWaited: 0, readBytes: 0, writeBehindBytes: 0, writeThroughBytes: 0 }
  /** Writes being sent straight through (O_SYNC opens, write-behind off). */
  private readonly writesInFlight = new Set<Promise<void>>()
  private readonly behind = new WriteBehind(
    (offset, data) => this.handle.write(offset, data),
    () => this.handle.objectSize,
  )
  private readonly ahead = new ReadAhead((offset, length, into) => this.handle.read(offset, length, { into }))
  private reloading: Promise<VdiHandle> | undefined
  /** The address changed: the next I/O reloads through the new connections. */
  private stale = false
  /** Connections replaced by an address switch, closed once the reload is done. */
  private retired: VolumeConnections[] = []
  /** Files open on this volume (it is closed when unmounted and the last one is released). */
  openFiles = 0
  /** Removed from /volume; still serves the files that are open. */
  detached = false
  mtimeMs = Date.now()

  private constructor(
    /** The file name under /volume: what was written to vdi/mount. */
    readonly entryName: string,
    private readonly target: VdiTarget,
    private conns: VolumeConnections,
    private handle: VdiHandle,
    private readonly settings: VolumeSettings,
  ) {}

  /** Looks the VDI up and loads its inode header (SdError NO_VDI / NO_TAG when there is none). */
  static async attach(entryName: string, address: SheepAddress, settings: VolumeSettings): Promise<Volume> {
    const conns = new VolumeConnections(address, settings)
    try {
      let lastError: unknown
      for (const target of vdiTargetsOf(entryName)) {
        try {
          const handle = await VdiHandle.open(conns, target.name, target.snapshot, { concurrency: VOLUME_IO_CONCURRENCY })
          return new Volume(entryName, target, conns, handle, settings)
        } catch (error) {
          if (!(error instanceof SdError) || error.code !== SD_RES_NO_VDI) throw error
          lastError = error
        }
      }
      throw lastError
    } catch (error) {
      conns.close()
      throw error
    }
  }

  get size(): number {
    return this.handle.size
  }

  get readOnly(): boolean {
    return this.handle.readOnly
  }

  get vid(): number {
    return this.handle.vid
  }

  /**
   * Looks the VDI up again and starts from a fresh inode header and index (every open does
   * this). Writes in flight finish first; I/O arriving meanwhile waits for the new handle.
   */
  reload(): Promise<VdiHandle> {
    this.reloading ??= this.loadHandle().finally(() => {
      this.reloading = undefined
    })
    return this.reloading
  }

  /** Sends later requests to another sheep. */
  useAddress(address: SheepAddress): void {
    this.retired.push(this.conns)
    this.conns = new VolumeConnections(address, this.settings)
    this.stale = true
  }

  /** read() at once, when read-ahead holds the bytes already and nothing stands in the way; else undefined. */
  readNow(offset: number, length: number): Buffer | undefined {
    if (this.reloading !== undefined || this.stale || this.behind.pending) return undefined
    const data = this.ahead.readNow(offset, length, this.handle.size)
    if (data !== undefined) {
      this.counters.readAheadHits++
      this.counters.readBytes += data.length
    }
    return data
  }

  /** Reads a range (within the volume); what was written through sheepfs is sent first. */
  async read(offset: number, length: number): Promise<Buffer> {
    let handle = await this.current()
    if (this.behind.pending) {
      await this.behind.flush(false)
      handle = await this.current()
    }
    const data = await this.ahead.read(offset, length, handle.size)
    this.counters.readsWaited++
    this.counters.readBytes += data.length
    return data
  }

  /**
   * Writes a range (within the volume): buffered by write-behind, or — `through`, or with
   * write-behind off — answered once every replica has it. `data` must not change afterwards.
   */
  async write(offset: number, data: Buffer, through = false): Promise<void> {
    this.ahead.invalidate()
    for (let wait = 0; wait < VOLUME_RELOAD_WAITS_MAX; wait++) {
      const handle = await this.current()
      // a reload may have started while this call waited: it must see this write in flight
      if (this.reloading !== undefined || this.stale || handle !== this.handle) continue
      if (handle.readOnly) throw new FsError('EROFS', `volume ${this.entryName} is a snapshot (read-only)`)
      if (this.settings.writeBehind && !through) {
        await this.behind.write(offset, data)
        this.counters.writeBehindBytes += data.length
        this.mtimeMs = Date.now()
        return
      }
      if (this.behind.pending) await this.behind.flush(true)
      const run = handle.write(offset, data)
      this.writesInFlight.add(run)
      try {
        await run
      } finally {
        this.writesInFlight.delete(run)
      }
      this.counters.writeThroughBytes += data.length
      this.mtimeMs = Date.now()
      return
    }
    throw new FsError('EIO', `volume ${this.entryName}: the VDI kept being reloaded during a write`)
  }

  /**
   * fsync: every write taken before has been sent and has completed (a sheep acknowledges a
   * write only once every replica has it, so completed writes are durable), and a failure of a
   * write sent in the background is reported; with the object cache on, FLUSH_VDI too.
   */
  async sync(): Promise<void> {
    await this.drainWrites()
    if (this.settings.objectCache) await flushVdi(this.conns, vidToVdiOid(this.handle.vid))
  }

  /** Sends what is buffered and waits for every write in flight (close of a file, unmount). */
  async settle(): Promise<void> {
    await this.drainWrites()
  }

  /** vdi/unmount: with the object cache on, FLUSH_DEL_CACHE first (the sheep drops its cache). */
  async flushBeforeUnmount(): Promise<void> {
    await this.drainWrites()
    if (!this.settings.objectCache) return
    const { rsp } = await this.conns.request({ opcode: SD_OP_FLUSH_DEL_CACHE, variant: REQ_OBJ, fields: { oid: vidToVdiOid(this.handle.vid) } })
    if (rsp.result !== SD_RES_SUCCESS) throw new SdError(rsp.result, opcodeName(SD_OP_FLUSH_DEL_CACHE))
  }

  close(): void {
    this.conns.close()
    for (const old of this.retired.splice(0)) old.close()
  }

  private current(): Promise<VdiHandle> {
    if (this.reloading) return this.reloading
    if (this.stale) return this.reload()
    return Promise.resolve(this.handle)
  }

  private async loadHandle(): Promise<VdiHandle> {
    this.ahead.invalidate()
    await this.drainWrites(false)
    const handle = await VdiHandle.open(this.conns, this.target.name, this.target.snapshot, { concurrency: VOLUME_IO_CONCURRENCY })
    this.handle = handle
    this.stale = false
    for (const old of this.retired.splice(0)) old.close()
    return handle
  }

  /**
   * Sends what write-behind holds and waits for every write in flight; with `report`, throws
   * the failure of one sent in the background (fsync, close, unmount — not a reload).
   */
  private async drainWrites(report = true): Promise<void> {
    await Promise.allSettled([...this.writesInFlight])
    await this.behind.flush(report)
  }
}
