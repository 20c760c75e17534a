// `dog vdi backup -F FROM -s TO <name>` and `dog vdi restore -s SNAP <name>` (cli-and-formats
// §4.15): the incremental stream between two snapshots (little-endian header {version 1, magic
// 0x11921192}, records {idx, offset, length, reserved} + data trimmed to the differing 512-byte
// sectors, an idx 0xFFFFFFFF terminator), and its replay onto a clone of the base snapshot that
// then becomes a snapshot of its own, the working VDI resuming from its old parent. Objects are
// compared, sent and restored a piece at a time, so memory stays bounded for 2 GiB objects.
import { asSdError, failureLabel, printTransportFailure, removeVdi } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, UsageError, type DogContext, type SnapshotSelector as OptionSelector } from './cli.js'
import { snapshotIdOf, snapshotTagOf } from './parsers.js'
import type { DogRuntime } from './runtime.js'
import { objectProgressOnStderr, openIndexedVdi, openVdiInode, readObjectRangeOrReport, writeStdout, type IndexedVdi } from './vdi-inode.js'
import type { SheepConnection } from '../lib/client.js'
import { dataObjectCount, objectSize, type InodeHeader } from '../lib/inode.js'
import { vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES } from '../lib/proto.js'
import { newVdi, readObj, type NewVdiOptions, type SnapshotSelector } from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'

export const BACKUP_FORMAT_VERSION = 1
export const BACKUP_MAGIC = 0x11921192
export const BACKUP_HEADER_SIZE = 8
export const BACKUP_RECORD_HEADER_SIZE = 16
/** The idx of the record that ends a stream. */
export const BACKUP_END_IDX = 0xffffffff
/** Granularity of the comparison that trims a record. */
const BACKUP_SECTOR_BYTES = 512
/** Objects read ahead of the one being written to stdout. */
const BACKUP_READ_AHEAD_OBJECTS = 4

/**
 * One record of a backup stream: the changed bytes of object `idx` from `offset`. `data` holds
 * them when the object fits in one piece (it was read whole anyway); for bigger objects they are
 * read again a piece at a time while the record is written, so no whole object is held.
 */
export interface BackupRecord {
  idx: number
  offset: number
  length: number
  data: Buffer | undefined
}

export function encodeBackupHeader(): Buffer {
  const header = Buffer.alloc(BACKUP_HEADER_SIZE)
  header.writeUInt32LE(BACKUP_FORMAT_VERSION, 0)
  header.writeUInt32LE(BACKUP_MAGIC, 4)
  return header
}

export function encodeRecordHeader(idx: number, offset: number, length: number): Buffer {
  const header = Buffer.alloc(BACKUP_RECORD_HEADER_SIZE)
  header.writeUInt32LE(idx, 0)
  header.writeUInt32LE(offset, 4)
  header.writeUInt32LE(length, 8)
  return header
}

/**
 * The part of `to` that differs from `from` (same length, a multiple of 512), cut to the first
 * and the last differing sector; undefined when they are equal.
 */
export function changedRange(from: Buffer, to: Buffer): { offset: number; length: number } | undefined {
  const sectors = to.length / BACKUP_SECTOR_BYTES
  const sectorDiffers = (sector: number): boolean => {
    const start = sector * BACKUP_SECTOR_BYTES
    return from.compare(to, start, start + BACKUP_SECTOR_BYTES, start, start + BACKUP_SECTOR_BYTES) !== 0
  }
  let first = 0
  while (first < sectors && !sectorDiffers(first)) first++
  if (first === sectors) return undefined
  let last = sectors - 1
  while (!sectorDiffers(last)) last--
  return { offset: first * BACKUP_SECTOR_BYTES, length: (last - first + 1) * BACKUP_SECTOR_BYTES }
}

function selectorOfOption(selector: OptionSelector | undefined): SnapshotSelector {
  return { snapid: snapshotIdOf(selector), tag: snapshotTagOf(selector) }
}

// ---- vdi backup --------------------------------------------------------------------------------

