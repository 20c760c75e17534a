// `dog vdi`: the subcommand table with its usage texts, and the handlers of create, delete, list,
// read, write and resize (cli-and-formats §4.1, §4.4, §4.6, §4.7, §4.13); the other handlers are in
// the dog/vdi-*.ts files, which share the request helpers exported here. Also the VDI walk
// (READ_VDIS, READ_DEL_VDIS, then each inode header) that `node info` and the others share.
import cliProgress from 'cli-progress'

import {
  EXIT_FAILURE,
  EXIT_SUCCESS,
  EXIT_SYSFAIL,
  formatRedundancy,
  requireSize,
  snapshotIdOf,
  snapshotTagOf,
  UsageError,
  type DogCommand,
  type DogContext,
  type DogSubcommand,
} from './cli.js'
import type { DogRuntime } from './main.js'
import type { SheepConnection } from '../lib/client.js'
import { SdError } from '../lib/errors.js'
import { escapeRawName, formatSize, formatVdiDate, progressLine, sprintf } from '../lib/format.js'
import { dataObjectCount, decodeInodeHeader, indexOffset, isClone, isSnapshot, objectSize, u32le, type InodeHeader } from '../lib/inode.js'
import { isDataObj, MAX_DATA_OBJS, oidToHex, oidToIdx, oidToVid, SD_INODE_HEADER_SIZE, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES, resultLabel, SD_MAX_VDI_SIZE, SD_NR_VDIS, SD_RES_EIO, SD_RES_WAIT_FOR_FORMAT } from '../lib/proto.js'
import {
  bitmapTest,
  clusterInfo,
  createAndWriteObj,
  delVdi,
  getVdiInfo,
  newVdi,
  readDelVdis,
  readObj,
  readVdis,
  writeObj,
  type SnapshotSelector,
} from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { getVdiAttrValue, setVdiAttr } from './vdi-attr.js'
import { listLockedVdis, unlockVdi } from './vdi-lock.js'
import { dumpInodeFile, showObjectLocation, showObjectMap, trackVdiObject } from './vdi-object.js'
import { cloneVdi, rollbackVdi, snapshotVdi } from './vdi-snapshot.js'
import { showVdiGraph, showVdiTree } from './vdi-tree.js'
import { alterVdiCopies } from './vdi-alter-copy.js'
import { backupVdi, restoreVdi } from './vdi-backup.js'
import { checkVdi } from './vdi-check.js'

/** What VDI walks read of each inode: the header and the B-tree index header after it (8 bytes). */
export const INODE_HEADER_READ_SIZE = SD_INODE_HEADER_SIZE + 8
/** `vdi delete` clears this many non-zero index entries per inode write unless -B says otherwise. */
const DEFAULT_DELETE_BATCH_ENTRIES = 128
/**
 * The original's `vdi delete` exits 0 even when the deletion failed (a quirk); this one exits 1
 * on failure so scripts can tell (documented in dog.8).
 */
const VDI_DELETE_FAILED = EXIT_FAILURE
/** B-tree index of hyper volumes (wire-protocol.md §12.10). */
const BTREE_MAGIC = 0x6274
const BTREE_HEADER_SIZE = 8
const BTREE_LEAF_ENTRY_SIZE = 8
const BTREE_INDIRECT_ENTRY_SIZE = 16
export const HYPER_VOLUME_STORE_POLICY = 1
/** Object size of hyper volumes created with -y (4 MiB). */
const HYPER_VOLUME_OBJECT_SIZE = 1n << 22n

// ---- shared request helpers --------------------------------------------------------------------

/** A failed request's label for the original's messages; transport failures are "I/O error". */
export function failureLabel(error: SdError): string {
  return error.isTransport ? resultLabel(SD_RES_EIO) : error.label
}

/** Prints the connect failure line of a transport error (the original's dog_exec_req does). */
export function printTransportFailure(ctx: DogContext, error: SdError): void {
  if (error.isTransport) ctx.printStderrLine(error.message)
}

export function asSdError(error: unknown): SdError {
  if (error instanceof SdError) return error
  throw error
}

