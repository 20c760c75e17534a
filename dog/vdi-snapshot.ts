// `dog vdi snapshot`, `vdi clone` and `vdi rollback` (cli-and-formats §4.2, §4.3, §4.5): the
// tag write and NEW_VDI(snapid=1) that turn the working VDI into a snapshot, clones sharing a
// snapshot's objects (or copying them with -n / creating them with -P), and rollback as
// "delete the working VDI, clone the snapshot under the same name".
import { asSdError, failureLabel, inodeReadFailureLine, lookUpVdi, printTransportFailure, readObject, removeVdi, selectorOf, writeObject } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, UsageError, type DogContext } from './cli.js'
import { snapshotIdOf, snapshotTagOf } from './parsers.js'
import { confirm } from './prompt.js'
import type { DogRuntime } from './runtime.js'
import { isAllZero } from '../lib/bytes.js'
import type { SheepConnection } from '../lib/client.js'
import { progressLine } from '../lib/format.js'
import { dataObjectCount, decodeInodeHeader, indexOffset, isSnapshot, objectSize, u32le, type InodeHeader } from '../lib/inode.js'
import { cStringField } from '../lib/layout.js'
import { MAX_DATA_OBJS, SD_INODE_HEADER_SIZE, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES, SD_MAX_VDI_TAG_LEN, SD_RES_NO_TAG, SD_RES_NO_VDI } from '../lib/proto.js'
import { getVdiInfo, newVdi, type SnapshotSelector } from '../lib/sheep-api.js'

/** Offset of the tag field in the inode (wire-protocol.md §12.1). */
const INODE_TAG_OFFSET = 256
const WORKING_VDI: SnapshotSelector = { snapid: 0, tag: '' }
const ROLLBACK_PROMPT = 'This operation discards any changes made since the previous\nsnapshot was taken.  Continue? [yes/no]: '

/** Reads the first 4664 bytes of `vid`'s inode, printing the original's line when it fails. */
async function readHeader(ctx: DogContext, conn: SheepConnection, vid: number, name: string, selector: SnapshotSelector): Promise<InodeHeader | undefined> {
  const bytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE, true)
  if (bytes === undefined) {
    ctx.printStderrLine(inodeReadFailureLine(name, selector))
    return undefined
  }
  return decodeInodeHeader(bytes)
}

/** The data_vdi_id entries of the VDI's object range (plain index). */
async function readIndex(ctx: DogContext, conn: SheepConnection, vid: number, header: InodeHeader): Promise<Uint32Array | undefined> {
  const count = Math.min(dataObjectCount(header), MAX_DATA_OBJS)
  if (count === 0) return new Uint32Array(0)
  const bytes = await readObject(ctx, conn, vidToVdiOid(vid), SD_INODE_HEADER_SIZE, count * 4, true)
  if (bytes === undefined) return undefined
  const index = new Uint32Array(count)
  for (let idx = 0; idx < count; idx++) index[idx] = bytes.readUInt32LE(idx * 4)
  return index
}

/** NEW_VDI with the original's failure line; the new (working) vid, or an exit status. */
async function createVdi(
  ctx: DogContext,
  conn: SheepConnection,
  name: string,
  header: InodeHeader,
  baseVid: number,
  snapshot: boolean,
): Promise<{ vid: number } | { status: number }> {
  try {
    const { vid } = await newVdi(conn, {
      name,
      vdiSize: header.vdiSize,
      baseVdiId: baseVid,
      snapid: snapshot ? 1 : 0,
      copies: header.nrCopies,
      copyPolicy: header.copyPolicy,
      storePolicy: header.storePolicy,
      blockSizeShift: header.blockSizeShift,
    })
    return { vid }
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return { status: EXIT_SYSFAIL }
    }
    ctx.printStderrLine(`Failed to create VDI ${name}: ${failure.label}`)
    return { status: EXIT_FAILURE }
  }
}

// ---- vdi snapshot ------------------------------------------------------------------------------

