// What dog's command groups share (the original's dog/common.c): request helpers that print the
// original's failure lines, the VDI walk (READ_VDIS, READ_DEL_VDIS, then each inode header) with
// the ownership of each VDI's objects, and removing a VDI. The command files import this module;
// it imports none of them.
import type { SheepConnection } from '../lib/client.js'
import { SdError } from '../lib/errors.js'
import { dataObjectCount, decodeInodeHeader, indexOffset, type InodeHeader } from '../lib/inode.js'
import {
  BTREE_HEADER_SIZE,
  BTREE_ROOT_AT,
  type BtreeHeader,
  collectIndexEntries,
  decodeBtreeHeader,
  HYPER_VOLUME_STORE_POLICY,
  type IndexNodeReader,
} from '../lib/inode-index.js'
import { MAX_DATA_OBJS, oidToHex, SD_INODE_HEADER_SIZE, vidToVdiOid } from '../lib/oid.js'
import { resultLabel, SD_NR_VDIS, SD_RES_EIO, SD_RES_NO_SUPPORT } from '../lib/proto.js'
import {
  bitmapTest,
  createAndWriteObj,
  delVdi,
  getVdiInfo,
  readDelVdis,
  readObj,
  readVdis,
  setLogLevel,
  writeObj,
  type SnapshotSelector,
} from '../lib/sheep-api.js'
import { EXIT_FAILURE, EXIT_SUCCESS, type DogContext } from './cli.js'
import { snapshotIdOf, snapshotTagOf } from './parsers.js'

/** What VDI walks read of each inode: the header and the B-tree index header after it (8 bytes). */
export const INODE_HEADER_READ_SIZE = BTREE_ROOT_AT + BTREE_HEADER_SIZE
/** `vdi delete` clears this many non-zero index entries per inode write unless -B says otherwise. */
const DEFAULT_DELETE_BATCH_ENTRIES = 128
/**
 * The original's `vdi delete` exits 0 even when the deletion failed (a quirk); this one exits 1
 * on failure so scripts can tell (documented in dog.8).
 */
const VDI_DELETE_FAILED = EXIT_FAILURE
// re-exported: the command files take it from here
export { HYPER_VOLUME_STORE_POLICY }

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

/** The VDI's index entries, idx → vid: of its object range (plain), or its whole B-tree (hyper volume). */
export function readIndexEntries(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<Map<number, number> | undefined> {
  return vdi.header.storePolicy === HYPER_VOLUME_STORE_POLICY ? readBtreeEntries(ctx, conn, vdi) : readPlainEntries(ctx, conn, vdi)
}

/** Reads the index entries of the VDI's object range (plain) or walks its B-tree (hyper volume). */
export async function readOwnership(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<ObjectOwnership | undefined> {
  const entries = await readIndexEntries(ctx, conn, vdi)
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

async function readPlainEntries(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<Map<number, number> | undefined> {
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
function readBtreeEntries(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<Map<number, number> | undefined> {
  return readIndexNodes(ctx, conn, (io) => collectIndexEntries(io, vidToVdiOid(vdi.vid), btreeRootOf(vdi)))
}

/** The header of a hyper volume's B-tree root, read with the inode header by the VDI walk. */
export function btreeRootOf(vdi: WalkedVdi): BtreeHeader {
  return decodeBtreeHeader(vdi.headerBytes, BTREE_ROOT_AT)
}

/** Thrown by readIndexNodes's reader once readObject has printed why a read failed: it ends the walk. */
class ReportedReadFailure extends Error {}

/**
 * Runs a read of a hyper volume's B-tree (lib/inode-index.ts) over READ_OBJ with the original's
 * failure lines, short answers zero-padded: its result, or undefined once a read has failed.
 */
export async function readIndexNodes<T>(ctx: DogContext, conn: SheepConnection, read: (io: IndexNodeReader) => Promise<T>): Promise<T | undefined> {
  const io: IndexNodeReader = {
    read: async (oid, offset, length) => {
      const bytes = await readObject(ctx, conn, oid, offset, length, true)
      if (bytes === undefined) throw new ReportedReadFailure()
      return bytes
    },
  }
  try {
    return await read(io)
  } catch (error) {
    if (error instanceof ReportedReadFailure) return undefined
    throw error
  }
}

// ---- removing a VDI (vdi delete, and the snapshot/backup commands that drop one) ------------

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

/** A log level no sheep accepts: SET_LOGLEVEL with it changes nothing. */
const INVALID_LOG_LEVEL = -1

/**
 * Whether the sheep accepts admin requests from this dog (`sheep --admin-from`, our own option):
 * the index must not be cleared for a DEL_VDI that will be refused, which would leave the VDI
 * with its data unlinked. Asked with SET_LOGLEVEL of an invalid level, an admin request that
 * changes nothing: refused, it is answered NO_SUPPORT; accepted, INVALID_PARMS (the original's
 * sheep answers so too).
 */
async function mayDelete(conn: SheepConnection): Promise<boolean> {
  try {
    await setLogLevel(conn, INVALID_LOG_LEVEL)
    return true
  } catch (error) {
    return !(error instanceof SdError && error.code === SD_RES_NO_SUPPORT)
  }
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
      if (!(await mayDelete(conn))) {
        ctx.printStderrLine(`Failed to delete ${name}: ${resultLabel(SD_RES_NO_SUPPORT)}`)
        return VDI_DELETE_FAILED
      }
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

/**
 * A request that answers nothing (the original's send_light_req): false after printing why —
 * the connect failure, or `Response's result: <label>`.
 */
export async function lightRequest(ctx: DogContext, request: () => Promise<unknown>): Promise<boolean> {
  try {
    await request()
    return true
  } catch (error) {
    const failure = asSdError(error)
    ctx.printStderrLine(failure.isTransport ? failure.message : `Response's result: ${failure.label}`)
    return false
  }
}