/** READ_OBJ with the original's failure lines; undefined when it failed. Short answers are zero-padded. */
export async function readObject(
  ctx: DogContext,
  conn: SheepConnection,
  oid: bigint,
  offset: number,
  length: number,
  direct: boolean,
): Promise<Buffer | undefined> {
  try {
    const data = await readObj(conn, oid, offset, length, { direct })
    if (data.length >= length) return data
    const padded = Buffer.alloc(length)
    data.copy(padded)
    return padded
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(failure.isTransport ? `Failed to read object ${oidToHex(oid)}` : `Failed to read object ${oidToHex(oid)} ${failure.label}`)
    return undefined
  }
}

/** WRITE_OBJ (or CREATE_AND_WRITE_OBJ) with the original's failure lines; false when it failed. */
export async function writeObject(
  ctx: DogContext,
  conn: SheepConnection,
  oid: bigint,
  offset: number,
  data: Buffer,
  opts: { copies: number; copyPolicy: number; direct: boolean; create?: boolean },
): Promise<boolean> {
  try {
    if (opts.create) await createAndWriteObj(conn, oid, offset, data, opts)
    else await writeObj(conn, oid, offset, data, opts)
    return true
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(failure.isTransport ? `Failed to write object ${oidToHex(oid)}` : `Failed to write object ${oidToHex(oid)}: ${failure.label}`)
    return false
  }
}

export function selectorOf(ctx: DogContext): SnapshotSelector {
  return { snapid: snapshotIdOf(ctx.opts.snapshot), tag: snapshotTagOf(ctx.opts.snapshot) }
}

