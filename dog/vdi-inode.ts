// What `vdi check`, `vdi backup/restore`, `vdi alter-copy` and `cluster snapshot` share: opening
// a VDI's inode (lookup, header, index), listing the objects a VDI addresses, reading and
// writing whole objects in pieces a request can carry, writing to stdout with back-pressure,
// the §2.6 progress line on a terminal stdout, and a progress bar on a terminal stderr for
// commands whose stdout carries data.
import {
  asSdError,
  btreeRootOf,
  HYPER_VOLUME_STORE_POLICY,
  INODE_HEADER_READ_SIZE,
  inodeReadFailureLine,
  lookUpVdi,
  printTransportFailure,
  readIndexNodes,
  readObject,
  readIndexEntries,
  type WalkedVdi,
} from './common.js'
import cliProgress from 'cli-progress'

import { DogExit, EXIT_SYSFAIL, type DogContext } from './cli.js'
import { zeroExtended } from '../lib/bytes.js'
import type { SheepConnection } from '../lib/client.js'
import type { SdError } from '../lib/errors.js'
import { progressLine } from '../lib/format.js'
import { decodeInodeHeader, objectSize } from '../lib/inode.js'
import { indexNodeOids } from '../lib/inode-index.js'
import { oidToHex, vidToDataOid, vidToVdiOid, vidToVmstateOid } from '../lib/oid.js'
import { OBJECT_CHUNK_BYTES } from '../lib/proto.js'
import { readObj, type SnapshotSelector } from '../lib/sheep-api.js'

/** A VDI with its index: data object idx → owning vid, allocated entries only, ascending idx. */
export interface IndexedVdi extends WalkedVdi {
  owners: Map<number, number>
}

/**
 * GET_VDI_INFO and the inode header, with the original's lines on failure (the lookup's
 * `Failed to open VDI …`, or `Failed to read a vdi …` when the inode cannot be read).
 */
export async function openVdiInode(ctx: DogContext, conn: SheepConnection, name: string, selector: SnapshotSelector): Promise<WalkedVdi | undefined> {
  const vid = await lookUpVdi(ctx, conn, name, selector)
  if (vid === undefined) return undefined
  const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, INODE_HEADER_READ_SIZE, true)
  if (headerBytes === undefined) {
    ctx.printStderrLine(inodeReadFailureLine(name, selector))
    return undefined
  }
  return { vid, header: decodeInodeHeader(headerBytes), headerBytes }
}