/** `length` bytes at `offset` of object `idx` of a snapshot, zeros when unallocated; undefined after printing why. */
async function snapshotPiece(
  ctx: DogContext,
  conn: SheepConnection,
  vdi: IndexedVdi,
  idx: number,
  offset: number,
  length: number,
): Promise<Buffer | undefined> {
  const owner = vdi.owners.get(idx) ?? 0
  if (owner === 0) return Buffer.alloc(length)
  const data = await readObjectRangeOrReport(ctx, conn, vidToDataOid(owner, idx), offset, length)
  if (data === undefined) ctx.printStderrLine(`Failed to read object ${owner.toString(16)}, ${idx}`)
  return data
}

/**
 * The record of object `idx`, null when nothing changed, undefined after a read failure. Both
 * snapshots' objects are compared a piece at a time; the record spans from the first to the
 * last differing sector of the whole object.
 */
async function backupRecord(
  ctx: DogContext,
  conn: SheepConnection,
  from: IndexedVdi,
  to: IndexedVdi,
  idx: number,
  size: number,
): Promise<BackupRecord | null | undefined> {
  // both snapshots address the same object: nothing changed, nothing to read
  if (from.owners.get(idx) === to.owners.get(idx)) return null
  let start: number | undefined
  let end = 0
  let whole: Buffer | undefined
  for (let at = 0; at < size; at += OBJECT_CHUNK_BYTES) {
    const length = Math.min(OBJECT_CHUNK_BYTES, size - at)
    const toData = await snapshotPiece(ctx, conn, to, idx, at, length)
    if (toData === undefined) return undefined
    const fromData = await snapshotPiece(ctx, conn, from, idx, at, length)
    if (fromData === undefined) return undefined
    const range = changedRange(fromData, toData)
    if (range === undefined) continue
    start ??= at + range.offset
    end = at + range.offset + range.length
    if (length === size) whole = toData
  }
  if (start === undefined) return null
  return { idx, offset: start, length: end - start, data: whole?.subarray(start, end) }
}

/** Writes the changed bytes of a record whose object spans several pieces, reading them again. */
async function writeRecordData(ctx: DogContext, conn: SheepConnection, to: IndexedVdi, record: BackupRecord): Promise<boolean> {
  const end = record.offset + record.length
  for (let at = record.offset; at < end; at += OBJECT_CHUNK_BYTES) {
    const piece = await snapshotPiece(ctx, conn, to, record.idx, at, Math.min(OBJECT_CHUNK_BYTES, end - at))
    if (piece === undefined) return false
    await writeStdout(ctx, piece)
  }
  return true
}

export async function backupVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  if (ctx.opts.snapshot === undefined || ctx.opts.fromSnapshot === undefined) {
    throw new UsageError("Please specify snapshots with '-F' and '-s' options")
  }
  const conn = dog.daemon(ctx)
  const from = await openIndexedVdi(ctx, conn, name, selectorOfOption(ctx.opts.fromSnapshot))
  if (from === undefined) return EXIT_FAILURE
  const to = await openIndexedVdi(ctx, conn, name, selectorOfOption(ctx.opts.snapshot))
  if (to === undefined) return EXIT_FAILURE

  const size = objectSize(from.header)
  const objectCount = dataObjectCount(to.header)
  const indexes = [...new Set([...from.owners.keys(), ...to.owners.keys()])].filter((idx) => idx < objectCount).sort((a, b) => a - b)
  await writeStdout(ctx, encodeBackupHeader())
  const progress = objectProgressOnStderr(ctx, indexes.length)
  try {
    if (!(await writeRecords(ctx, conn, from, to, indexes, size, progress.tick))) return EXIT_FAILURE
  } finally {
    progress.stop()
  }
  await writeStdout(ctx, encodeRecordHeader(BACKUP_END_IDX, 0, 0))
  return EXIT_SUCCESS
}

