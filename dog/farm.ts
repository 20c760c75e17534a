// `dog cluster snapshot save|list|load|show` (cli-and-formats §6.8, behaviour.md §16): the
// "farm", a content-addressed store of cluster snapshots in a local directory. Every object of
// the snapshot VDIs is cut into 128 KiB slices stored as blobs named by their SHA-1
// (`objects/xx/<38 hex>`); a blob listing the slices' SHA-1s stands for the object, a trunk blob
// lists the snapshot's objects, and the `user_snap` log records each snapshot's trunk. Objects
// (up to 2 GiB) are read, sliced and written back a piece of OBJECT_CHUNK_BYTES at a time.
import { asSdError, forEachVdi, printTransportFailure } from './common.js'
import crypto from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

import { EXIT_SUCCESS, EXIT_SYSFAIL, UsageError, type DogContext, type DogHandler } from './cli.js'
import type { DogRuntime } from './runtime.js'
import { btreeNodeObjectIds, dataObjectIds, forEachConcurrently, readIndex, readObjectRange, showProgress, vmstateObjectIds } from './vdi-inode.js'
import { isAllZero } from '../lib/bytes.js'
import type { SheepConnection } from '../lib/client.js'
import { REQ_VDI_STATE } from '../lib/codec.js'
import { SdError } from '../lib/errors.js'
import { formatCtime } from '../lib/format.js'
import { sdHashVdi } from '../lib/hash.js'
import { decodeInodeHeader, isSnapshot, SD_INODE_HEADER_SIZE, SD_INODE_INDEX_AT, type InodeHeader } from '../lib/inode.js'
import { isVdiObj, MAX_DATA_OBJS, objectSizeOf, oidToVid, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES, opcodeName, SD_MAX_VDI_TAG_LEN, SD_NR_VDIS, SD_OP_NOTIFY_VDI_ADD, SD_RES_SUCCESS } from '../lib/proto.js'
import { clusterInfo, createAndWriteObj, newVdi, writeObj } from '../lib/sheep-api.js'

// ---- the farm layout (behaviour.md §16) --------------------------------------------------------

export const FARM_MAGIC = 0xfee1c001
export const FARM_VERSION = 1
export const SNAP_LOG_HEADER_SIZE = 32
export const SNAP_LOG_RECORD_SIZE = 296
const SNAP_LOG_TAG_AT = 4
const SNAP_LOG_TIME_AT = 264
const SNAP_LOG_SHA1_AT = 272
export const TRUNK_ENTRY_SIZE = 32
const TRUNK_SHA1_AT = 12
export const SLICE_BYTES = 128 * 1024
const SHA1_SIZE = 20
const SNAP_LOG_FILE = 'user_snap'
const OBJECTS_DIR = 'objects'
/** Objects saved at once with -m, and loaded at once (the original loads in parallel). */
const FARM_PARALLEL_OBJECTS = 8

/** The cluster settings recorded with the first snapshot. */
export interface SnapLogHeader {
  copies: number
  copyPolicy: number
  blockSizeShift: number
}

export interface SnapLogRecord {
  idx: number
  tag: string
  timeSeconds: number
  trunkSha1: Buffer
}

/** One object of a snapshot: its redundancy and the SHA-1 of its slice list. */
export interface TrunkEntry {
  oid: bigint
  copies: number
  copyPolicy: number
  blockSizeShift: number
  sha1: Buffer
}

/** A failure whose stderr lines were printed where it happened. */
class FarmError extends Error {}

function sha1Of(data: Uint8Array): Buffer {
  return crypto.createHash('sha1').update(data).digest()
}

const strerror = (error: unknown): string => {
  const code = (error as NodeJS.ErrnoException).code
  return ERRNO_TEXTS[code ?? ''] ?? String((error as Error).message ?? error)
}

const ERRNO_TEXTS: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EEXIST: 'File exists',
  ENOTDIR: 'Not a directory',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
}