/** GET_VDI_INFO with the `Failed to open VDI …` line; undefined when the lookup failed. */
export async function lookUpVdi(ctx: DogContext, conn: SheepConnection, name: string, selector: SnapshotSelector): Promise<number | undefined> {
  try {
    return (await getVdiInfo(conn, name, selector)).vid
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to open VDI ${name} (snapshot id: ${selector.snapid ?? 0} snapshot tag: ${selector.tag ?? ''}): ${failureLabel(failure)}`)
    return undefined
  }
}

/** The line the original prints when a VDI's inode cannot be read after a successful lookup. */
export function inodeReadFailureLine(name: string, selector: SnapshotSelector): string {
  if (selector.snapid) return `Failed to read a snapshot ${name}:${selector.snapid}`
  if (selector.tag) return `Failed to read a snapshot ${name}:${selector.tag}`
  return `Failed to read a vdi ${name}`
}

/** A size argument as a byte count (sizes beyond 2^53 lose their last bits, far past any VDI). */
function sizeArgument(text: string): number {
  return Number(requireSize(text))
}

// ---- the VDI walk ------------------------------------------------------------------------------

/** One live VDI of a walk: its vid, header, and the raw bytes read (header + B-tree header). */
export interface WalkedVdi {
  vid: number
  header: InodeHeader
  headerBytes: Buffer
}

/**
 * Visits every VDI in ascending vid order: in the in-use bitmap, not in the deleted one, with a
 * name (the original's parse_vdi). Header read failures are reported and skipped. False (after
 * printing why) when the bitmaps could not be read.
 */
export async function forEachVdi(ctx: DogContext, conn: SheepConnection, visit: (vdi: WalkedVdi) => Promise<void> | void): Promise<boolean> {
  let inUse: Buffer
  let deleted: Buffer
  try {
    inUse = await readVdis(conn)
    deleted = await readDelVdis(conn)
  } catch (error) {
    const failure = asSdError(error)
    ctx.printStderrLine(failure.isTransport ? failure.message : failure.label)
    return false
  }
  for (let byteAt = 0; byteAt < SD_NR_VDIS / 8; byteAt++) {
    if (inUse[byteAt] === 0) continue
    for (let bit = 0; bit < 8; bit++) {
      const vid = byteAt * 8 + bit
      if (!bitmapTest(inUse, vid) || bitmapTest(deleted, vid)) continue
      const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, INODE_HEADER_READ_SIZE, true)
      if (headerBytes === undefined) {
        ctx.printStderrLine('Failed to read inode header')
        continue
      }
      const header = decodeInodeHeader(headerBytes)
      if (header.name === '') continue
      await visit({ vid, header, headerBytes })
    }
  }
  return true
}

/** Owners of a VDI's data objects: those it owns itself and those it shares with its ancestors. */
export interface ObjectOwnership {
  own: number
  shared: number
  /** The vid owning data object `idx` (0 = unallocated), for the objects the VDI addresses. */
  ownerOf: (idx: number) => number
}

/** Reads the index entries of the VDI's object range (plain) or walks its B-tree (hyper volume). */
export async function readOwnership(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<ObjectOwnership | undefined> {
  const entries = vdi.header.storePolicy === HYPER_VOLUME_STORE_POLICY ? await readBtreeEntries(ctx, conn, vdi) : await readPlainEntries(ctx, conn, vdi)
  if (entries === undefined) {
    ctx.printStderrLine('Failed to read inode')
    return undefined
  }
  let own = 0
  let shared = 0
  for (const owner of entries.values()) {
    if (owner === 0) continue
    if (owner === vdi.vid) own++
    else shared++
  }
  return { own, shared, ownerOf: (idx) => entries.get(idx) ?? 0 }
}

export async function readPlainEntries(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<Map<number, number> | undefined> {
  const count = Math.min(dataObjectCount(vdi.header), MAX_DATA_OBJS)
  const entries = new Map<number, number>()
  if (count === 0) return entries
  const bytes = await readObject(ctx, conn, vidToVdiOid(vdi.vid), SD_INODE_HEADER_SIZE, count * 4, true)
  if (bytes === undefined) return undefined
  for (let idx = 0; idx < count; idx++) {
    const owner = bytes.readUInt32LE(idx * 4)
    if (owner !== 0) entries.set(idx, owner)
  }
  return entries
}

/** Leaf entries (idx → vid) of a hyper volume's B-tree: in the inode (depth 1) or in node objects (depth 2). */
export async function readBtreeEntries(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<Map<number, number> | undefined> {
  const entries = new Map<number, number>()
  const rootHeader = vdi.headerBytes.subarray(SD_INODE_HEADER_SIZE, SD_INODE_HEADER_SIZE + BTREE_HEADER_SIZE)
  if (rootHeader.readUInt16LE(0) !== BTREE_MAGIC) return entries
  const depth = rootHeader.readUInt16LE(2)
  const count = rootHeader.readUInt32LE(4)
  if (count === 0) return entries
  const inodeOid = vidToVdiOid(vdi.vid)
  const addLeaves = (bytes: Buffer, leafCount: number): void => {
    for (let i = 0; i < leafCount; i++) {
      entries.set(bytes.readUInt32LE(i * BTREE_LEAF_ENTRY_SIZE), bytes.readUInt32LE(i * BTREE_LEAF_ENTRY_SIZE + 4))
    }
  }
  if (depth === 1) {
    const leaves = await readObject(ctx, conn, inodeOid, SD_INODE_HEADER_SIZE + BTREE_HEADER_SIZE, count * BTREE_LEAF_ENTRY_SIZE, true)
    if (leaves === undefined) return undefined
    addLeaves(leaves, count)
    return entries
  }
  const pointers = await readObject(ctx, conn, inodeOid, SD_INODE_HEADER_SIZE + BTREE_HEADER_SIZE, count * BTREE_INDIRECT_ENTRY_SIZE, true)
  if (pointers === undefined) return undefined
  for (let i = 0; i < count; i++) {
    const nodeOid = pointers.readBigUInt64LE(i * BTREE_INDIRECT_ENTRY_SIZE + 8)
    const nodeHeader = await readObject(ctx, conn, nodeOid, 0, BTREE_HEADER_SIZE, true)
    if (nodeHeader === undefined) return undefined
    const leafCount = nodeHeader.readUInt32LE(4)
    if (leafCount === 0) continue
    const leaves = await readObject(ctx, conn, nodeOid, BTREE_HEADER_SIZE, leafCount * BTREE_LEAF_ENTRY_SIZE, true)
    if (leaves === undefined) return undefined
    addLeaves(leaves, leafCount)
  }
  return entries
}

// ---- vdi list ----------------------------------------------------------------------------------

const VDI_LIST_HEADER = '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift\n'

/** One `vdi list` row (spec §4.7), raw or aligned. */
function vdiListRow(vdi: WalkedVdi, ownership: ObjectOwnership, raw: boolean): string {
  const { header } = vdi
  const sizeOfObject = BigInt(objectSize(header))
  const snapshot = isSnapshot(header)
  const typeChar = snapshot ? 's' : isClone(header) ? 'c' : raw ? '=' : ' '
  const id = snapshot ? header.snapId : 0
  const size = formatSize(header.vdiSize, raw)
  const used = formatSize(BigInt(ownership.own) * sizeOfObject, raw)
  const shared = formatSize(BigInt(ownership.shared) * sizeOfObject, raw)
  const createdAtSeconds = Number(header.createTime >> 32n)
  const redundancy = formatRedundancy(header.nrCopies, header.copyPolicy)
  if (raw) {
    return (
      `${typeChar} ${escapeRawName(header.name)}` +
      sprintf(' %d %s %s %s %d %x %s %s %u\n', id, size, used, shared, createdAtSeconds, vdi.vid, redundancy, header.tag, header.blockSizeShift)
    )
  }
  return sprintf(
    '%c %-8s %5d %7s %7s %7s %s  %7x %6s %13s %3u\n',
    typeChar,
    header.name,
    id,
    size,
    used,
    shared,
    formatVdiDate(createdAtSeconds),
    vdi.vid,
    redundancy,
    header.tag,
    header.blockSizeShift,
  )
}

async function listVdis(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const nameFilter = ctx.args[0]
  const dataOid = ctx.opts.oid
  if (dataOid !== undefined && !isDataObj(dataOid)) {
    ctx.printStderrLine(`${oidToHex(dataOid)} is not a data object`)
    return EXIT_FAILURE
  }
  if (!ctx.opts.raw) ctx.printStdout(VDI_LIST_HEADER)
  const conn = dog.daemon(ctx)
  const walked = await forEachVdi(ctx, conn, async (vdi) => {
    if (nameFilter !== undefined && vdi.header.name !== nameFilter) return
    const ownership = await readOwnership(ctx, conn, vdi)
    if (ownership === undefined) return
    if (dataOid !== undefined && ownership.ownerOf(oidToIdx(dataOid)) !== oidToVid(dataOid)) return
    ctx.printStdout(vdiListRow(vdi, ownership, ctx.opts.raw))
  })
  return walked ? EXIT_SUCCESS : EXIT_SYSFAIL
}

// ---- vdi create --------------------------------------------------------------------------------

/** The object size a new VDI will get: -z, 4 MiB for -y, else the cluster's (CLUSTER_INFO). */
async function newVdiObjectSize(ctx: DogContext, conn: SheepConnection, name: string): Promise<bigint | number> {
  if (ctx.opts.blockSizeShift !== undefined) return 1n << BigInt(ctx.opts.blockSizeShift)
  if (ctx.opts.hyper) return HYPER_VOLUME_OBJECT_SIZE
  try {
    const info = await clusterInfo(conn)
    if (info.ctime === 0n) {
      ctx.printStderrLine(`Failed to create VDI ${name}: ${resultLabel(SD_RES_WAIT_FOR_FORMAT)}`)
      return EXIT_FAILURE
    }
    return 1n << BigInt(info.blockSizeShift)
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(failure.isTransport ? 'Fail to execute request' : failure.label)
    return EXIT_FAILURE
  }
}

async function createVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [name, sizeText] = ctx.args as [string, string | undefined]
  if (sizeText === undefined) throw new UsageError('Please specify the VDI size')
  const size = requireSize(sizeText)
  const conn = dog.daemon(ctx)
  const sizeOfObject = await newVdiObjectSize(ctx, conn, name)
  if (typeof sizeOfObject === 'number') return sizeOfObject
  const plainLimit = sizeOfObject * BigInt(MAX_DATA_OBJS)
  if (!ctx.opts.hyper && size > plainLimit) {
    throw new UsageError(
      `VDI size is larger than ${plainLimit} bytes, please use '-y' to create a hyper volume with size up to ` +
        `${SD_MAX_VDI_SIZE} bytes or use '-z' to create larger object size volume`,
    )
  }
  if (size > SD_MAX_VDI_SIZE) throw new UsageError('VDI size is too large')

  let vid: number
  try {
    ;({ vid } = await newVdi(conn, {
      name,
      vdiSize: size,
      copies: ctx.opts.redundancy?.copies ?? 0,
      copyPolicy: ctx.opts.redundancy?.copyPolicy ?? 0,
      storePolicy: ctx.opts.hyper ? HYPER_VOLUME_STORE_POLICY : 0,
      blockSizeShift: ctx.opts.blockSizeShift ?? 0,
    }))
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`Failed to create VDI ${name}: ${failure.label}`)
    return EXIT_FAILURE
  }
  if (ctx.opts.prealloc) {
    const status = await preallocate(ctx, conn, vid)
    if (status !== EXIT_SUCCESS) return status
  }
  if (ctx.opts.verbose) ctx.printStdout(ctx.opts.raw ? `${vid.toString(16)}\n` : `VDI ID of newly created VDI: ${vid.toString(16)}\n`)
  return EXIT_SUCCESS
}

/** -P: every data object created (zero-filled by the sheep) and recorded in the index. */
async function preallocate(ctx: DogContext, conn: SheepConnection, vid: number): Promise<number> {
  const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE, true)
  if (headerBytes === undefined) {
    ctx.printStderrLine('Failed to read a newly created VDI object')
    return EXIT_FAILURE
  }
  const header = decodeInodeHeader(headerBytes)
  const sizeOfObject = objectSize(header)
  const count = dataObjectCount(header)
  const showProgress = (done: number): void => {
    if (ctx.io.stdoutIsTty) ctx.printStdout(progressLine(BigInt(done) * BigInt(sizeOfObject), header.vdiSize, ctx.columns, false))
  }
  const writeOptions = { copies: header.nrCopies, copyPolicy: header.copyPolicy, direct: true }
  if (header.storePolicy === HYPER_VOLUME_STORE_POLICY) {
    // the index is a B-tree: let the VDI I/O layer create each object and insert it. Creating
    // fills the whole object with zeros, so writing its first piece is enough (objects reach
    // 2 GiB: a buffer of zeros as big as the object is not needed)
    const handle = await VdiHandle.openByVid(conn, vid)
    const zeros = Buffer.alloc(Math.min(sizeOfObject, OBJECT_CHUNK_BYTES))
    for (let idx = 0; idx < count; idx++) {
      showProgress(idx)
      try {
        await handle.write(idx * sizeOfObject, zeros.subarray(0, Math.min(zeros.length, handle.size - idx * sizeOfObject)))
      } catch (error) {
        const failure = asSdError(error)
        printTransportFailure(ctx, failure)
        ctx.printStderrLine(`Failed to write object ${oidToHex(vidToDataOid(vid, idx))}: ${failureLabel(failure)}`)
        return EXIT_FAILURE
      }
    }
    showProgress(count)
    return EXIT_SUCCESS
  }
  for (let idx = 0; idx < count; idx++) {
    showProgress(idx)
    if (!(await writeObject(ctx, conn, vidToDataOid(vid, idx), 0, Buffer.alloc(0), { ...writeOptions, create: true }))) return EXIT_FAILURE
    if (!(await writeObject(ctx, conn, vidToVdiOid(vid), indexOffset(idx), u32le(vid), writeOptions))) return EXIT_FAILURE
  }
  showProgress(count)
  return EXIT_SUCCESS
}

// ---- vdi delete --------------------------------------------------------------------------------

const sleepSeconds = (seconds: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

/**
 * Clears the non-zero index entries in batches (one WRITE_OBJ of the contiguous range per -B
 * entries, the last batch reaching the last object), sleeping -I seconds between batches.
 * With -m, stops after that many entries. False (after printing why) when a write failed.
 */
async function clearIndex(ctx: DogContext, conn: SheepConnection, vid: number, header: InodeHeader, index: Buffer): Promise<boolean> {
  const batchEntries = ctx.opts.nrBatchedReclamation ?? DEFAULT_DELETE_BATCH_ENTRIES
  const maxCleared = ctx.opts.maxReclaim ?? Number.POSITIVE_INFINITY
  const count = index.length / 4
  const inodeOid = vidToVdiOid(vid)
  const writeOptions = { copies: header.nrCopies, copyPolicy: header.copyPolicy, direct: true }
  const writeRange = async (first: number, last: number): Promise<boolean> => {
    const ok = await writeObject(ctx, conn, inodeOid, indexOffset(first), index.subarray(first * 4, (last + 1) * 4), writeOptions)
    if (!ok) ctx.printStderrLine(`failed to update inode for discarding objects: ${oidToHex(inodeOid)}`)
    return ok
  }
  let batchStart = 0
  let inBatch = 0
  let cleared = 0
  for (let idx = 0; idx < count && cleared < maxCleared; idx++) {
    if (index.readUInt32LE(idx * 4) === 0) continue
    index.writeUInt32LE(0, idx * 4)
    inBatch++
    cleared++
    if (inBatch === batchEntries || cleared === maxCleared) {
      if (!(await writeRange(batchStart, idx))) return false
      batchStart = idx + 1
      inBatch = 0
      if (ctx.opts.reclamationInterval !== undefined && cleared < maxCleared) await sleepSeconds(ctx.opts.reclamationInterval)
    }
  }
  return inBatch === 0 || writeRange(batchStart, count - 1)
}

async function deleteVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  return removeVdi(ctx, dog.daemon(ctx), ctx.args[0] as string, selectorOf(ctx))
}

/**
 * Deletes the VDI or snapshot `name` + `selector` as `vdi delete` does (index cleared in batches
 * per -B/-I/-m, then DEL_VDI): EXIT_SUCCESS, or VDI_DELETE_FAILED after printing why.
 */
export async function removeVdi(ctx: DogContext, conn: SheepConnection, name: string, selector: SnapshotSelector): Promise<number> {
  const vid = await lookUpVdi(ctx, conn, name, selector)
  if (vid === undefined) return VDI_DELETE_FAILED
  const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE, false)
  if (headerBytes === undefined) return VDI_DELETE_FAILED
  const header = decodeInodeHeader(headerBytes)
  if (header.storePolicy !== HYPER_VOLUME_STORE_POLICY) {
    // hyper volumes are reclaimed by the sheep while it walks their B-tree
    const count = Math.min(dataObjectCount(header), MAX_DATA_OBJS)
    if (count > 0) {
      const index = await readObject(ctx, conn, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, count * 4, false)
      if (index === undefined) return VDI_DELETE_FAILED
      if (!(await clearIndex(ctx, conn, vid, header, index))) return VDI_DELETE_FAILED
    }
    if (ctx.opts.maxReclaim !== undefined) return EXIT_SUCCESS
  }
  try {
    await delVdi(conn, name, selector)
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to delete ${name}: ${failureLabel(failure)}`)
    return VDI_DELETE_FAILED
  }
  return EXIT_SUCCESS
}

