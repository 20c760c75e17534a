// `dog vdi`: its option table and subcommand table (the usage texts come from both), and the
// handlers of create, delete, list, read, write and resize (cli-and-formats §4.1, §4.4, §4.6,
// §4.7, §4.13); the other handlers are in the dog/vdi-*.ts files. What the command groups share
// (request helpers, the VDI walk, removing a VDI) is in dog/common.ts.
import {
  HYPER_VOLUME_STORE_POLICY,
  type ObjectOwnership,
  type WalkedVdi,
  asSdError,
  failureLabel,
  forEachVdi,
  inodeReadFailureLine,
  lookUpVdi,
  printTransportFailure,
  readObject,
  readOwnership,
  removeVdi,
  selectorOf,
  writeObject,
} from './common.js'
import cliProgress from 'cli-progress'

import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, UsageError, type DogCommand, type DogContext, type DogOptionSpec, type DogSubcommand } from './cli.js'
import { applyBlockSizeShift, applyRedundancy, reject, setFlag } from './options.js'
import { formatRedundancy, parseCLong, parseIndex, parseOid, parseSnapshotSelector, requireSize } from './parsers.js'
import type { DogRuntime } from './runtime.js'
import type { RequestOptions, SheepConnection } from '../lib/client.js'
import { escapeRawName, formatSize, formatVdiDate, progressLine, sprintf } from '../lib/format.js'
import { dataObjectCount, decodeInodeHeader, indexOffset, isClone, isSnapshot, objectSize, u32le } from '../lib/inode.js'
import { isDataObj, MAX_DATA_OBJS, oidToHex, oidToIdx, oidToVid, SD_INODE_HEADER_SIZE, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import {
  OBJECT_CHUNK_BYTES,
  resultLabel,
  SD_MAX_VDI_SIZE,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_SUCCESS,
  SD_RES_WAIT_FOR_FORMAT,
} from '../lib/proto.js'
import { clusterInfo, newVdi, type SnapshotSelector } from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { getVdiAttrValue, setVdiAttr } from './vdi-attr.js'
import { listLockedVdis, unlockVdi } from './vdi-lock.js'
import { dumpInodeFile, showObjectLocation, showObjectMap, trackVdiObject } from './vdi-object.js'
import { cloneVdi, rollbackVdi, snapshotVdi } from './vdi-snapshot.js'
import { showVdiGraph, showVdiTree } from './vdi-tree.js'
import { alterVdiCopies } from './vdi-alter-copy.js'
import { backupVdi, restoreVdi } from './vdi-backup.js'
import { checkVdi } from './vdi-check.js'

/** Object size of hyper volumes created with -y (4 MiB). */
const HYPER_VOLUME_OBJECT_SIZE = 1n << 22n

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
        const at = BigInt(idx) * BigInt(sizeOfObject)
        const rest = handle.sizeBytes - at
        await handle.write(at, rest < BigInt(zeros.length) ? zeros.subarray(0, Number(rest)) : zeros)
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

async function deleteVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  return removeVdi(ctx, dog.daemon(ctx), ctx.args[0] as string, selectorOf(ctx))
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
  offset: bigint,
  total: bigint,
): {
  update: (done: number) => void
  stop: () => void
} {
  const stderr = ctx.io.stderr as NodeJS.WritableStream & { isTTY?: boolean }
  const objectSize = BigInt(handle.objectSize)
  const spansObjects = total > 0n && offset / objectSize !== (offset + total - 1n) / objectSize
  if (stderr.isTTY !== true || !spansObjects) return { update: () => undefined, stop: () => undefined }
  const length = Number(total)
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

/**
 * `[offset [len]]` of read and write (u64 byte counts: a hyper volume is bigger than a number
 * counts exactly): offset 0 and "to the end" by default.
 */
function rangeArguments(ctx: DogContext): { offset: bigint; length: bigint | undefined } {
  const [, offsetText, lengthText] = ctx.args
  const offset = offsetText === undefined ? 0n : requireSize(offsetText)
  const length = lengthText === undefined ? undefined : requireSize(lengthText)
  return { offset, length }
}

/** min(length, the bytes from offset to the end): what read and write transfer. */
function rangeTotal(handle: VdiHandle, offset: bigint, length: bigint | undefined): bigint {
  const rest = handle.sizeBytes - offset
  return length === undefined || length > rest ? rest : length
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
  if (offset > handle.sizeBytes) {
    ctx.printStderrLine('Read offset is beyond the end of the VDI')
    return EXIT_FAILURE
  }
  const total = rangeTotal(handle, offset, length)
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

/** The object writes of `vdi write`, whose refusals the original's dog_write_object reports. */
const OBJECT_WRITE_OPS: ReadonlySet<number> = new Set([SD_OP_WRITE_OBJ, SD_OP_CREATE_AND_WRITE_OBJ])

/** `conn` for the VDI I/O layer, noting the first object write the sheep refuses (its oid and result). */
function notingRefusedWrites(conn: SheepConnection, refused: { first?: { oid: bigint; result: number } }): SheepConnection {
  return new Proxy(conn, {
    get(target, property) {
      if (property !== 'request') {
        const value: unknown = Reflect.get(target, property, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
      return async (opts: RequestOptions) => {
        const reply = await target.request(opts)
        if (reply.rsp.result !== SD_RES_SUCCESS && OBJECT_WRITE_OPS.has(opts.opcode)) {
          refused.first ??= { oid: (opts.fields as { oid?: bigint } | undefined)?.oid ?? 0n, result: reply.rsp.result }
        }
        return reply
      }
    },
  })
}

async function writeVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  const { offset, length } = rangeArguments(ctx)
  const refused: { first?: { oid: bigint; result: number } } = {}
  const conn = notingRefusedWrites(dog.bulkDaemon(ctx), refused)
  const handle = await openVdi(ctx, conn, name, { snapid: 0, tag: '' })
  if (handle === undefined) return EXIT_FAILURE
  if (offset > handle.sizeBytes) {
    ctx.printStderrLine('Write offset is beyond the end of the VDI')
    return EXIT_FAILURE
  }
  const total = rangeTotal(handle, offset, length)
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
    if (refused.first) ctx.printStderrLine(`Failed to write object ${oidToHex(refused.first.oid)}: ${resultLabel(refused.first.result)}`)
    ctx.printStderrLine('Failed to write VDI')
    return EXIT_FAILURE
  } finally {
    progress.stop()
  }
  return EXIT_SUCCESS
}

// ---- the table ---------------------------------------------------------------------------------

const INVALID_RECLAMATION_NUMBER: Record<'nrBatchedReclamation' | 'reclamationInterval' | 'maxReclaim', string> = {
  nrBatchedReclamation: 'The number of batched reclamation',
  reclamationInterval: 'The interval of batched reclamation',
  maxReclaim: 'The maximum number of reclamation',
}

/** -B / -I / -m: strtol, then > 0 (the original's messages, missing space included). */
function applyReclamationNumber(field: 'nrBatchedReclamation' | 'reclamationInterval' | 'maxReclaim'): DogOptionSpec['apply'] {
  return (opts, argument) => {
    const value = parseCLong(argument, 10)
    const subject = INVALID_RECLAMATION_NUMBER[field]
    if (value === undefined) return reject(EXIT_FAILURE, `${subject} is invalid: ${argument}`)
    if (value <= 0n) return reject(EXIT_FAILURE, `${subject} must bepositive integer`)
    opts[field] = Number(value)
    return undefined
  }
}

/** -s / -F: a snapshot id (> 0) or a tag. */
function applySnapshotSelector(field: 'snapshot' | 'fromSnapshot'): DogOptionSpec['apply'] {
  return (opts, argument) => {
    const selector = parseSnapshotSelector(argument)
    if (selector === undefined) return reject(EXIT_FAILURE, 'The snapshot id must be larger than zero')
    opts[field] = selector
    return undefined
  }
}

const HYPER_AND_SHIFT_CONFLICT = "Don't specify both -y and -z options, please"

/** The vdi group's option letters (the original's vdi option table); the global ones come first. */
export const VDI_OPTIONS: readonly DogOptionSpec[] = [
  { letter: 'P', longName: 'prealloc', takesArgument: false, description: 'preallocate all the data objects', apply: setFlag('prealloc') },
  { letter: 'n', longName: 'no-share', takesArgument: false, description: 'share nothing with its parent', apply: setFlag('noShare') },
  {
    letter: 'i',
    longName: 'index',
    takesArgument: true,
    description: 'specify the index of data objects',
    apply: (opts, argument) => {
      const index = parseIndex(argument)
      if (index === undefined) {
        return reject(EXIT_FAILURE, 'The index must be a decimal integer or a hexadecimal integer started with 0x')
      }
      opts.index = index
      return undefined
    },
  },
  {
    letter: 's',
    longName: 'snapshot',
    takesArgument: true,
    description: 'specify a snapshot id or tag name',
    apply: applySnapshotSelector('snapshot'),
  },
  { letter: 'x', longName: 'exclusive', takesArgument: false, description: 'write in an exclusive mode', apply: setFlag('exclusive') },
  { letter: 'd', longName: 'delete', takesArgument: false, description: 'delete a key', apply: setFlag('delete') },
  { letter: 'w', longName: 'writeback', takesArgument: false, description: 'use writeback mode', apply: setFlag('writeback') },
  { letter: 'c', longName: 'copies', takesArgument: true, description: 'specify the data redundancy level', apply: applyRedundancy },
  {
    letter: 'F',
    longName: 'from',
    takesArgument: true,
    description: 'create a differential backup from the snapshot',
    apply: applySnapshotSelector('fromSnapshot'),
  },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'do operation forcibly', apply: setFlag('force') },
  {
    letter: 'y',
    longName: 'hyper',
    takesArgument: false,
    description: 'create a hyper volume',
    apply: (opts) => {
      if (opts.blockSizeShift !== undefined) return reject(EXIT_FAILURE, HYPER_AND_SHIFT_CONFLICT)
      opts.hyper = true
      return undefined
    },
  },
  {
    letter: 'o',
    longName: 'oid',
    takesArgument: true,
    description: 'specify the object id of the tracking object',
    apply: (opts, argument) => {
      const oid = parseOid(argument)
      if (oid === undefined) return reject(EXIT_FAILURE, 'object id must be a hex integer')
      opts.oid = oid
      return undefined
    },
  },
  {
    letter: 'e',
    longName: 'exist',
    takesArgument: false,
    description: 'only check objects exist or not,\n                          neither comparing nor repairing',
    apply: setFlag('exist'),
  },
  {
    letter: 'z',
    longName: 'block_size_shift',
    takesArgument: true,
    description: 'specify the bit shift num for data object size',
    apply: (opts, argument) => {
      const rejection = applyBlockSizeShift(opts, argument)
      if (rejection !== undefined) return rejection
      if (opts.hyper) return reject(EXIT_FAILURE, HYPER_AND_SHIFT_CONFLICT)
      return undefined
    },
  },
  {
    letter: 'R',
    longName: 'reduce-identical-snapshots',
    takesArgument: false,
    description: "do not create snapshot if working VDI doesn't have its own objects",
    apply: setFlag('reduceIdenticalSnapshots'),
  },
  {
    letter: 'B',
    longName: 'nr-batched-reclamation',
    takesArgument: true,
    description: 'specify a number of batched reclamation during VDI deletion',
    apply: applyReclamationNumber('nrBatchedReclamation'),
  },
  {
    letter: 'I',
    longName: 'reclamation-interval',
    takesArgument: true,
    description: 'specify how long (unit: second) in reclamation loop during VDI deletion',
    apply: applyReclamationNumber('reclamationInterval'),
  },
  {
    letter: 'm',
    longName: 'max-reclaim',
    takesArgument: true,
    description: "specify the maximum number of reclaimed objects (if this option is specified, an inode object won't be reclaimed)",
    apply: applyReclamationNumber('maxReclaim'),
  },
]

/**
 * The vdi subcommands in the original's order, with their argument specs and option letters
 * (spec §3.1). `unsupported` runs those that come in later issues.
 */
export function vdiCommand(dog: DogRuntime): DogCommand {
  const run = (handler: (ctx: DogContext, dog: DogRuntime) => Promise<number>) => (ctx: DogContext) => handler(ctx, dog)
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
    optionTable: VDI_OPTIONS,
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
      { name: 'clone', movesData: true, args: '<src vdi> <dst vdi>', options: 'sPnaphrvT', description: 'clone an image', minArgs: 1, handler: run(cloneVdi) },
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
      {
        name: 'read',
        movesData: true,
        args: '<vdiname> [<offset> [<len>]]',
        options: 'saphT',
        description: 'read data from an image',
        minArgs: 1,
        handler: run(readVdi),
      },
      {
        name: 'write',
        movesData: true,
        args: '<vdiname> [<offset> [<len>]]',
        options: 'apwhT',
        description: 'write data to an image',
        minArgs: 1,
        handler: run(writeVdi),
      },
      {
        name: 'backup',
        movesData: true,
        args: '<vdiname>',
        options: 'sFaphT',
        description: 'create an incremental backup between two snapshots and outputs to STDOUT',
        needsNodeList: true,
        minArgs: 1,
        handler: run(backupVdi),
      },
      {
        name: 'restore',
        movesData: true,
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