export function encodeSnapLogHeader(header: SnapLogHeader): Buffer {
  const bytes = Buffer.alloc(SNAP_LOG_HEADER_SIZE)
  bytes.writeUInt32LE(FARM_MAGIC, 0)
  bytes.writeUInt32LE(FARM_VERSION, 4)
  bytes.writeUInt8(header.copies, 8)
  bytes.writeUInt8(header.copyPolicy, 9)
  bytes.writeUInt8(header.blockSizeShift, 10)
  return bytes
}

export function encodeSnapLogRecord(record: SnapLogRecord): Buffer {
  const bytes = Buffer.alloc(SNAP_LOG_RECORD_SIZE)
  bytes.writeUInt32LE(record.idx, 0)
  bytes.write(record.tag.slice(0, SD_MAX_VDI_TAG_LEN - 1), SNAP_LOG_TAG_AT, 'utf8')
  bytes.writeBigUInt64LE(BigInt(record.timeSeconds), SNAP_LOG_TIME_AT)
  record.trunkSha1.copy(bytes, SNAP_LOG_SHA1_AT)
  return bytes
}

function decodeSnapLogRecord(bytes: Buffer, at: number): SnapLogRecord {
  const tagBytes = bytes.subarray(at + SNAP_LOG_TAG_AT, at + SNAP_LOG_TAG_AT + SD_MAX_VDI_TAG_LEN)
  const end = tagBytes.indexOf(0)
  return {
    idx: bytes.readUInt32LE(at),
    tag: tagBytes.subarray(0, end < 0 ? tagBytes.length : end).toString('utf8'),
    timeSeconds: Number(bytes.readBigUInt64LE(at + SNAP_LOG_TIME_AT)),
    trunkSha1: Buffer.from(bytes.subarray(at + SNAP_LOG_SHA1_AT, at + SNAP_LOG_SHA1_AT + SHA1_SIZE)),
  }
}

export function encodeTrunk(entries: readonly TrunkEntry[]): Buffer {
  const bytes = Buffer.alloc(entries.length * TRUNK_ENTRY_SIZE)
  entries.forEach((entry, i) => {
    const at = i * TRUNK_ENTRY_SIZE
    bytes.writeBigUInt64LE(entry.oid, at)
    bytes.writeUInt8(entry.copies, at + 8)
    bytes.writeUInt8(entry.copyPolicy, at + 9)
    bytes.writeUInt8(entry.blockSizeShift, at + 10)
    entry.sha1.copy(bytes, at + TRUNK_SHA1_AT)
  })
  return bytes
}

export function decodeTrunk(bytes: Buffer): TrunkEntry[] {
  return Array.from({ length: Math.floor(bytes.length / TRUNK_ENTRY_SIZE) }, (_, i) => {
    const at = i * TRUNK_ENTRY_SIZE
    return {
      oid: bytes.readBigUInt64LE(at),
      copies: bytes.readUInt8(at + 8),
      copyPolicy: bytes.readUInt8(at + 9),
      blockSizeShift: bytes.readUInt8(at + 10),
      sha1: Buffer.from(bytes.subarray(at + TRUNK_SHA1_AT, at + TRUNK_SHA1_AT + SHA1_SIZE)),
    }
  })
}

/** The farm directory: blobs, slices, trunks and the snapshot log. */
export class Farm {
  constructor(
    readonly dir: string,
    private readonly ctx: DogContext,
  ) {}

  private get logFile(): string {
    return path.join(this.dir, SNAP_LOG_FILE)
  }

  private blobFile(sha1: Buffer): string {
    const hex = sha1.toString('hex')
    return path.join(this.dir, OBJECTS_DIR, hex.slice(0, 2), hex.slice(2))
  }

  private fail(...lines: string[]): never {
    for (const line of lines) this.ctx.printStderrLine(line)
    throw new FarmError(lines.join('\n'))
  }

  /** Creates the directory (its parent must exist), `objects/00`…`objects/ff` and an empty log. */
  async init(): Promise<void> {
    try {
      await makeDirectory(this.dir)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') this.ctx.printStderrLine(`Path is not a directory: ${this.dir}`)
      this.fail(`Fail to create directory: ${strerror(error)}`, 'Fail to init farm.')
    }
    try {
      await makeDirectory(path.join(this.dir, OBJECTS_DIR))
      for (let i = 0; i < 256; i++) await makeDirectory(path.join(this.dir, OBJECTS_DIR, i.toString(16).padStart(2, '0')))
    } catch (error) {
      this.fail(`Fail to create directory: ${strerror(error)}`, 'Fail to init farm.')
    }
    try {
      await (await fs.open(this.logFile, 'a')).close()
    } catch (error) {
      this.fail(strerror(error), 'Fail to init farm.')
    }
  }