// ---- vdi resize --------------------------------------------------------------------------------

async function resizeVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [name, sizeText] = ctx.args as [string, string | undefined]
  if (sizeText === undefined) throw new UsageError('Please specify the new size for the VDI')
  const newSize = requireSize(sizeText)
  const conn = dog.daemon(ctx)
  const selector = { snapid: 0, tag: '' }
  const vid = await lookUpVdi(ctx, conn, name, selector)
  if (vid === undefined) return EXIT_FAILURE
  const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE, true)
  if (headerBytes === undefined) {
    ctx.printStderrLine(inodeReadFailureLine(name, selector))
    return EXIT_FAILURE
  }
  const header = decodeInodeHeader(headerBytes)
  const maxSize = header.storePolicy === HYPER_VOLUME_STORE_POLICY ? SD_MAX_VDI_SIZE : BigInt(MAX_DATA_OBJS) * BigInt(objectSize(header))
  if (newSize > maxSize) throw new UsageError(`New VDI size is too large. This volume's max size is ${maxSize}`)
  if (newSize < header.vdiSize) throw new UsageError('Shrinking VDIs is not implemented')
  headerBytes.writeBigUInt64LE(newSize, 536)
  const written = await writeObject(ctx, conn, vidToVdiOid(vid), 0, headerBytes.subarray(0, SD_INODE_HEADER_SIZE), {
    copies: header.nrCopies,
    copyPolicy: header.copyPolicy,
    direct: true,
  })
  if (!written) {
    ctx.printStderrLine('Failed to update an inode header')
    return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}