/** The records of the objects at `indexes`, read a few ahead and written in index order. */
async function writeRecords(
  ctx: DogContext,
  conn: SheepConnection,
  from: IndexedVdi,
  to: IndexedVdi,
  indexes: readonly number[],
  size: number,
  onObjectDone: () => void,
): Promise<boolean> {
  const pending: Promise<BackupRecord | null | undefined>[] = []
  let nextToRead = 0
  const readAhead = (): void => {
    while (pending.length < BACKUP_READ_AHEAD_OBJECTS && nextToRead < indexes.length) {
      const read = backupRecord(ctx, conn, from, to, indexes[nextToRead++] as number, size)
      read.catch(() => undefined) // awaited below; keeps an abandoned read from being "unhandled"
      pending.push(read)
    }
  }
  readAhead()
  while (pending.length > 0) {
    let record: BackupRecord | null | undefined
    try {
      record = await pending.shift()
    } catch (error) {
      printTransportFailure(ctx, asSdError(error))
      return false
    }
    if (record === undefined) return false
    readAhead()
    onObjectDone()
    if (record === null) continue
    await writeStdout(ctx, encodeRecordHeader(record.idx, record.offset, record.length))
    if (record.data !== undefined) await writeStdout(ctx, record.data)
    else if (!(await writeRecordData(ctx, conn, to, record))) return false
  }
  return true
}

// ---- vdi restore -------------------------------------------------------------------------------

/** Reads exact byte counts from a stream (stdin). */
class ExactReader {
  private readonly chunks: Buffer[] = []
  private buffered = 0
  private ended = false
  private readonly source: AsyncIterator<Buffer | string> | undefined

  constructor(stream: NodeJS.ReadableStream | undefined) {
    this.source = stream?.[Symbol.asyncIterator]() as AsyncIterator<Buffer | string> | undefined
  }

  /** Up to `length` bytes: fewer only at the end of the stream. */
  async read(length: number): Promise<Buffer> {
    while (this.buffered < length && !this.ended && this.source !== undefined) {
      const next = await this.source.next()
      if (next.done) {
        this.ended = true
        break
      }
      const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value
      this.chunks.push(chunk)
      this.buffered += chunk.length
    }
    if (this.source === undefined) this.ended = true
    const all = Buffer.concat(this.chunks)
    const taken = all.subarray(0, Math.min(length, all.length))
    this.chunks.length = 0
    if (all.length > taken.length) this.chunks.push(all.subarray(taken.length))
    this.buffered = all.length - taken.length
    return taken
  }
}

/** The outcome of replaying the records. */
type ReplayResult = { status: number; restoredVdiKept: boolean }