  /** The log: its header (undefined while it is empty) and its records. */
  async readLog(): Promise<{ header: SnapLogHeader | undefined; records: SnapLogRecord[] }> {
    let bytes: Buffer
    try {
      bytes = await fs.readFile(this.logFile)
    } catch (error) {
      this.fail(strerror(error))
    }
    if (bytes.length === 0) return { header: undefined, records: [] }
    if (bytes.length < SNAP_LOG_HEADER_SIZE) this.fail('failed to read log header')
    if (bytes.readUInt32LE(0) !== FARM_MAGIC) this.fail('magic number mismatch')
    const header = { copies: bytes.readUInt8(8), copyPolicy: bytes.readUInt8(9), blockSizeShift: bytes.readUInt8(10) }
    const count = Math.floor((bytes.length - SNAP_LOG_HEADER_SIZE) / SNAP_LOG_RECORD_SIZE)
    const records = Array.from({ length: count }, (_, i) => decodeSnapLogRecord(bytes, SNAP_LOG_HEADER_SIZE + i * SNAP_LOG_RECORD_SIZE))
    return { header, records }
  }

  /** The log record a `<tag|idx>` argument names: same index, or same tag. */
  async findSnapshot(idx: number, tag: string): Promise<SnapLogRecord | undefined> {
    let records: SnapLogRecord[]
    try {
      records = (await this.readLog()).records
    } catch (error) {
      if (error instanceof FarmError) return undefined
      throw error
    }
    return records.find((record) => record.idx === idx || record.tag === tag)
  }

  /** (Re)writes the log header, keeping the records. */
  async writeLogHeader(header: SnapLogHeader): Promise<void> {
    try {
      const file = await fs.open(this.logFile, 'r+')
      try {
        await file.write(encodeSnapLogHeader(header), 0, SNAP_LOG_HEADER_SIZE, 0)
      } finally {
        await file.close()
      }
    } catch (error) {
      this.fail(`failed to write log hdr, ${strerror(error)}`)
    }
  }

  async appendLogRecord(record: SnapLogRecord): Promise<void> {
    try {
      await fs.appendFile(this.logFile, encodeSnapLogRecord(record))
    } catch (error) {
      this.fail(strerror(error))
    }
  }

  /** Stores a blob under its SHA-1 (kept as is if it exists); answers the SHA-1. */
  async writeBlob(data: Uint8Array): Promise<Buffer> {
    const sha1 = sha1Of(data)
    const file = this.blobFile(sha1)
    try {
      await fs.writeFile(file, data, { flag: 'wx' })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') this.fail(`failed to open file ${file} with error: ${strerror(error)}`)
    }
    return sha1
  }

  /** A blob, checked against its name. */
  async readBlob(sha1: Buffer): Promise<Buffer> {
    const file = this.blobFile(sha1)
    let data: Buffer
    try {
      data = await fs.readFile(file)
    } catch (error) {
      this.fail(`${file}: ${strerror(error)}`)
    }
    const actual = sha1Of(data)
    if (!actual.equals(sha1)) this.fail(`failed, ${sha1.toString('hex')} != ${actual.toString('hex')}`)
    return data
  }

  /**
   * Stores an object as 128 KiB slices plus the list of their SHA-1s; answers the list's SHA-1.
   * The object arrives in pieces of any length, so a big one is never held whole.
   */
  async writeSliced(pieces: Buffer | AsyncIterable<Buffer>): Promise<Buffer> {
    const sha1s: Buffer[] = []
    // the bytes of a slice begun at the end of one piece and completed by the next
    let carry = Buffer.alloc(0)
    for await (const piece of Buffer.isBuffer(pieces) ? [pieces] : pieces) {
      const data = carry.length > 0 ? Buffer.concat([carry, piece]) : piece
      let at = 0
      for (; at + SLICE_BYTES <= data.length; at += SLICE_BYTES) sha1s.push(await this.writeBlob(data.subarray(at, at + SLICE_BYTES)))
      carry = Buffer.from(data.subarray(at))
    }
    if (carry.length > 0) sha1s.push(await this.writeBlob(carry))
    return this.writeBlob(Buffer.concat(sha1s))
  }

