// `dog vdi object location|map|dump-inode` and `dog vdi track` (cli-and-formats §4.10, §4.11):
// which nodes hold a VDI's inode or data object (EXIST on every member, and where the hash ring
// puts it), the index → vid map, a decoded inode file, and an object's placement at every epoch.
import {
  asSdError,
  HYPER_VOLUME_STORE_POLICY,
  INODE_HEADER_READ_SIZE,
  inodeReadFailureLine,
  lookUpVdi,
  readObject,
  readIndexEntries,
  selectorOf,
  type WalkedVdi,
} from './common.js'
import { readFile } from 'node:fs/promises'

import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, type DogContext } from './cli.js'
import type { DogRuntime } from './runtime.js'
import type { SheepConnection } from '../lib/client.js'
import { sprintf } from '../lib/format.js'
import { decodeInodeHeader, SD_INODE_GREF_AT, SD_INODE_INDEX_AT, SD_INODE_SIZE } from '../lib/inode.js'
import { MAX_DATA_OBJS, oidToHex, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import { SD_RES_NEW_NODE_VER, SD_RES_OLD_NODE_VER, SD_RES_SUCCESS, resultLabel } from '../lib/proto.js'
import { HashRing } from '../lib/ring.js'
import { exist, statCluster, type SdNode } from '../lib/sheep-api.js'
import { nodeAddrText } from '../lib/structs.js'
import { VdiHandle } from '../lib/vdi-io.js'

/** Object indexes must be below 2^32 (the index part of an oid). */
const MAX_OBJECT_INDEX = 1n << 32n
const OFFSET_TOO_LARGE = 'The offset is too large!\n'
const EPOCH_SEPARATOR = '---------------------------------------------------\n'
/** Entries of data_vdi_id[] (and gref[]) in an inode file. */
const INODE_INDEX_ENTRIES = MAX_DATA_OBJS

/** Looks the VDI up and reads its inode header (+ B-tree header); prints `fatal` too on failure. */
async function openInode(ctx: DogContext, conn: SheepConnection, fatal: string): Promise<WalkedVdi | undefined> {
  const name = ctx.args[0] as string
  const selector = selectorOf(ctx)
  const vid = await lookUpVdi(ctx, conn, name, selector)
  if (vid !== undefined) {
    const headerBytes = await readObject(ctx, conn, vidToVdiOid(vid), 0, INODE_HEADER_READ_SIZE, true)
    if (headerBytes !== undefined) return { vid, header: decodeInodeHeader(headerBytes), headerBytes }
    ctx.printStderrLine(inodeReadFailureLine(name, selector))
  }
  ctx.printStderrLine(fatal)
  return undefined
}

/** The vid owning data object `idx` (0 = unallocated), from the flat index or the B-tree. */
async function ownerOfIndex(ctx: DogContext, conn: SheepConnection, vdi: WalkedVdi, idx: number): Promise<number | undefined> {
  if (vdi.header.storePolicy === HYPER_VOLUME_STORE_POLICY) {
    try {
      return await (await VdiHandle.openByVid(conn, vdi.vid)).ownerOf(idx)
    } catch (error) {
      const failure = asSdError(error)
      ctx.printStderrLine(failure.isTransport ? failure.message : `Failed to read object ${oidToHex(vidToVdiOid(vdi.vid))} ${failure.label}`)
      return undefined
    }
  }
  // a plain index has 2^20 entries
  if (idx >= MAX_DATA_OBJS) return 0
  const entry = await readObject(ctx, conn, vidToVdiOid(vdi.vid), SD_INODE_INDEX_AT + idx * 4, 4, true)
  return entry?.readUInt32LE(0)
}

/** -i as a number, or a string to print when it is out of range; undefined without -i. */
function indexOption(ctx: DogContext): number | 'too large' | undefined {
  const index = ctx.opts.index
  if (index === undefined) return undefined
  return index >= MAX_OBJECT_INDEX ? 'too large' : Number(index)
}

// ---- vdi object location -----------------------------------------------------------------------

/** EXIST on every member, in node-list order: who has the object. */
async function printHolders(ctx: DogContext, dog: DogRuntime, nodes: readonly SdNode[], oid: bigint): Promise<void> {
  for (const node of nodes) {
    const address = nodeAddrText(node)
    try {
      const has = await exist(dog.connectionTo(node), oid)
      ctx.printStdout(`${address} ${has ? 'has' : "doesn't have"} the object\n`)
    } catch (error) {
      const failure = asSdError(error)
      if (failure.isTransport) ctx.printStderrLine(failure.message)
      else if (failure.code === SD_RES_OLD_NODE_VER || failure.code === SD_RES_NEW_NODE_VER) {
        ctx.printStderrLine('The node list has changed: please try again')
      } else ctx.printStderrLine(`${address}: hit an unexpected error (${failure.label})`)
    }
  }
}

/** Where the hash ring of the current members puts the object's replicas. */
function expectedLocation(nodes: readonly SdNode[], oid: bigint, copies: number): string {
  if (nodes.length < copies) {
    return `\nBecause number of nodes (${nodes.length}) is less than number of copies (${copies}), ` + 'the object should be located at every nodes.\n'
  }
  const replicas = new HashRing(nodes).replicasFor(oid, copies)
  return `\nAccording to sheepdog algorithm, the object should be located at:\n${replicas.map(nodeAddrText).join(' ')}\n`
}

export async function showObjectLocation(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const vdi = await openInode(ctx, conn, 'FATAL: no inode objects')
  if (vdi === undefined) return EXIT_FAILURE
  const { nodes } = dog.nodeList(ctx)
  const { vdiId: vid, nrCopies: copies } = vdi.header
  const index = indexOption(ctx)
  if (index === undefined) {
    const oid = vidToVdiOid(vid)
    ctx.printStdout(`Looking for the inode object 0x${vid.toString(16)} with ${nodes.length} nodes\n\n`)
    await printHolders(ctx, dog, nodes, oid)
    ctx.printStdout(expectedLocation(nodes, oid, copies))
    return EXIT_SUCCESS
  }
  if (index === 'too large') {
    ctx.printStdout(OFFSET_TOO_LARGE)
    return EXIT_FAILURE
  }
  const owner = await ownerOfIndex(ctx, conn, vdi, index)
  if (owner === undefined) return EXIT_FAILURE
  if (owner === 0) {
    ctx.printStdout(`The inode object 0x${vid.toString(16)} idx ${index} is not allocated\n`)
    return EXIT_SUCCESS
  }
  const oid = vidToDataOid(owner, index)
  ctx.printStdout(`Looking for the object ${oidToHex(oid)} (vid 0x${vid.toString(16)} idx ${index}, ${copies} copies) ` + `with ${nodes.length} nodes\n\n`)
  await printHolders(ctx, dog, nodes, oid)
  ctx.printStdout(expectedLocation(nodes, oid, copies))
  return EXIT_SUCCESS
}

// ---- vdi object map ----------------------------------------------------------------------------

const MAP_ROW = '%08u %8x\n'

export async function showObjectMap(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const vdi = await openInode(ctx, conn, `FATAL: ${ctx.args[0] as string} not found`)
  if (vdi === undefined) return EXIT_FAILURE
  const index = ctx.opts.index
  if (index !== undefined) {
    const owner = index >= MAX_OBJECT_INDEX ? 0 : await ownerOfIndex(ctx, conn, vdi, Number(index))
    if (owner === undefined) return EXIT_FAILURE
    ctx.printStdout(`Index       VID\n${sprintf(MAP_ROW, index, owner)}`)
    return EXIT_SUCCESS
  }
  const entries = await readIndexEntries(ctx, conn, vdi)
  if (entries === undefined) return EXIT_FAILURE
  const rows = ['Index       VID\n']
  for (const idx of [...entries.keys()].sort((a, b) => a - b)) {
    const owner = entries.get(idx) as number
    if (owner !== 0) rows.push(sprintf(MAP_ROW, idx, owner))
  }
  ctx.printStdout(rows.join(''))
  return EXIT_SUCCESS
}

// ---- vdi object dump-inode ---------------------------------------------------------------------

const DUMP_FIELDS: ReadonlyArray<[label: string, format: (inode: ReturnType<typeof decodeInodeHeader>) => string]> = [
  ['name', (h) => h.name],
  ['tag', (h) => h.tag],
  ['create_time', (h) => h.createTime.toString(16)],
  ['snap_ctime', (h) => h.snapCtime.toString(16)],
  ['vm_clock_nsec', (h) => h.vmClockNsec.toString(16)],
  ['vdi_size', (h) => h.vdiSize.toString()],
  ['vm_state_size', (h) => h.vmStateSize.toString()],
  ['copy_policy', (h) => String(h.copyPolicy)],
  ['store_policy', (h) => String(h.storePolicy)],
  ['nr_copies', (h) => String(h.nrCopies)],
  ['block_size_shift', (h) => String(h.blockSizeShift)],
  ['snap_id', (h) => String(h.snapId)],
  ['vdi_id', (h) => h.vdiId.toString(16)],
  ['parent_vdi_id', (h) => h.parentVdiId.toString(16)],
  ['btree_counter', (h) => String(h.btreeCounter)],
]

/** The text of an inode file: header fields, non-zero index entries, their reference counts. */
function describeInode(inode: Buffer): string {
  const header = decodeInodeHeader(inode)
  const lines = DUMP_FIELDS.map(([label, format]) => `${label}: ${format(header)}\n`)
  lines.push('data_vdi_id:\n')
  for (let idx = 0; idx < INODE_INDEX_ENTRIES; idx++) {
    const vid = inode.readUInt32LE(SD_INODE_INDEX_AT + idx * 4)
    if (vid !== 0) lines.push(`${idx}: ${vid.toString(16)}\n`)
  }
  lines.push('gref:\n')
  for (let idx = 0; idx < INODE_INDEX_ENTRIES; idx++) {
    const vid = inode.readUInt32LE(SD_INODE_INDEX_AT + idx * 4)
    const generation = inode.readInt32LE(SD_INODE_GREF_AT + idx * 8)
    const count = inode.readInt32LE(SD_INODE_GREF_AT + idx * 8 + 4)
    if (vid !== 0) lines.push(`${idx}: ${vid.toString(16)}, ${generation}, ${count}\n`)
    else if (generation !== 0 || count !== 0) {
      lines.push(`WARNING: index ${idx} doesn't have data vdi ID but its generation and count is not zero(${generation}, ${count})\n`)
    }
  }
  return lines.join('')
}

export async function dumpInodeFile(ctx: DogContext): Promise<number> {
  const path = ctx.args[0] as string
  let inode: Buffer
  try {
    inode = await readFile(path)
  } catch (error) {
    const reason = error as NodeJS.ErrnoException
    const errnoText = { ENOENT: 'No such file or directory', EACCES: 'Permission denied', EISDIR: 'Is a directory' }[reason.code ?? '']
    ctx.printStderrLine(`failed to open inode object file: ${errnoText ?? reason.message}`)
    return EXIT_FAILURE
  }
  if (inode.length < SD_INODE_SIZE) {
    ctx.printStderrLine(`failed to read inode object file: ${path} has ${inode.length} bytes, an inode has ${SD_INODE_SIZE}`)
    return EXIT_FAILURE
  }
  ctx.printStdout(describeInode(inode))
  return EXIT_SUCCESS
}

// ---- vdi track ---------------------------------------------------------------------------------

/** STAT_CLUSTER's epoch history, newest first: where the object's replicas were at each epoch. */
async function trackObject(ctx: DogContext, dog: DogRuntime, oid: bigint, copies: number): Promise<number> {
  const { nodes, epoch } = dog.nodeList(ctx)
  let history: Awaited<ReturnType<typeof statCluster>>
  try {
    history = await statCluster(dog.daemon(ctx), nodes.length, Math.max(1, epoch))
  } catch (error) {
    ctx.printStderrLine(asSdError(error).message)
    return EXIT_SYSFAIL
  }
  if (history.result !== SD_RES_SUCCESS) {
    ctx.printStdout(`${resultLabel(history.result)}\n`)
    return EXIT_SYSFAIL
  }
  const out: string[] = []
  for (const log of history.logs) {
    out.push(`\nobj ${oidToHex(oid)} locations at epoch ${log.epoch}, copies = ${copies}\n`, EPOCH_SEPARATOR)
    // with fewer nodes than copies every node holds a copy
    const holders = log.nodes.length < copies ? log.nodes : new HashRing(log.nodes).replicasFor(oid, copies)
    for (const node of holders) out.push(`${nodeAddrText(node)}\n`)
  }
  ctx.printStdout(out.join(''))
  return EXIT_SUCCESS
}

export async function trackVdiObject(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const vdi = await openInode(ctx, conn, 'FATAL: no inode objects')
  if (vdi === undefined) return EXIT_FAILURE
  const { nodes } = dog.nodeList(ctx)
  const { vdiId: vid, nrCopies: copies } = vdi.header
  const inodeVid = `0x${vid.toString(16)}`
  const givenOid = ctx.opts.oid ?? 0n
  if (givenOid !== 0n) {
    ctx.printStdout(`Tracking the object ${oidToHex(givenOid)} (the inode vid ${inodeVid}) with ${nodes.length} nodes\n`)
    return trackObject(ctx, dog, givenOid, copies)
  }
  const index = indexOption(ctx)
  if (index === undefined) {
    ctx.printStdout(`Tracking the inode object ${inodeVid} with ${nodes.length} nodes\n`)
    return trackObject(ctx, dog, vidToVdiOid(vid), copies)
  }
  if (index === 'too large') {
    ctx.printStdout(OFFSET_TOO_LARGE)
    return EXIT_FAILURE
  }
  const owner = await ownerOfIndex(ctx, conn, vdi, index)
  if (owner === undefined) return EXIT_FAILURE
  const oid = vidToDataOid(owner, index)
  ctx.printStdout(`Tracking the object ${oidToHex(oid)} (the inode vid ${inodeVid} idx ${index}) with ${nodes.length} nodes\n`)
  return trackObject(ctx, dog, oid, copies)
}