/** NEW_VDI with the original's `Failed to create VDI …` line; the vid, or undefined. */
async function createVdiOrReport(ctx: DogContext, conn: SheepConnection, opts: NewVdiOptions): Promise<number | undefined> {
  try {
    return (await newVdi(conn, opts)).vid
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to create VDI ${opts.name}: ${failureLabel(failure)}`)
    return undefined
  }
}

function newVdiOptionsLike(name: string, header: InodeHeader, baseVdiId: number, snapid: number): NewVdiOptions {
  return {
    name,
    vdiSize: header.vdiSize,
    baseVdiId,
    snapid,
    copies: header.nrCopies,
    copyPolicy: header.copyPolicy,
    storePolicy: header.storePolicy,
    blockSizeShift: header.blockSizeShift,
  }
}

/** Clones the base snapshot under the VDI's name and writes every record of the stream into it. */
async function replayBackup(ctx: DogContext, conn: SheepConnection, base: IndexedVdi, stream: ExactReader): Promise<ReplayResult> {
  const name = base.header.name
  const vid = await createVdiOrReport(ctx, conn, newVdiOptionsLike(name, base.header, base.vid, 0))
  if (vid === undefined) {
    ctx.printStderrLine('Failed to read VDI')
    return { status: EXIT_FAILURE, restoredVdiKept: false }
  }
  const handle = await VdiHandle.openByVid(conn, vid)
  const size = objectSize(base.header)
  for (;;) {
    const recordHeader = await stream.read(BACKUP_RECORD_HEADER_SIZE)
    if (recordHeader.length !== BACKUP_RECORD_HEADER_SIZE) {
      ctx.printStderrLine('failed to read backup data')
      return { status: EXIT_SYSFAIL, restoredVdiKept: true }
    }
    const idx = recordHeader.readUInt32LE(0)
    if (idx === BACKUP_END_IDX) return { status: EXIT_SUCCESS, restoredVdiKept: true }
    const offset = recordHeader.readUInt32LE(4)
    const length = recordHeader.readUInt32LE(8)
    // u64 arithmetic: a hyper volume's offsets pass 2^53
    const objectStart = BigInt(idx) * BigInt(size) + BigInt(offset)
    if (offset + length > size || objectStart + BigInt(length) > handle.sizeBytes) {
      ctx.printStderrLine('The backup file is corrupted')
      return { status: EXIT_SYSFAIL, restoredVdiKept: true }
    }
    // a record may span a whole object (up to 2 GiB): it is copied a piece at a time
    for (let at = 0; at < length; at += OBJECT_CHUNK_BYTES) {
      const wanted = Math.min(OBJECT_CHUNK_BYTES, length - at)
      const data = await stream.read(wanted)
      if (data.length !== wanted) {
        ctx.printStderrLine('failed to read backup data')
        return { status: EXIT_SYSFAIL, restoredVdiKept: true }
      }
      try {
        await handle.write(objectStart + BigInt(at), data)
      } catch (error) {
        const failure = asSdError(error)
        printTransportFailure(ctx, failure)
        ctx.printStderrLine('failed to restore backup')
        const deleted = await removeVdi(ctx, conn, name, { snapid: 0, tag: '' })
        return { status: EXIT_FAILURE, restoredVdiKept: deleted !== EXIT_SUCCESS }
      }
    }
  }
}

export async function restoreVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  if (ctx.opts.snapshot === undefined) {
    throw new UsageError('We can restore a backup file only to snapshots', "Please specify the '-s' option")
  }
  const conn = dog.daemon(ctx)
  const selector = selectorOfOption(ctx.opts.snapshot)
  const base = await openIndexedVdi(ctx, conn, name, selector)
  if (base === undefined) {
    ctx.printStderrLine(`Snapshot ID ${selector.snapid ?? 0} or tag ${selector.tag ?? ''} doesn't exist`)
    return EXIT_FAILURE
  }
  const current = await openVdiInode(ctx, conn, name, { snapid: 0, tag: '' })
  if (current === undefined) return EXIT_FAILURE
  const parentVid = current.header.parentVdiId
  if (parentVid !== 0) {
    try {
      await readObj(conn, vidToVdiOid(parentVid), 0, 1, { direct: true })
    } catch (error) {
      printTransportFailure(ctx, asSdError(error))
      ctx.printStdout('error\n')
      return EXIT_FAILURE
    }
  }
  if ((ctx.io.stdin as { isTTY?: boolean } | undefined)?.isTTY === true) throw new UsageError('stdin must be pipe')
  // the stream is checked before anything changes (the original deleted the working VDI first)
  const stream = new ExactReader(ctx.io.stdin)
  const header = await stream.read(BACKUP_HEADER_SIZE)
  if (header.length !== BACKUP_HEADER_SIZE) ctx.printStderrLine('failed to read backup header')
  if (header.length !== BACKUP_HEADER_SIZE || header.readUInt32LE(0) !== BACKUP_FORMAT_VERSION || header.readUInt32LE(4) !== BACKUP_MAGIC) {
    ctx.printStderrLine('The backup file is corrupted')
    return EXIT_SYSFAIL
  }

  // the working VDI goes away so that the restored state, not it, becomes the next snapshot
  if ((await removeVdi(ctx, conn, name, { snapid: 0, tag: '' })) !== EXIT_SUCCESS) {
    ctx.printStderrLine('Failed to delete the current state')
    return EXIT_FAILURE
  }
  const replayed = await replayBackup(ctx, conn, base, stream)

  // the restored VDI becomes a snapshot and a working VDI branches from the old parent again;
  // without a restored VDI the working VDI is cloned from the old parent (or made afresh)
  const resumed = replayed.restoredVdiKept
    ? await createVdiOrReport(ctx, conn, newVdiOptionsLike(name, current.header, parentVid, 1))
    : await createVdiOrReport(ctx, conn, newVdiOptionsLike(name, current.header, parentVid, 0))
  if (resumed === undefined) {
    ctx.printStderrLine('failed to resume the current vdi')
    return EXIT_FAILURE
  }
  return replayed.status
}