  /**
   * An object stored by writeSliced, as pieces of `pieceBytes` (the last one may be shorter; an
   * empty object is one empty piece), so a big one is never held whole.
   */
  async *readSlicedPieces(sha1: Buffer, pieceBytes: number): AsyncGenerator<Buffer> {
    const list = await this.readBlob(sha1)
    let slices: Buffer[] = []
    let buffered = 0
    let yielded = false
    for (let at = 0; at + SHA1_SIZE <= list.length; at += SHA1_SIZE) {
      const slice = await this.readBlob(list.subarray(at, at + SHA1_SIZE))
      slices.push(slice)
      buffered += slice.length
      while (buffered >= pieceBytes) {
        const all = Buffer.concat(slices)
        // a copy of the rest, so the yielded piece is not kept alive through it
        slices = buffered > pieceBytes ? [Buffer.from(all.subarray(pieceBytes))] : []
        buffered -= pieceBytes
        yielded = true
        yield all.subarray(0, pieceBytes)
      }
    }
    if (buffered > 0 || !yielded) yield Buffer.concat(slices)
  }

  /** An object stored by writeSliced, whole (inodes: 12.5 MB at most). */
  async readSliced(sha1: Buffer): Promise<Buffer> {
    const pieces: Buffer[] = []
    for await (const piece of this.readSlicedPieces(sha1, OBJECT_CHUNK_BYTES)) pieces.push(piece)
    return Buffer.concat(pieces)
  }
}

/** mkdir that accepts an existing directory (and nothing else) under the name. */
async function makeDirectory(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: 0o755 })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    if (!(await fs.stat(dir)).isDirectory()) throw error
  }
}

/** A `<tag|idx>` argument as the original reads it: the leading number (0 if none) and the text. */
function snapshotArgument(text: string): { idx: number; tag: string } {
  const match = /^\s*([+-]?\d+)/.exec(text)
  return { idx: match === null ? 0 : Number(BigInt.asUintN(32, BigInt(match[1] as string))), tag: text }
}

/** Runs a farm command: FarmError (already reported) → the closing line and `status`. */
async function withFarm(ctx: DogContext, closingLine: string, status: number, body: () => Promise<number>): Promise<number> {
  try {
    return await body()
  } catch (error) {
    if (!(error instanceof FarmError)) throw error
    ctx.printStderrLine(closingLine)
    return status
  }
}

// ---- save --------------------------------------------------------------------------------------

/** What `save` stores of each object: the redundancy of the first snapshot naming it. */
type ObjectTree = Map<bigint, Omit<TrunkEntry, 'oid' | 'sha1'>>

/** The snapshot VDIs (those named, if any) and every object they address. */
async function collectSnapshotObjects(ctx: DogContext, conn: SheepConnection, names: readonly string[]): Promise<{ tree: ObjectTree; snapshots: number }> {
  const tree: ObjectTree = new Map()
  let snapshots = 0
  const walked = await forEachVdi(ctx, conn, async (walkedVdi) => {
    const { header } = walkedVdi
    if (!isSnapshot(header)) return
    if (names.length > 0 && !names.includes(header.name)) return
    const vdi = await readIndex(ctx, conn, walkedVdi)
    const btreeNodes = await btreeNodeObjectIds(ctx, conn, walkedVdi)
    if (vdi === undefined || btreeNodes === undefined) throw new FarmError('inode read failed')
    snapshots++
    const redundancy = { copies: header.nrCopies, copyPolicy: header.copyPolicy, blockSizeShift: header.blockSizeShift }
    for (const oid of [vidToVdiOid(vdi.vid), ...btreeNodes, ...dataObjectIds(vdi), ...vmstateObjectIds(vdi)]) {
      if (!tree.has(oid)) tree.set(oid, redundancy)
    }
  })
  if (!walked) throw new FarmError('vdi walk failed')
  return { tree, snapshots }
}