// ---- vdi read / write --------------------------------------------------------------------------

/** A progress bar on stderr for long transfers: only on a terminal, and only across objects. */
function transferProgress(
  ctx: DogContext,
  handle: VdiHandle,
  offset: number,
  length: number,
): {
  update: (done: number) => void
  stop: () => void
} {
  const stderr = ctx.io.stderr as NodeJS.WritableStream & { isTTY?: boolean }
  const spansObjects = length > 0 && Math.floor(offset / handle.objectSize) !== Math.floor((offset + length - 1) / handle.objectSize)
  if (stderr.isTTY !== true || !spansObjects) return { update: () => undefined, stop: () => undefined }
  const bar = new cliProgress.SingleBar({
    stream: stderr,
    format: '{percentage} % [{bar}] {doneSize} / {totalSize}',
    barCompleteChar: '=',
    barIncompleteChar: ' ',
    hideCursor: null,
  })
  bar.start(length, 0, { doneSize: formatSize(0, false), totalSize: formatSize(length, false) })
  return {
    update: (done) => bar.update(done, { doneSize: formatSize(done, false) }),
    stop: () => bar.stop(),
  }
}

/** Writes to stdout, waiting while a pipe is full. */
function writeStdout(ctx: DogContext, chunk: Buffer): Promise<void> {
  const stdout = ctx.io.stdout as NodeJS.WritableStream
  if (stdout.write(chunk) || typeof stdout.once !== 'function') return Promise.resolve()
  return new Promise((resolve) => stdout.once('drain', () => resolve()))
}