/** The working VDI to snapshot, unless a snapshot with the requested tag exists already. */
async function workingVdiToSnapshot(
  ctx: DogContext,
  conn: SheepConnection,
  name: string,
  tag: string,
): Promise<{ vid: number; header: InodeHeader } | { status: number }> {
  let taggedVid: number | undefined
  try {
    taggedVid = (await getVdiInfo(conn, name, { tag })).vid
  } catch (error) {
    const failure = asSdError(error)
    if (failure.code !== SD_RES_NO_TAG) {
      printTransportFailure(ctx, failure)
      ctx.printStderrLine(`Failed to create snapshot for ${name}: ${failureLabel(failure)}`)
      return { status: EXIT_FAILURE }
    }
  }
  if (taggedVid !== undefined) {
    // without a tag the lookup answers the working VDI; with one, a snapshot that has it
    const header = await readHeader(ctx, conn, taggedVid, name, WORKING_VDI)
    if (header === undefined) return { status: EXIT_FAILURE }
    if (isSnapshot(header)) {
      ctx.printStderrLine(`Failed to create snapshot for ${name}, maybe snapshot id (0) or tag (${tag}) is existed`)
      return { status: EXIT_FAILURE }
    }
    return { vid: taggedVid, header }
  }
  const vid = await lookUpVdi(ctx, conn, name, WORKING_VDI)
  if (vid === undefined) return { status: EXIT_FAILURE }
  const header = await readHeader(ctx, conn, vid, name, WORKING_VDI)
  return header === undefined ? { status: EXIT_FAILURE } : { vid, header }
}

export async function snapshotVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  if (snapshotIdOf(ctx.opts.snapshot) !== 0) throw new UsageError('Please specify a non-integer value for a snapshot tag name')
  const tag = snapshotTagOf(ctx.opts.snapshot)
  const conn = dog.daemon(ctx)
  const working = await workingVdiToSnapshot(ctx, conn, name, tag)
  if ('status' in working) return working.status
  const { vid, header } = working
  if (header.storePolicy !== 0) {
    ctx.printStderrLine('creating a snapshot of hypervolume is not supported')
    return EXIT_FAILURE
  }
  if (ctx.opts.reduceIdenticalSnapshots) {
    const index = await readIndex(ctx, conn, vid, header)
    if (index === undefined) return EXIT_FAILURE
    if (!index.includes(vid)) {
      if (ctx.opts.verbose) ctx.printStderrLine(`VDI ${name} doesn't have its own objects, skipping creation of snapshot`)
      return EXIT_SUCCESS
    }
  }
  const tagWritten = await writeObject(ctx, conn, vidToVdiOid(vid), INODE_TAG_OFFSET, cStringField(tag, SD_MAX_VDI_TAG_LEN), {
    copies: header.nrCopies,
    copyPolicy: header.copyPolicy,
    direct: false,
  })
  if (!tagWritten) return EXIT_FAILURE
  const created = await createVdi(ctx, conn, name, header, vid, true)
  if ('status' in created) return created.status
  if (ctx.opts.verbose) {
    const newVid = created.vid.toString(16)
    const snapshotVid = vid.toString(16)
    ctx.printStdout(ctx.opts.raw ? `${newVid} ${snapshotVid}\n` : `new VID of original VDI: ${newVid}, VDI ID of newly created snapshot: ${snapshotVid}\n`)
  }
  return EXIT_SUCCESS
}

// ---- vdi clone ---------------------------------------------------------------------------------

/**
 * Creates data object `idx` of `vid` — zero-filled, or a copy of the object `source` — and
 * records it in the index. The copy moves a piece of at most OBJECT_CHUNK_BYTES at a time
 * (objects reach 2 GiB, one request carries 64 MiB): the first piece creates the object, later
 * ones are written over it unless they are all zeros, which the create left already.
 */
async function createOwnObject(
  ctx: DogContext,
  conn: SheepConnection,
  vid: number,
  idx: number,
  source: bigint | undefined,
  header: InodeHeader,
): Promise<boolean> {
  const options = { copies: header.nrCopies, copyPolicy: header.copyPolicy, direct: true }
  const oid = vidToDataOid(vid, idx)
  const size = objectSize(header)
  if (source === undefined && !(await writeObject(ctx, conn, oid, 0, Buffer.alloc(0), { ...options, create: true }))) return false
  for (let at = 0; source !== undefined && at < size; at += OBJECT_CHUNK_BYTES) {
    const piece = await readObject(ctx, conn, source, at, Math.min(OBJECT_CHUNK_BYTES, size - at), true)
    if (piece === undefined) return false
    const written =
      at === 0
        ? await writeObject(ctx, conn, oid, 0, piece, { ...options, create: true })
        : isAllZero(piece) || (await writeObject(ctx, conn, oid, at, piece, options))
    if (!written) return false
  }
  return writeObject(ctx, conn, vidToVdiOid(vid), indexOffset(idx), u32le(vid), options)
}