/** The cluster's copies, policy and object size, for the log header of the first snapshot. */
async function clusterSettings(ctx: DogContext, conn: SheepConnection): Promise<SnapLogHeader> {
  try {
    const info = await clusterInfo(conn)
    return { copies: info.nrCopies, copyPolicy: info.copyPolicy, blockSizeShift: info.blockSizeShift }
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(failure.isTransport ? 'Fail to execute request' : failure.label)
    throw new FarmError('CLUSTER_INFO failed')
  }
}

/** The pieces of an object `save` reads (objects reach 2 GiB); a failed read is reported and ends the save. */
async function* savedObjectPieces(ctx: DogContext, conn: SheepConnection, oid: bigint, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < size; at += OBJECT_CHUNK_BYTES) {
    let piece: Buffer
    try {
      piece = await readObjectRange(conn, oid, at, Math.min(OBJECT_CHUNK_BYTES, size - at))
    } catch (error) {
      const failure = asSdError(error)
      printTransportFailure(ctx, failure)
      ctx.printStderrLine(`Failed to read object ${oid.toString(16).padStart(16, '0')} ${failure.label}`)
      ctx.printStderrLine(`Fail to save object, oid ${oid.toString(16)}`)
      throw new FarmError('object read failed')
    }
    yield piece
  }
}