/** `[offset [len]]` of read and write: offset 0 and "to the end" by default. */
function rangeArguments(ctx: DogContext): { offset: number; length: number } {
  const [, offsetText, lengthText] = ctx.args
  const offset = offsetText === undefined ? 0 : sizeArgument(offsetText)
  const length = lengthText === undefined ? Number.POSITIVE_INFINITY : sizeArgument(lengthText)
  return { offset, length }
}

/** Looks a VDI up and opens it for I/O, with the original's messages on failure. */
async function openVdi(ctx: DogContext, conn: SheepConnection, name: string, selector: SnapshotSelector): Promise<VdiHandle | undefined> {
  const vid = await lookUpVdi(ctx, conn, name, selector)
  if (vid === undefined) return undefined
  try {
    return await VdiHandle.openByVid(conn, vid)
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(inodeReadFailureLine(name, selector))
    return undefined
  }
}

async function readVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  const { offset, length } = rangeArguments(ctx)
  const conn = dog.daemon(ctx)
  const handle = await openVdi(ctx, conn, name, selectorOf(ctx))
  if (handle === undefined) return EXIT_FAILURE
  if (offset > handle.size) {
    ctx.printStderrLine('Read offset is beyond the end of the VDI')
    return EXIT_FAILURE
  }
  const total = Math.min(length, handle.size - offset)
  const progress = transferProgress(ctx, handle, offset, total)
  try {
    await handle.readRange(offset, total, (chunk) => writeStdout(ctx, chunk), { onProgress: progress.update })
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine('Failed to read VDI')
    return EXIT_FAILURE
  } finally {
    progress.stop()
  }
  return EXIT_SUCCESS
}