/**
 * -n / -P: gives the clone objects of its own: copies of the snapshot's allocated objects, and
 * (-P) zero-filled objects for the unallocated ones.
 */
async function fillClone(ctx: DogContext, conn: SheepConnection, source: { vid: number; header: InodeHeader }, cloneVid: number): Promise<number> {
  const index = await readIndex(ctx, conn, source.vid, source.header)
  if (index === undefined) return EXIT_FAILURE
  const sizeOfObject = objectSize(source.header)
  const showProgress = (idx: number): void => {
    if (ctx.io.stdoutIsTty) ctx.printStdout(progressLine(BigInt(idx) * BigInt(sizeOfObject), source.header.vdiSize, ctx.columns, false))
  }
  for (let idx = 0; idx < index.length; idx++) {
    showProgress(idx)
    const owner = index[idx] as number
    if (owner === 0 && !ctx.opts.prealloc) continue
    const from = owner === 0 ? undefined : vidToDataOid(owner, idx)
    if (!(await createOwnObject(ctx, conn, cloneVid, idx, from, source.header))) return EXIT_FAILURE
  }
  showProgress(index.length)
  return EXIT_SUCCESS
}

export async function cloneVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [sourceName, cloneName] = ctx.args as [string, string | undefined]
  if (cloneName === undefined) throw new UsageError('Destination VDI name must be specified')
  if (ctx.opts.snapshot === undefined) throw new UsageError('Only snapshot VDIs can be cloned', "Please specify the '-s' option")
  const selector = selectorOf(ctx)
  const conn = dog.daemon(ctx)
  const sourceVid = await lookUpVdi(ctx, conn, sourceName, selector)
  if (sourceVid === undefined) return EXIT_FAILURE
  const header = await readHeader(ctx, conn, sourceVid, sourceName, selector)
  if (header === undefined) return EXIT_FAILURE
  const created = await createVdi(ctx, conn, cloneName, header, ctx.opts.noShare ? 0 : sourceVid, false)
  if ('status' in created) return created.status
  if (ctx.opts.prealloc || ctx.opts.noShare) {
    const status = await fillClone(ctx, conn, { vid: sourceVid, header }, created.vid)
    if (status !== EXIT_SUCCESS) return status
  }
  if (ctx.opts.verbose) {
    ctx.printStdout(ctx.opts.raw ? `${created.vid.toString(16)}\n` : `VDI ID of newly created clone: ${created.vid.toString(16)}\n`)
  }
  return EXIT_SUCCESS
}

// ---- vdi rollback ------------------------------------------------------------------------------

/** Whether `name` still has a working VDI (a rollback may also restore one that was deleted). */
async function hasWorkingVdi(ctx: DogContext, conn: SheepConnection, name: string): Promise<boolean | undefined> {
  try {
    await getVdiInfo(conn, name, WORKING_VDI)
    return true
  } catch (error) {
    const failure = asSdError(error)
    if (failure.code === SD_RES_NO_VDI) return false
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to open VDI ${name} (snapshot id: 0 snapshot tag: ): ${failureLabel(failure)}`)
    return undefined
  }
}

export async function rollbackVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  if (ctx.opts.snapshot === undefined) throw new UsageError("Please specify the '-s' option")
  const selector = selectorOf(ctx)
  const conn = dog.daemon(ctx)
  const snapshotVid = await lookUpVdi(ctx, conn, name, selector)
  if (snapshotVid === undefined) return EXIT_FAILURE
  const header = await readHeader(ctx, conn, snapshotVid, name, selector)
  if (header === undefined) return EXIT_FAILURE
  if (!ctx.opts.force && !(await confirm(ROLLBACK_PROMPT, ctx.io))) return EXIT_SUCCESS
  const working = await hasWorkingVdi(ctx, conn, name)
  if (working === undefined) return EXIT_FAILURE
  if (working && (await removeVdi(ctx, conn, name, WORKING_VDI)) !== EXIT_SUCCESS) {
    ctx.printStderrLine('Failed to delete the current state')
    return EXIT_FAILURE
  }
  const created = await createVdi(ctx, conn, name, header, snapshotVid, false)
  if ('status' in created) return created.status
  if (ctx.opts.verbose) {
    ctx.printStdout(ctx.opts.raw ? `${created.vid.toString(16)}\n` : `New VDI ID of rollbacked VDI: ${created.vid.toString(16)}\n`)
  }
  return EXIT_SUCCESS
}