export async function saveClusterSnapshot(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [tag, dir, ...names] = ctx.args as [string, string | undefined, ...string[]]
  if (/^\s*[+-]?\d/.test(tag)) throw new UsageError('Tag should not start with number.')
  if (dir === undefined) throw new UsageError('Please specify the path to save snapshot.')
  const conn = dog.daemon(ctx)
  return withFarm(ctx, `Fail to save snapshot to path: ${dir}.`, EXIT_SYSFAIL, async () => {
    const farm = new Farm(dir, ctx)
    await farm.init()
    if ((await farm.findSnapshot(0, tag)) !== undefined) {
      ctx.printStderrLine('Snapshot tag has already been used for another snapshot, please, use another one.')
      throw new FarmError('tag in use')
    }
    const { tree, snapshots } = await collectSnapshotObjects(ctx, conn, names)
    if (snapshots === 0) {
      ctx.printStderrLine('Cannot execute. It may be caused by:')
      if (names.length > 0) {
        ctx.printStderrLine('1. The specified VDIs are not found.')
        ctx.printStderrLine("2. The specified VDIs don't have snapshots.")
      } else {
        ctx.printStderrLine('1. The cluster is empty.')
        ctx.printStderrLine("2. All VDIs of the cluster don't have snapshots.")
      }
      throw new FarmError('nothing to save')
    }
    const { records } = await farm.readLog()
    if (records.length === 0) await farm.writeLogHeader(await clusterSettings(ctx, conn))

    const oids = [...tree.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const sha1ByOid = new Map<bigint, Buffer>()
    let saved = 0
    await forEachConcurrently(oids, ctx.opts.multithread ? FARM_PARALLEL_OBJECTS : 1, async (oid) => {
      const entry = tree.get(oid) as Omit<TrunkEntry, 'oid' | 'sha1'>
      sha1ByOid.set(oid, await farm.writeSliced(savedObjectPieces(ctx, conn, oid, objectSizeOf(oid, entry.blockSizeShift))))
      showProgress(ctx, ++saved, oids.length, true)
    })
    const trunk = encodeTrunk(oids.map((oid) => ({ oid, ...(tree.get(oid) as Omit<TrunkEntry, 'oid' | 'sha1'>), sha1: sha1ByOid.get(oid) as Buffer })))
    const trunkSha1 = await farm.writeBlob(trunk)
    await farm.appendLogRecord({ idx: records.length + 1, tag, timeSeconds: Math.floor(Date.now() / 1000), trunkSha1 })
    return EXIT_SUCCESS
  })
}

// ---- list --------------------------------------------------------------------------------------

export async function listClusterSnapshots(ctx: DogContext): Promise<number> {
  const dir = ctx.args[0] as string
  return withFarm(ctx, 'Fail to list snapshot.', EXIT_SYSFAIL, async () => {
    const farm = new Farm(dir, ctx)
    await farm.init()
    const { records } = await farm.readLog()
    let text = 'Index\t\tTag\t\tSnapshot Time\n'
    for (const record of records) text += `${record.idx}\t\t${record.tag}\t\t${formatCtime(record.timeSeconds)}\n`
    ctx.printStdout(text)
    return EXIT_SUCCESS
  })
}

// ---- show and load: reading a snapshot ---------------------------------------------------------

/** Opens the farm and finds the snapshot a `<tag|idx>` argument names; its trunk entries. */
async function openSnapshot(ctx: DogContext, argument: string, dir: string): Promise<{ farm: Farm; entries: TrunkEntry[] }> {
  const { idx, tag } = snapshotArgument(argument)
  const farm = new Farm(dir, ctx)
  await farm.init()
  const record = await farm.findSnapshot(idx, tag)
  if (record === undefined) {
    ctx.printStderrLine('Snapshot index or tag does not exist.')
    throw new FarmError('no such snapshot')
  }
  return { farm, entries: decodeTrunk(await farm.readBlob(record.trunkSha1)) }
}

/** The inode objects of a snapshot, decoded (the whole inode is stored). */
async function* snapshotInodes(farm: Farm, entries: readonly TrunkEntry[]): AsyncGenerator<{ header: InodeHeader; inode: Buffer }> {
  for (const entry of entries) {
    if (!isVdiObj(entry.oid)) continue
    const inode = await farm.readSliced(entry.sha1)
    yield { header: decodeInodeHeader(inode), inode }
  }
}

export async function showClusterSnapshot(ctx: DogContext): Promise<number> {
  const [argument, dir, ...names] = ctx.args as [string, string | undefined, ...string[]]
  if (dir === undefined) throw new UsageError('Please specify the path to show snapshot.')
  return withFarm(ctx, 'Fail to show snapshot', EXIT_SYSFAIL, async () => {
    const { farm, entries } = await openSnapshot(ctx, argument, dir)
    let seq = 0
    for await (const { header } of snapshotInodes(farm, entries)) {
      if (names.length > 0 && !names.includes(header.name)) continue
      ctx.printStderrLine(`${++seq}. VDI id: ${header.vdiId.toString(16)}, name: ${header.name}, tag: ${header.tag}`)
    }
    return EXIT_SUCCESS
  })
}

/** NOTIFY_VDI_ADD with set_bitmap: every node registers the vid before its objects come back. */
async function notifyVdiAdd(conn: SheepConnection, vid: number, entry: TrunkEntry): Promise<void> {
  const { rsp } = await conn.request({
    opcode: SD_OP_NOTIFY_VDI_ADD,
    variant: REQ_VDI_STATE,
    fields: { newVid: vid, copies: entry.copies, copyPolicy: entry.copyPolicy, blockSizeShift: entry.blockSizeShift, setBitmap: 1 },
  })
  if (rsp.result !== SD_RES_SUCCESS) throw new SdError(rsp.result, opcodeName(SD_OP_NOTIFY_VDI_ADD))
}

/** The objects of the named VDIs' snapshots: their inodes and the data objects they address. */
async function objectsOfNamedVdis(farm: Farm, entries: readonly TrunkEntry[], names: readonly string[]): Promise<Set<bigint>> {
  const wanted = new Set<bigint>()
  for await (const { header, inode } of snapshotInodes(farm, entries)) {
    if (!names.includes(header.name)) continue
    wanted.add(vidToVdiOid(header.vdiId))
    for (let idx = 0; idx < MAX_DATA_OBJS; idx++) {
      const owner = inode.readUInt32LE(SD_INODE_INDEX_AT + idx * 4)
      if (owner !== 0) wanted.add(vidToDataOid(owner, idx))
    }
  }
  return wanted
}

/** What loading wrote: the vids it registered and, per VDI name, the snapshot with the highest snap_id. */
interface LoadedSnapshot {
  registeredVids: Set<number>
  latestByName: Map<string, InodeHeader>
  /** Per VDI name, the highest vid of its snapshots. */
  topVidByName: Map<string, number>
}

/**
 * Writes one piece of a loaded object: the first creates it (registering its vid first, once per
 * vid), the others are written over it.
 */
async function writeLoadedPiece(
  ctx: DogContext,
  conn: SheepConnection,
  entry: TrunkEntry,
  offset: number,
  piece: Buffer,
  registered: Map<number, Promise<void>>,
): Promise<void> {
  const vid = oidToVid(entry.oid)
  const options = { copies: entry.copies, copyPolicy: entry.copyPolicy, direct: true }
  try {
    let registration = registered.get(vid)
    if (registration === undefined) {
      registration = notifyVdiAdd(conn, vid, entry)
      registered.set(vid, registration)
    }
    await registration
    if (offset === 0) await createAndWriteObj(conn, entry.oid, 0, piece, options)
    else await writeObj(conn, entry.oid, offset, piece, options)
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(
      failure.isTransport ? `Failed to write object ${entry.oid.toString(16)}` : `Failed to write object ${entry.oid.toString(16)}: ${failure.label}`,
    )
    ctx.printStderrLine(`Fail to load object, oid ${entry.oid.toString(16)}`)
    throw new FarmError('object write failed')
  }
}

/**
 * Writes the snapshot's objects back (registering each vid first), a piece of at most
 * OBJECT_CHUNK_BYTES at a time: objects reach 2 GiB, one request carries 64 MiB.
 */
async function loadObjects(ctx: DogContext, conn: SheepConnection, farm: Farm, entries: readonly TrunkEntry[]): Promise<LoadedSnapshot> {
  const registered = new Map<number, Promise<void>>()
  const loadedSnapshot: LoadedSnapshot = { registeredVids: new Set(), latestByName: new Map(), topVidByName: new Map() }
  let loaded = 0
  await forEachConcurrently(entries, FARM_PARALLEL_OBJECTS, async (entry) => {
    const vid = oidToVid(entry.oid)
    let header: InodeHeader | undefined
    let offset = 0
    for await (const piece of farm.readSlicedPieces(entry.sha1, OBJECT_CHUNK_BYTES)) {
      // the create fills the whole object with zeros: later pieces of zeros need not be sent
      if (offset === 0 || !isAllZero(piece)) await writeLoadedPiece(ctx, conn, entry, offset, piece, registered)
      if (offset === 0 && isVdiObj(entry.oid)) header = decodeInodeHeader(piece)
      offset += piece.length
    }
    loadedSnapshot.registeredVids.add(vid)
    if (header !== undefined) {
      const known = loadedSnapshot.latestByName.get(header.name)
      if (known === undefined || known.snapId < header.snapId) loadedSnapshot.latestByName.set(header.name, header)
      loadedSnapshot.topVidByName.set(header.name, Math.max(vid, loadedSnapshot.topVidByName.get(header.name) ?? 0))
    }
    showProgress(ctx, ++loaded, entries.length, true)
  })
  return loadedSnapshot
}

/** The vids a lookup of `name` scans upwards from its hash to `top` (wrapping past the last vid). */
function vidsFromHashTo(name: string, top: number): number[] {
  const vids: number[] = []
  for (let vid = sdHashVdi(name) || 1; ; vid = vid + 1 < SD_NR_VDIS ? vid + 1 : 1) {
    vids.push(vid)
    if (vid === top || vids.length >= SD_NR_VDIS) return vids
  }
}

/**
 * Lookups find a name only among in-use vids contiguous from its hash, and a new working VDI
 * takes the first free vid there. The VDIs the snapshot does not hold (working and deleted ones)
 * leave free vids below its snapshots, which would hide them; each becomes an empty inode
 * (the placeholder a deleted VDI leaves on a live cluster).
 */
async function fillVidGaps(ctx: DogContext, conn: SheepConnection, loaded: LoadedSnapshot): Promise<void> {
  for (const [name, top] of loaded.topVidByName) {
    if (name === '') continue
    const snapshot = loaded.latestByName.get(name) as InodeHeader
    for (const vid of vidsFromHashTo(name, top)) {
      if (loaded.registeredVids.has(vid)) continue
      const placeholder: TrunkEntry = {
        oid: vidToVdiOid(vid),
        copies: snapshot.nrCopies,
        copyPolicy: snapshot.copyPolicy,
        blockSizeShift: snapshot.blockSizeShift,
        sha1: Buffer.alloc(0),
      }
      try {
        await notifyVdiAdd(conn, vid, placeholder)
        await createAndWriteObj(conn, placeholder.oid, 0, Buffer.alloc(SD_INODE_HEADER_SIZE), {
          copies: placeholder.copies,
          copyPolicy: placeholder.copyPolicy,
          direct: true,
        })
      } catch (error) {
        const failure = asSdError(error)
        printTransportFailure(ctx, failure)
        ctx.printStderrLine(`Failed to write object ${placeholder.oid.toString(16)}: ${failure.label}`)
        throw new FarmError('placeholder not written')
      }
      loaded.registeredVids.add(vid)
    }
  }
}

/** A working VDI per name, cloned from its latest snapshot (names in byte order). */
async function createWorkingVdis(ctx: DogContext, conn: SheepConnection, latest: Map<string, InodeHeader>): Promise<void> {
  for (const name of [...latest.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    if (name === '') continue
    const snapshot = latest.get(name) as InodeHeader
    try {
      await newVdi(conn, {
        name,
        vdiSize: snapshot.vdiSize,
        baseVdiId: snapshot.vdiId,
        copies: snapshot.nrCopies,
        copyPolicy: snapshot.copyPolicy,
        storePolicy: snapshot.storePolicy,
        blockSizeShift: snapshot.blockSizeShift,
      })
    } catch (error) {
      const failure = asSdError(error)
      printTransportFailure(ctx, failure)
      ctx.printStderrLine(`Failed to create VDI ${name}: ${failure.label}`)
      throw new FarmError('working VDI not created')
    }
  }
}

/**
 * `load`: re-formats the cluster with the settings of the log (through `format`, which prints
 * and prompts as `cluster format` does), then writes the snapshot back and recreates a working
 * VDI per name. A declined prompt ends dog with 0 and nothing changed.
 */
export async function loadClusterSnapshot(ctx: DogContext, dog: DogRuntime, format: DogHandler): Promise<number> {
  const [argument, dir, ...names] = ctx.args as [string, string | undefined, ...string[]]
  if (dir === undefined) throw new UsageError('Please specify the path to save snapshot.')
  const conn = dog.daemon(ctx)
  return withFarm(ctx, 'Fail to load snapshot', EXIT_SYSFAIL, async () => {
    const { farm, entries } = await openSnapshot(ctx, argument, dir)
    const { header } = await farm.readLog()
    if (header === undefined) throw new FarmError('empty log')
    const wanted = names.length > 0 ? await objectsOfNamedVdis(farm, entries, names) : undefined
    if (wanted !== undefined && wanted.size === 0) {
      ctx.printStderrLine('Objects of specified VDIs are not found in local cluster snapshot storage.')
      throw new FarmError('nothing to load')
    }

    const ctimeBefore = await clusterCtime(conn)
    ctx.opts.redundancy = { copies: header.copies, copyPolicy: header.copyPolicy }
    ctx.opts.blockSizeShift = header.blockSizeShift
    const formatted = await format(ctx)
    if (formatted !== EXIT_SUCCESS) throw new FarmError('format failed')
    // `format` answers 0 when its prompt was declined: then the cluster was not touched
    if ((await clusterCtime(conn)) === ctimeBefore) return EXIT_SUCCESS

    const toLoad = wanted === undefined ? entries : entries.filter((entry) => wanted.has(entry.oid))
    const loaded = await loadObjects(ctx, conn, farm, toLoad)
    await fillVidGaps(ctx, conn, loaded)
    await createWorkingVdis(ctx, conn, loaded.latestByName)
    return EXIT_SUCCESS
  })
}

/** The cluster's creation time (CLUSTER_INFO); undefined when it cannot be read. */
async function clusterCtime(conn: SheepConnection): Promise<bigint | undefined> {
  try {
    return (await clusterInfo(conn)).ctime
  } catch {
    return undefined
  }
}