/** The VDI's allocated index entries (flat array or B-tree); undefined after printing why. */
export async function readIndex(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<IndexedVdi | undefined> {
  const entries = await readIndexEntries(ctx, conn, vdi)
  if (entries === undefined) return undefined
  const owners = new Map<number, number>()
  for (const idx of [...entries.keys()].sort((a, b) => a - b)) {
    const owner = entries.get(idx) as number
    if (owner !== 0) owners.set(idx, owner)
  }
  return { ...vdi, owners }
}

/** openVdiInode then readIndex. */
export async function openIndexedVdi(ctx: DogContext, conn: SheepConnection, name: string, selector: SnapshotSelector): Promise<IndexedVdi | undefined> {
  const vdi = await openVdiInode(ctx, conn, name, selector)
  return vdi === undefined ? undefined : readIndex(ctx, conn, vdi)
}

/** The data object ids of a VDI's allocated indexes, ascending idx. */
export function dataObjectIds(vdi: IndexedVdi): bigint[] {
  return [...vdi.owners].map(([idx, owner]) => vidToDataOid(owner, idx))
}

/** The vmstate objects a snapshot's vm_state_size covers. */
export function vmstateObjectIds(vdi: WalkedVdi): bigint[] {
  const sizeOfObject = BigInt(objectSize(vdi.header))
  const count = Number((vdi.header.vmStateSize + sizeOfObject - 1n) / sizeOfObject)
  return Array.from({ length: count }, (_, idx) => vidToVmstateOid(vdi.vid, idx))
}

/** B-tree node objects of a hyper volume whose root points at nodes (depth 2); none otherwise. */
export async function btreeNodeObjectIds(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi): Promise<bigint[] | undefined> {
  if (vdi.header.storePolicy !== HYPER_VOLUME_STORE_POLICY) return []
  return readIndexNodes(ctx, conn, (io) => indexNodeOids(io, vidToVdiOid(vdi.vid), btreeRootOf(vdi)))
}

/**
 * READ_OBJ of `length` bytes at `offset` of an object, in requests of at most OBJECT_CHUNK_BYTES
 * (objects reach 2 GiB, one request carries 64 MiB). Short answers are zero-padded. Callers
 * moving whole objects ask for one piece at a time, so they never hold a whole big object.
 */
export async function readObjectRange(conn: SheepConnection, oid: bigint, offset: number, length: number): Promise<Buffer> {
  if (length <= OBJECT_CHUNK_BYTES) return zeroExtended(await readObj(conn, oid, offset, length, { direct: true }), length)
  const whole = Buffer.alloc(length)
  for (let at = 0; at < length; at += OBJECT_CHUNK_BYTES) {
    const piece = await readObj(conn, oid, offset + at, Math.min(OBJECT_CHUNK_BYTES, length - at), { direct: true })
    piece.copy(whole, at)
  }
  return whole
}

/** readObjectRange with the original's `Failed to read object …` line; undefined on failure. */
export async function readObjectRangeOrReport(
  ctx: DogContext,
  conn: SheepConnection,
  oid: bigint,
  offset: number,
  length: number,
): Promise<Buffer | undefined> {
  try {
    return await readObjectRange(conn, oid, offset, length)
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(failure.isTransport ? `Failed to read object ${oidToHex(oid)}` : `Failed to read object ${oidToHex(oid)} ${failure.label}`)
    return undefined
  }
}

/**
 * Transport failures end dog with SYSFAIL after the connect line, as the original's exit()
 * from its request helpers does; any other error is handed back.
 */
export function exitOnTransportFailure(ctx: DogContext, error: unknown): SdError {
  const failure = asSdError(error)
  if (failure.isTransport) {
    ctx.printStderrLine(failure.message)
    throw new DogExit(EXIT_SYSFAIL)
  }
  return failure
}

/** Writes to stdout, waiting while a pipe is full. */
export function writeStdout(ctx: DogContext, chunk: Uint8Array): Promise<void> {
  const stdout = ctx.io.stdout as NodeJS.WritableStream
  if (stdout.write(chunk) || typeof stdout.once !== 'function') return Promise.resolve()
  return new Promise((resolve) => stdout.once('drain', () => resolve()))
}

/**
 * The §2.6 progress line on stdout, only when stdout is a terminal: sizes (`raw` false) or plain
 * counts (`raw` true). `done` is capped at `total`.
 */
export function showProgress(ctx: DogContext, done: bigint | number, total: bigint | number, raw: boolean): void {
  if (!ctx.io.stdoutIsTty) return
  const capped = BigInt(done) > BigInt(total) ? total : done
  ctx.printStdout(progressLine(capped, total, ctx.columns, raw))
}

/**
 * A bar on stderr counting objects, only when stderr is a terminal (the original shows none for
 * these commands; their stdout is data). Silent otherwise.
 */
export function objectProgressOnStderr(ctx: DogContext, totalObjects: number): { tick: () => void; stop: () => void } {
  const stderr = ctx.io.stderr as NodeJS.WritableStream & { isTTY?: boolean }
  if (stderr.isTTY !== true || totalObjects === 0) return { tick: () => undefined, stop: () => undefined }
  const bar = new cliProgress.SingleBar({
    stream: stderr,
    format: '{percentage} % [{bar}] {value} / {total} objects',
    barCompleteChar: '=',
    barIncompleteChar: ' ',
    hideCursor: null,
  })
  bar.start(totalObjects, 0)
  return { tick: () => bar.increment(), stop: () => bar.stop() }
}

/** Runs `work` over `items` with at most `concurrency` in flight; the first failure rejects. */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed = false
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++] as T
      try {
        await work(item)
      } catch (error) {
        failed = true
        throw error
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}