/** Errors of the stdin stream, told apart from request failures. */
class StdinError extends Error {}

async function* stdinChunks(ctx: DogContext): AsyncGenerator<Uint8Array, void, undefined> {
  const stdin = ctx.io.stdin
  if (stdin === undefined) return
  try {
    for await (const chunk of stdin) yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk
  } catch (error) {
    throw new StdinError((error as NodeJS.ErrnoException).code ?? String(error))
  }
}

async function writeVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  const { offset, length } = rangeArguments(ctx)
  const conn = dog.bulkDaemon(ctx)
  const handle = await openVdi(ctx, conn, name, { snapid: 0, tag: '' })
  if (handle === undefined) return EXIT_FAILURE
  if (offset > handle.size) {
    ctx.printStderrLine('Write offset is beyond the end of the VDI')
    return EXIT_FAILURE
  }
  const total = Math.min(length, handle.size - offset)
  const progress = transferProgress(ctx, handle, offset, total)
  try {
    await handle.writeStream(offset, stdinChunks(ctx), { length: total, padFinalChunk: true, onProgress: progress.update })
  } catch (error) {
    if (error instanceof StdinError) {
      ctx.printStderrLine(`Failed to read from stdin: ${error.message}`)
      return EXIT_SYSFAIL
    }
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine('Failed to write VDI')
    return EXIT_FAILURE
  } finally {
    progress.stop()
  }
  return EXIT_SUCCESS
}

// ---- the table ---------------------------------------------------------------------------------

/**
 * The vdi subcommands in the original's order, with their argument specs and option letters
 * (spec §3.1). `unsupported` runs those that come in later issues.
 */
export function vdiCommand(dog: DogRuntime): DogCommand {
  const run = (handler: (ctx: DogContext, dog: DogRuntime) => Promise<number>) => (ctx: DogContext) => handler(ctx, dog)
  const later = dog.unsupported
  const objectSubcommands: DogSubcommand[] = [
    { name: 'location', args: '<vdiname>', description: 'show object location information', minArgs: 1, needsNodeList: true, handler: run(showObjectLocation) },
    { name: 'map', args: '<vdiname>', description: 'show object map information', minArgs: 1, handler: run(showObjectMap) },
    { name: 'dump-inode', args: '<inode file>', description: 'dump inode information', minArgs: 1, handler: dumpInodeFile },
  ]
  const lockSubcommands: DogSubcommand[] = [
    { name: 'list', description: 'list locked VDIs', handler: run(listLockedVdis) },
    { name: 'unlock', args: '<vdiname>', description: 'unlock locked VDI forcibly', minArgs: 1, handler: run(unlockVdi) },
  ]
  return {
    name: 'vdi',
    subcommands: [
      {
        name: 'check',
        args: '<vdiname>',
        options: 'seaphT',
        description: "check and repair image's consistency",
        needsNodeList: true,
        minArgs: 1,
        handler: run(checkVdi),
      },
      {
        name: 'create',
        args: '<vdiname> <size>',
        options: 'PycaphrvzT',
        description: 'create an image',
        needsNodeList: true,
        minArgs: 1,
        handler: run(createVdi),
      },
      { name: 'snapshot', args: '<vdiname>', options: 'saphrvTR', description: 'create a snapshot', minArgs: 1, handler: run(snapshotVdi) },
      { name: 'clone', args: '<src vdi> <dst vdi>', options: 'sPnaphrvT', description: 'clone an image', minArgs: 1, handler: run(cloneVdi) },
      { name: 'delete', args: '<vdiname>', options: 'saphTBIm', description: 'delete an image', minArgs: 1, handler: run(deleteVdi) },
      { name: 'rollback', args: '<vdiname>', options: 'saphfrvTBI', description: 'rollback to a snapshot', minArgs: 1, handler: run(rollbackVdi) },
      { name: 'list', shortcut: 'l', args: '[vdiname]', options: 'aprhoT', description: 'list images', handler: run(listVdis) },
      { name: 'tree', options: 'aphT', description: 'show images in tree view format', handler: run(showVdiTree) },
      { name: 'graph', options: 'aphT', description: 'show images in Graphviz dot format', handler: run(showVdiGraph) },
      { name: 'object', args: '<vdiname>', options: 'isaphT', description: 'show object information in the image', subcommands: objectSubcommands },
      {
        name: 'track',
        args: '<vdiname>',
        options: 'isaphoT',
        description: 'show the object epoch trace in the image',
        needsNodeList: true,
        minArgs: 1,
        handler: run(trackVdiObject),
      },
      { name: 'setattr', args: '<vdiname> <key> [value]', options: 'dxaphT', description: 'set a VDI attribute', minArgs: 1, handler: run(setVdiAttr) },
      { name: 'getattr', args: '<vdiname> <key>', options: 'aphT', description: 'get a VDI attribute', minArgs: 1, handler: run(getVdiAttrValue) },
      { name: 'resize', args: '<vdiname> <new size>', options: 'aphT', description: 'resize an image', minArgs: 1, handler: run(resizeVdi) },
      { name: 'read', args: '<vdiname> [<offset> [<len>]]', options: 'saphT', description: 'read data from an image', minArgs: 1, handler: run(readVdi) },
      { name: 'write', args: '<vdiname> [<offset> [<len>]]', options: 'apwhT', description: 'write data to an image', minArgs: 1, handler: run(writeVdi) },
      {
        name: 'backup',
        args: '<vdiname>',
        options: 'sFaphT',
        description: 'create an incremental backup between two snapshots and outputs to STDOUT',
        needsNodeList: true,
        minArgs: 1,
        handler: run(backupVdi),
      },
      {
        name: 'restore',
        args: '<vdiname>',
        options: 'saphTBI',
        description: 'restore snapshot images from a backup provided by STDIN',
        needsNodeList: true,
        minArgs: 1,
        handler: run(restoreVdi),
      },
      {
        name: 'alter-copy',
        args: '<vdiname>',
        options: 'caphTf',
        description: "set the vdi's redundancy level",
        needsNodeList: true,
        minArgs: 1,
        handler: run(alterVdiCopies),
      },
      { name: 'lock', options: 'saphT', description: "See 'dog vdi lock' for more information", subcommands: lockSubcommands },
    ],
  }
}
