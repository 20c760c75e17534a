// Typed wrappers over SheepConnection for the requests dog, sheepfs and the NBD server send:
// one small function per request, returning decoded results. A result other than SUCCESS is an
// SdError carrying the code (callers print `err.label`), except where the result itself is the
// answer (STAT_CLUSTER's cluster status, EXIST, OIDS_EXIST). Wire layouts: lib/codec.ts,
// lib/structs.ts; opcodes and sizes: wire-protocol.md §2–7, §9, §12.
import type { Reply, RequestOptions, SheepConnection } from './client.js'
import { REQ_CLUSTER, REQ_FORW, REQ_OBJ, REQ_SCRUB, REQ_VDI, REQ_VDI_STATE, RSP_CLUSTER_DEFAULT, RSP_HASH, RSP_NODE, RSP_VDI, rspVariant } from './codec.js'
import { zeroExtended } from './bytes.js'
import { SdError, invariant } from './errors.js'
import { type Fields, type Layout, cStringField, readFields, writeFields } from './layout.js'
import { vidToAttrOid } from './oid.js'
import {
  SD_FLAG_CMD_COW,
  SD_FLAG_CMD_CREAT,
  SD_FLAG_CMD_DEL,
  SD_FLAG_CMD_DIRECT,
  SD_FLAG_CMD_UNSTABLE,
  SD_FLAG_CMD_EXCL,
  SD_FLAG_CMD_PIGGYBACK,
  SD_FLAG_CMD_WRITE,
  SD_MAX_DATA_LENGTH,
  SD_MAX_NODES,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
  SD_OP_ALTER_CLUSTER_COPY,
  SD_OP_ALTER_VDI_COPY,
  SD_OP_CLUSTER_INFO,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_DEL_VDI,
  SD_OP_DISABLE_RECOVER,
  SD_OP_DISCARD_OBJ,
  SD_OP_ENABLE_RECOVER,
  SD_OP_EXIST,
  SD_OP_FLUSH_VDI,
  SD_OP_FORCE_RECOVER,
  SD_OP_GET_CLUSTER_DEFAULT,
  SD_OP_GET_HASH,
  SD_OP_GET_LOGLEVEL,
  SD_OP_GET_NODE_LIST,
  SD_OP_SYNC_NODES,
  SD_OP_GET_RECOVERY,
  SD_OP_GET_STORE_LIST,
  SD_OP_GET_VDI_ATTR,
  SD_OP_GET_VDI_COPIES,
  SD_OP_GET_VDI_INFO,
  SD_OP_GET_VNODES,
  SD_OP_KILL_NODE,
  SD_OP_LOCK_VDI,
  SD_OP_MAKE_FS,
  SD_OP_MD_INFO,
  SD_OP_MD_PLUG,
  SD_OP_MD_UNPLUG,
  SD_OP_NEW_VDI,
  SD_OP_OIDS_EXIST,
  SD_OP_READ_DEL_VDIS,
  SD_OP_READ_OBJ,
  SD_OP_READ_PEER,
  SD_OP_READ_VDIS,
  SD_OP_RELEASE_VDI,
  SD_OP_REMOVE_OBJ,
  SD_OP_REPAIR_REPLICA,
  SD_OP_REWEIGHT,
  SD_OP_SET_LOGLEVEL,
  SD_OP_SET_RECOVERY,
  SD_OP_SET_VNODES,
  SD_OP_SHUTDOWN,
  SD_OP_STAT,
  SD_OP_SCRUB,
  SD_OP_STAT_CLUSTER,
  SD_OP_STAT_RECOVERY,
  SD_OP_STAT_SHEEP,
  SD_OP_WRITE_OBJ,
  SD_FLAG_CMD_RECOVERY,
  SD_RES_BUFFER_SMALL,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_OBJ,
  SD_RES_SUCCESS,
  SD_VDI_BITMAP_SIZE,
  opcodeName,
  LOCK_TYPE_NORMAL,
  LOCK_TYPE_SHARED,
} from './proto.js'
import {
  CLUSTER_INFO_SIZE,
  type ClusterInfo,
  EPOCH_LOG,
  EPOCH_LOG_HEADER_SIZE,
  type EpochLog,
  type EpochLogHeader,
  RECOVERY_STATE,
  RECOVERY_STATE_SIZE,
  SCRUB_STATUS,
  SCRUB_STATUS_SIZE,
  RECOVERY_THROTTLING,
  RECOVERY_THROTTLING_SIZE,
  SD_NODE_SIZE,
  SD_STAT_SIZE,
  type SdNode,
  type SdStat,
  VDI_ATTR,
  VDI_ATTR_SIZE,
  VDI_ATTR_VALUE_AT,
  VDI_STATE_SIZE,
  type VdiStateRecord,
  decodeClusterInfo,
  decodeEpochLogs,
  decodeNodes,
  decodeSdStat,
  decodeVdiState,
  epochLogStride,
} from './structs.js'

// ---- shared helpers ----------------------------------------------------------------------------

/** Sends a request; a result other than SUCCESS becomes SdError(result) naming the op. */
async function call<L extends Layout>(conn: SheepConnection, opts: RequestOptions<L>): Promise<Reply> {
  const reply = await conn.request(opts)
  if (reply.rsp.result !== SD_RES_SUCCESS) throw new SdError(reply.rsp.result, opcodeName(opts.opcode))
  return reply
}

/** The 512-byte name[256] ‖ tag[256] payload dog sends to VDI lookups. */
function vdiNameTag(name: string, tag = ''): Buffer {
  return Buffer.concat([cStringField(name, SD_MAX_VDI_LEN), cStringField(tag, SD_MAX_VDI_TAG_LEN)])
}

function checkObjectOffset(offset: number): void {
  invariant(Number.isInteger(offset) && offset >= 0 && offset <= 0xffffffff, `object offset ${offset} is not a u32`)
}

// ---- membership and cluster state --------------------------------------------------------------

/** GET_NODE_LIST: current members sorted by (addr, port); `epoch` is the answering sheep's epoch. */
export async function getNodeList(conn: SheepConnection): Promise<{ nodes: SdNode[]; epoch: number }> {
  const { rsp, data } = await call(conn, { opcode: SD_OP_GET_NODE_LIST, readLength: SD_MAX_NODES * SD_NODE_SIZE })
  const { nrNodes } = rspVariant(rsp, RSP_NODE)
  return { nodes: decodeNodes(data, Math.min(nrNodes, Math.floor(data.length / SD_NODE_SIZE))), epoch: rsp.epoch }
}

export type StatClusterProbe = EpochLogHeader & { result: number }

/**
 * STAT_CLUSTER with no node slots (data_length 48): the cluster status as `result` plus the
 * first epoch-log entry (ctime, epoch, flags, copies, policy, store). Undefined when the sheep
 * returned no entry (it has no membership yet, e.g. before format).
 */
export async function statClusterProbe(conn: SheepConnection): Promise<StatClusterProbe | undefined> {
  const { rsp, data } = await conn.request({
    opcode: SD_OP_STAT_CLUSTER,
    variant: REQ_CLUSTER,
    fields: { nodesNr: 0 },
    readLength: EPOCH_LOG_HEADER_SIZE,
  })
  if (data.length < EPOCH_LOG_HEADER_SIZE) return undefined
  return { ...readFields(data, EPOCH_LOG), result: rsp.result }
}

/**
 * STAT_CLUSTER: the epoch history, newest first, with `nodesNr` node slots per entry (doubled
 * and retried on BUFFER_SMALL) and room for `maxEntries` entries. `result` is the cluster status
 * (SUCCESS, WAIT_FOR_FORMAT, WAIT_FOR_JOIN, SHUTDOWN …), not an error.
 */
export async function statCluster(conn: SheepConnection, nodesNr: number, maxEntries: number): Promise<{ result: number; logs: EpochLog[] }> {
  let slots = Math.max(0, nodesNr)
  for (;;) {
    const stride = epochLogStride(slots)
    const entries = Math.max(1, Math.min(maxEntries, Math.floor(SD_MAX_DATA_LENGTH / stride)))
    const { rsp, data } = await conn.request({
      opcode: SD_OP_STAT_CLUSTER,
      variant: REQ_CLUSTER,
      fields: { nodesNr: slots },
      readLength: entries * stride,
    })
    if (rsp.result === SD_RES_BUFFER_SMALL && slots < SD_MAX_NODES) {
      slots = Math.min(SD_MAX_NODES, Math.max(1, slots * 2))
      continue
    }
    return { result: rsp.result, logs: decodeEpochLogs(data, slots) }
  }
}

/** CLUSTER_INFO: the answering sheep's cluster_info (config, status, members). */
export async function clusterInfo(conn: SheepConnection): Promise<ClusterInfo> {
  const { data } = await call(conn, { opcode: SD_OP_CLUSTER_INFO, readLength: CLUSTER_INFO_SIZE })
  return decodeClusterInfo(zeroExtended(data, CLUSTER_INFO_SIZE))
}

export interface MakeFsOptions {
  /** Cluster creation time in the (seconds << 32 | nanoseconds) encoding of wire-protocol.md §3.5. */
  ctime: bigint
  copies: number
  copyPolicy?: number
  /** SD_CLUSTER_FLAG_* bits. */
  flags?: number
  /** 0 = default (22). */
  blockSizeShift?: number
  /** Backend store name, e.g. "plain". */
  store: string
}

/** MAKE_FS: format the cluster; the payload is the store name NUL-terminated. */
export async function makeFs(conn: SheepConnection, opts: MakeFsOptions): Promise<void> {
  await call(conn, {
    opcode: SD_OP_MAKE_FS,
    variant: REQ_CLUSTER,
    fields: {
      ctime: opts.ctime,
      copies: opts.copies,
      copyPolicy: opts.copyPolicy ?? 0,
      flags: opts.flags ?? 0,
      blockSizeShift: opts.blockSizeShift ?? 0,
    },
    data: Buffer.from(`${opts.store}\0`, 'utf8'),
  })
}

/** SHUTDOWN: orderly shutdown of the whole cluster. */
export async function shutdownCluster(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_SHUTDOWN })
}

/** KILL_NODE: stop the sheep this connection talks to. */
export async function killNode(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_KILL_NODE })
}

/** STAT_SHEEP: the answering sheep's store capacity and free space in bytes (0/0 on a gateway). */
export async function statSheep(conn: SheepConnection): Promise<{ storeSize: bigint; storeFree: bigint }> {
  const { rsp } = await call(conn, { opcode: SD_OP_STAT_SHEEP })
  const { storeSize, storeFree } = rspVariant(rsp, RSP_NODE)
  return { storeSize, storeFree }
}

/** GET_CLUSTER_DEFAULT: default copies, copy policy and block size shift. */
export async function getClusterDefault(conn: SheepConnection): Promise<{ nrCopies: number; copyPolicy: number; blockSizeShift: number }> {
  const { rsp } = await call(conn, { opcode: SD_OP_GET_CLUSTER_DEFAULT })
  return rspVariant(rsp, RSP_CLUSTER_DEFAULT)
}

/** GET_STORE_LIST: the backend store names the sheep knows (e.g. ["tree", "plain"]). */
export async function getStoreList(conn: SheepConnection): Promise<string[]> {
  const { data } = await call(conn, { opcode: SD_OP_GET_STORE_LIST, readLength: 512 })
  const end = data.indexOf(0)
  return data
    .subarray(0, end < 0 ? data.length : end)
    .toString('latin1')
    .split(' ')
    .filter((s) => s !== '')
}

/** GET_LOGLEVEL: the sheep's log level (0 emerg … 7 debug). */
export async function getLogLevel(conn: SheepConnection): Promise<number> {
  const { data } = await call(conn, { opcode: SD_OP_GET_LOGLEVEL, readLength: 4 })
  return zeroExtended(data, 4).readInt32LE(0)
}

/** SET_LOGLEVEL: INVALID_PARMS when out of 0..7. */
export async function setLogLevel(conn: SheepConnection, level: number): Promise<void> {
  const data = Buffer.alloc(4)
  data.writeInt32LE(level)
  await call(conn, { opcode: SD_OP_SET_LOGLEVEL, data })
}

/** STAT: the sheep's request counters. */
export async function getStat(conn: SheepConnection): Promise<SdStat> {
  const { data } = await call(conn, { opcode: SD_OP_STAT, readLength: SD_STAT_SIZE })
  return decodeSdStat(data)
}

export type RecoveryState = Fields<typeof RECOVERY_STATE>
export type RecoveryThrottling = Fields<typeof RECOVERY_THROTTLING>

/** STAT_RECOVERY: whether the sheep is recovering, and how far. */
export async function statRecovery(conn: SheepConnection): Promise<RecoveryState> {
  const { data } = await call(conn, { opcode: SD_OP_STAT_RECOVERY, readLength: RECOVERY_STATE_SIZE })
  return readFields(zeroExtended(data, RECOVERY_STATE_SIZE), RECOVERY_STATE)
}

/** GET_RECOVERY: recovery throttling (max_exec_count, queue_work_interval ms, throttling). */
export async function getRecoveryThrottling(conn: SheepConnection): Promise<RecoveryThrottling> {
  const { data } = await call(conn, { opcode: SD_OP_GET_RECOVERY, readLength: RECOVERY_THROTTLING_SIZE })
  return readFields(zeroExtended(data, RECOVERY_THROTTLING_SIZE), RECOVERY_THROTTLING)
}

export type ScrubStatus = Fields<typeof SCRUB_STATUS>

/** SD_OP_SCRUB (our own): starts or stops the node's scrubber (SCRUB_ACTION_*), answering its status. */
export async function scrub(conn: SheepConnection, action: number, rateMiB = 0): Promise<ScrubStatus> {
  const { data } = await call(conn, { opcode: SD_OP_SCRUB, variant: REQ_SCRUB, fields: { action, rateMiB }, readLength: SCRUB_STATUS_SIZE })
  return readFields(zeroExtended(data, SCRUB_STATUS_SIZE), SCRUB_STATUS)
}

/** SET_RECOVERY: set recovery throttling. */
export async function setRecoveryThrottling(conn: SheepConnection, throttling: RecoveryThrottling): Promise<void> {
  const data = writeFields(Buffer.alloc(RECOVERY_THROTTLING_SIZE), RECOVERY_THROTTLING, throttling)
  await call(conn, { opcode: SD_OP_SET_RECOVERY, data })
}

/** ENABLE_RECOVER: resume automatic recovery cluster-wide. */
export async function enableRecover(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_ENABLE_RECOVER })
}

/** DISABLE_RECOVER: suspend automatic recovery cluster-wide. */
export async function disableRecover(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_DISABLE_RECOVER })
}

/** FORCE_RECOVER: start a cluster waiting for nodes; returns the members of the new epoch. */
export async function forceRecover(conn: SheepConnection): Promise<{ nodes: SdNode[]; epoch: number }> {
  const { rsp, data } = await call(conn, { opcode: SD_OP_FORCE_RECOVER, readLength: SD_MAX_NODES * SD_NODE_SIZE })
  return { nodes: decodeNodes(data, Math.floor(data.length / SD_NODE_SIZE)), epoch: rsp.epoch }
}

/** REWEIGHT: re-announce node capacities. */
export async function reweight(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_REWEIGHT })
}

/** ALTER_CLUSTER_COPY: change the cluster's default number of copies (replication only). */
export async function alterClusterCopy(conn: SheepConnection, copies: number): Promise<void> {
  await call(conn, { opcode: SD_OP_ALTER_CLUSTER_COPY, variant: REQ_CLUSTER, fields: { copies, copyPolicy: 0 } })
}

/** ALTER_VDI_COPY: change one VDI's copies and start recovery. */
export async function alterVdiCopy(conn: SheepConnection, vid: number, opts: { copies: number; copyPolicy?: number; blockSizeShift: number }): Promise<void> {
  await call(conn, {
    opcode: SD_OP_ALTER_VDI_COPY,
    variant: REQ_VDI_STATE,
    fields: { newVid: vid, copies: opts.copies, copyPolicy: opts.copyPolicy ?? 0, blockSizeShift: opts.blockSizeShift },
  })
}

/** SET_VNODES: this node's vnode count (fixed-vnode clusters); dog sends 8 bytes, i32 first. */
export async function setVnodes(conn: SheepConnection, vnodes: number): Promise<void> {
  const data = Buffer.alloc(8)
  data.writeInt32LE(vnodes)
  await call(conn, { opcode: SD_OP_SET_VNODES, data })
}

/** GET_VNODES: this node's vnode count. */
export async function getVnodes(conn: SheepConnection): Promise<number> {
  const { data } = await call(conn, { opcode: SD_OP_GET_VNODES, readLength: 4 })
  return zeroExtended(data, 4).readInt32LE(0)
}

// ---- multi-disk --------------------------------------------------------------------------------

export const MD_INFO_SIZE = 263688
export const MD_INFO_ENTRY_SIZE = 4120
export const MD_INFO_NR_AT = 263680
export const MD_INFO_ENTRY = {
  idx: [0, 'i32'],
  free: [8, 'u64'],
  used: [16, 'u64'],
  path: [24, 'string', 4096],
} as const satisfies Layout
export type MdDisk = Fields<typeof MD_INFO_ENTRY>

/** MD_INFO: the sheep's disks with free and used bytes. */
export async function mdInfo(conn: SheepConnection): Promise<MdDisk[]> {
  const { data } = await call(conn, { opcode: SD_OP_MD_INFO, readLength: MD_INFO_SIZE })
  const buf = zeroExtended(data, MD_INFO_SIZE)
  const nr = Math.max(0, Math.min(64, buf.readInt32LE(MD_INFO_NR_AT)))
  return Array.from({ length: nr }, (_, i) => readFields(buf, MD_INFO_ENTRY, i * MD_INFO_ENTRY_SIZE))
}

/** MD_PLUG: add disks (comma-separated paths); UNKNOWN when nothing changed. */
export async function mdPlug(conn: SheepConnection, paths: string): Promise<void> {
  await call(conn, { opcode: SD_OP_MD_PLUG, data: Buffer.from(`${paths}\0`, 'utf8') })
}

/** MD_UNPLUG: remove disks (comma-separated paths). */
export async function mdUnplug(conn: SheepConnection, paths: string): Promise<void> {
  await call(conn, { opcode: SD_OP_MD_UNPLUG, data: Buffer.from(`${paths}\0`, 'utf8') })
}

// ---- VDIs --------------------------------------------------------------------------------------

/** What a VDI lookup or creation answers. */
export interface VdiLookup {
  vid: number
  copies: number
  blockSizeShift: number
}

/** Which snapshot of a name: by tag, by snapshot id, or neither for the working VDI. */
export interface SnapshotSelector {
  tag?: string
  snapid?: number
}

/** Separates a VDI name from a snapshot id or tag where a VDI is named as NAME:SNAP (sheepfs volumes, NBD exports). */
export const SNAPSHOT_SEPARATOR = ':'

/** A VDI by name: the working VDI, or one of its snapshots. */
export interface VdiTarget {
  name: string
  snapshot: SnapshotSelector
}

/**
 * What `text` may name, in the order to try: the working VDI `text` itself, then — when text
 * is NAME:SNAP — the snapshot of NAME with that id (digits) or tag.
 */
export function vdiTargetsOf(text: string): VdiTarget[] {
  const targets: VdiTarget[] = [{ name: text, snapshot: {} }]
  const at = text.lastIndexOf(SNAPSHOT_SEPARATOR)
  if (at > 0 && at < text.length - 1) {
    const name = text.slice(0, at)
    const snap = text.slice(at + 1)
    targets.push({ name, snapshot: /^[1-9]\d{0,9}$/.test(snap) ? { snapid: Number(snap) } : { tag: snap } })
  }
  return targets
}

function vdiLookup(reply: Reply): VdiLookup {
  const v = rspVariant(reply.rsp, RSP_VDI)
  return { vid: v.vdiId, copies: v.copies, blockSizeShift: v.blockSizeShift }
}

/** READ_VDIS: the 2 MiB in-use bitmap (bit n = vid n has an inode). */
export async function readVdis(conn: SheepConnection): Promise<Buffer> {
  const { data } = await call(conn, { opcode: SD_OP_READ_VDIS, readLength: SD_VDI_BITMAP_SIZE })
  return zeroExtended(data, SD_VDI_BITMAP_SIZE)
}

/** READ_DEL_VDIS: the 2 MiB deleted bitmap. */
export async function readDelVdis(conn: SheepConnection): Promise<Buffer> {
  const { data } = await call(conn, { opcode: SD_OP_READ_DEL_VDIS, readLength: SD_VDI_BITMAP_SIZE })
  return zeroExtended(data, SD_VDI_BITMAP_SIZE)
}

/** Bit `vid` of a VDI bitmap (byte vid >> 3, mask 1 << (vid & 7)). */
export function bitmapTest(bitmap: Uint8Array, vid: number): boolean {
  return ((bitmap[vid >>> 3] ?? 0) & (1 << (vid & 7))) !== 0
}

export interface NewVdiOptions {
  name: string
  vdiSize: bigint
  /** Parent for a clone or snapshot; 0 for a fresh VDI. */
  baseVdiId?: number
  /** 0 = cluster default. */
  copies?: number
  copyPolicy?: number
  /** 0 = plain index, 1 = B-tree (hyper volume). */
  storePolicy?: number
  /** 0 = cluster default. */
  blockSizeShift?: number
  /** Non-zero: turn the working VDI `name` into a snapshot (wire-protocol.md §12.5). */
  snapid?: number
}

/** NEW_VDI: create, clone or snapshot; answers the new (working) VDI's vid. */
export async function newVdi(conn: SheepConnection, opts: NewVdiOptions): Promise<VdiLookup> {
  return vdiLookup(
    await call(conn, {
      opcode: SD_OP_NEW_VDI,
      variant: REQ_VDI,
      fields: {
        vdiSize: opts.vdiSize,
        baseVdiId: opts.baseVdiId ?? 0,
        copies: opts.copies ?? 0,
        copyPolicy: opts.copyPolicy ?? 0,
        storePolicy: opts.storePolicy ?? 0,
        blockSizeShift: opts.blockSizeShift ?? 0,
        snapid: opts.snapid ?? 0,
      },
      data: cStringField(opts.name, SD_MAX_VDI_LEN),
    }),
  )
}

/** GET_VDI_INFO: resolve name (+ tag or snapshot id) to a vid; NO_VDI / NO_TAG as SdError. */
export async function getVdiInfo(conn: SheepConnection, name: string, sel: SnapshotSelector = {}): Promise<VdiLookup> {
  return vdiLookup(
    await call(conn, {
      opcode: SD_OP_GET_VDI_INFO,
      variant: REQ_VDI,
      fields: { snapid: sel.snapid ?? 0 },
      data: vdiNameTag(name, sel.tag),
    }),
  )
}

/** DEL_VDI: delete the working VDI or a snapshot (clear its index first: §12.7); answers its vid. */
export async function delVdi(conn: SheepConnection, name: string, sel: SnapshotSelector = {}): Promise<number> {
  const reply = await call(conn, {
    opcode: SD_OP_DEL_VDI,
    variant: REQ_VDI,
    fields: { snapid: sel.snapid ?? 0 },
    data: vdiNameTag(name, sel.tag),
  })
  return rspVariant(reply.rsp, RSP_VDI).vdiId
}

/** LOCK_VDI: look up and (on clusters formatted with -l) lock a VDI. */
export async function lockVdi(conn: SheepConnection, name: string, opts: SnapshotSelector & { shared?: boolean } = {}): Promise<VdiLookup> {
  return vdiLookup(
    await call(conn, {
      opcode: SD_OP_LOCK_VDI,
      variant: REQ_VDI,
      fields: { snapid: opts.snapid ?? 0, type: opts.shared ? LOCK_TYPE_SHARED : LOCK_TYPE_NORMAL },
      data: vdiNameTag(name, opts.tag),
    }),
  )
}

/** RELEASE_VDI: unlock the VDI `vid`. */
export async function releaseVdi(conn: SheepConnection, vid: number, opts: { shared?: boolean } = {}): Promise<void> {
  await call(conn, {
    opcode: SD_OP_RELEASE_VDI,
    variant: REQ_VDI,
    fields: { baseVdiId: vid, type: opts.shared ? LOCK_TYPE_SHARED : LOCK_TYPE_NORMAL },
  })
}

/** FLUSH_VDI: obsolete cache flush; the INVALID_PARMS every 1.x sheep answers counts as success. */
export async function flushVdi(conn: SheepConnection, inodeOid: bigint): Promise<void> {
  const { rsp } = await conn.request({ opcode: SD_OP_FLUSH_VDI, variant: REQ_OBJ, fields: { oid: inodeOid } })
  if (rsp.result !== SD_RES_SUCCESS && rsp.result !== SD_RES_INVALID_PARMS) {
    throw new SdError(rsp.result, opcodeName(SD_OP_FLUSH_VDI))
  }
}

/** GET_VDI_COPIES: every VDI's state record (copies, policy, lock state …). */
export async function getVdiCopies(conn: SheepConnection): Promise<VdiStateRecord[]> {
  for (let entries = 512; ; entries *= 2) {
    const readLength = entries * VDI_STATE_SIZE
    if (readLength > SD_MAX_DATA_LENGTH) throw new SdError(SD_RES_BUFFER_SMALL, opcodeName(SD_OP_GET_VDI_COPIES))
    const { rsp, data } = await conn.request({ opcode: SD_OP_GET_VDI_COPIES, readLength })
    if (rsp.result === SD_RES_BUFFER_SMALL) continue
    if (rsp.result !== SD_RES_SUCCESS) throw new SdError(rsp.result, opcodeName(SD_OP_GET_VDI_COPIES))
    const count = Math.floor(data.length / VDI_STATE_SIZE)
    return Array.from({ length: count }, (_, i) => decodeVdiState(data, i * VDI_STATE_SIZE))
  }
}

export interface VdiAttrRequest {
  name: string
  tag?: string
  snapId?: number
  key: string
  /** The value to store (CREAT); at most 65 536 bytes. */
  value?: Buffer
  /** Create the attribute if missing (dog setattr). */
  create?: boolean
  /** Fail with VDI_EXIST if it exists (setattr -x). */
  excl?: boolean
  /** Delete the attribute (setattr -d). */
  del?: boolean
}

/**
 * GET_VDI_ATTR: find, create or delete an attribute object. Answers where it lives; read the
 * value with `readObj(conn, oid, 0, VDI_ATTR_SIZE)` and `VDI_ATTR` / `VDI_ATTR_VALUE_AT`.
 */
export async function getVdiAttr(conn: SheepConnection, req: VdiAttrRequest): Promise<{ vid: number; attrId: number; copies: number; oid: bigint }> {
  const value = req.value ?? Buffer.alloc(0)
  const data = Buffer.alloc(VDI_ATTR_SIZE)
  writeFields(data, VDI_ATTR, {
    name: req.name,
    tag: req.tag ?? '',
    ctime: 0n,
    snapId: req.snapId ?? 0,
    valueLen: value.length,
    key: req.key,
  })
  value.copy(data, VDI_ATTR_VALUE_AT, 0, Math.min(value.length, VDI_ATTR_SIZE - VDI_ATTR_VALUE_AT))
  const flags = (req.create ? SD_FLAG_CMD_CREAT : 0) | (req.excl ? SD_FLAG_CMD_EXCL : 0) | (req.del ? SD_FLAG_CMD_DEL : 0)
  const { rsp } = await call(conn, {
    opcode: SD_OP_GET_VDI_ATTR,
    flags,
    variant: REQ_VDI,
    fields: { snapid: req.snapId ?? 0 },
    data,
  })
  const v = rspVariant(rsp, RSP_VDI)
  return { vid: v.vdiId, attrId: v.attrId, copies: v.copies, oid: vidToAttrOid(v.vdiId, v.attrId) }
}

// ---- objects through the gateway ---------------------------------------------------------------

export interface ObjectWriteOptions {
  /** Redundancy to ask for; 0 / absent = the VDI's setting. */
  copies?: number
  copyPolicy?: number
  /** Set CMD_DIRECT (bypass the long-gone object cache; dog sets it on inode writes). */
  direct?: boolean
  /** WRITE_OBJ only: durable only after the next syncNodes (SD_FLAG_CMD_UNSTABLE, ours). */
  unstable?: boolean
}

/** READ_OBJ: `length` bytes at `offset` of an object (the answer may be shorter only if the sheep says so). */
export async function readObj(
  conn: SheepConnection,
  oid: bigint,
  offset: number,
  length: number,
  opts: { direct?: boolean; into?: Buffer } = {},
): Promise<Buffer> {
  checkObjectOffset(offset)
  const { data } = await call(conn, {
    opcode: SD_OP_READ_OBJ,
    flags: opts.direct ? SD_FLAG_CMD_DIRECT : 0,
    variant: REQ_OBJ,
    fields: { oid, offset },
    readLength: length,
    replyInto: opts.into,
  })
  return data
}

/** SYNC_NODES (ours): every unstable write accepted so far made durable on every node. */
export async function syncNodes(conn: SheepConnection): Promise<void> {
  await call(conn, { opcode: SD_OP_SYNC_NODES })
}

/** WRITE_OBJ: overwrite bytes of an existing object (NO_OBJ if it does not exist). */
export async function writeObj(conn: SheepConnection, oid: bigint, offset: number, data: Buffer, opts: ObjectWriteOptions = {}): Promise<void> {
  checkObjectOffset(offset)
  await call(conn, {
    opcode: SD_OP_WRITE_OBJ,
    flags: SD_FLAG_CMD_WRITE | (opts.direct ? SD_FLAG_CMD_DIRECT : 0) | (opts.unstable ? SD_FLAG_CMD_UNSTABLE : 0),
    variant: REQ_OBJ,
    fields: { oid, offset, copies: opts.copies ?? 0, copyPolicy: opts.copyPolicy ?? 0 },
    data,
  })
}

/**
 * CREATE_AND_WRITE_OBJ: create the object (zero-filled, or a copy of `cowOid` with CMD_COW)
 * and write `data` at `offset`.
 */
export async function createAndWriteObj(
  conn: SheepConnection,
  oid: bigint,
  offset: number,
  data: Buffer,
  opts: ObjectWriteOptions & { cowOid?: bigint } = {},
): Promise<void> {
  checkObjectOffset(offset)
  const cow = opts.cowOid !== undefined && opts.cowOid !== 0n
  await call(conn, {
    opcode: SD_OP_CREATE_AND_WRITE_OBJ,
    flags: SD_FLAG_CMD_WRITE | (cow ? SD_FLAG_CMD_COW : 0) | (opts.direct ? SD_FLAG_CMD_DIRECT : 0),
    variant: REQ_OBJ,
    fields: { oid, cowOid: cow ? opts.cowOid : 0n, offset, copies: opts.copies ?? 0, copyPolicy: opts.copyPolicy ?? 0 },
    data,
  })
}

/** REMOVE_OBJ: delete every replica of an object. */
export async function removeObj(conn: SheepConnection, oid: bigint, opts: { copies?: number } = {}): Promise<void> {
  await call(conn, { opcode: SD_OP_REMOVE_OBJ, variant: REQ_OBJ, fields: { oid, copies: opts.copies ?? 0 } })
}

/** DISCARD_OBJ: clear a data object's index entry and remove it (success if already absent). */
export async function discardObj(conn: SheepConnection, dataOid: bigint): Promise<void> {
  await call(conn, { opcode: SD_OP_DISCARD_OBJ, variant: REQ_OBJ, fields: { oid: dataOid } })
}

// ---- objects on one node (dog vdi check / object location) -------------------------------------

/** EXIST: does the answering sheep store the object (its strip `ecIndex` for erasure coding)? */
export async function exist(conn: SheepConnection, oid: bigint, opts: { ecIndex?: number } = {}): Promise<boolean> {
  const { rsp } = await conn.request({ opcode: SD_OP_EXIST, variant: REQ_OBJ, fields: { oid, ecIndex: opts.ecIndex ?? 0 } })
  if (rsp.result === SD_RES_SUCCESS) return true
  if (rsp.result === SD_RES_NO_OBJ) return false
  throw new SdError(rsp.result, opcodeName(SD_OP_EXIST))
}

/** OIDS_EXIST: which of `oids` the answering sheep lacks (empty when it has them all). */
export async function oidsExist(conn: SheepConnection, oids: readonly bigint[]): Promise<bigint[]> {
  if (oids.length === 0) return []
  const data = Buffer.alloc(oids.length * 8)
  oids.forEach((oid, i) => {
    data.writeBigUInt64LE(oid, i * 8)
  })
  const { rsp, data: missing } = await conn.request({ opcode: SD_OP_OIDS_EXIST, flags: SD_FLAG_CMD_PIGGYBACK, data })
  if (rsp.result === SD_RES_SUCCESS) return []
  if (rsp.result !== SD_RES_NO_OBJ) throw new SdError(rsp.result, opcodeName(SD_OP_OIDS_EXIST))
  return Array.from({ length: Math.floor(missing.length / 8) }, (_, i) => missing.readBigUInt64LE(i * 8))
}

/** GET_HASH: SHA-1 of the whole local replica at `tgtEpoch` (20 bytes); NO_OBJ as SdError. */
export async function getHash(conn: SheepConnection, oid: bigint, tgtEpoch: number): Promise<Buffer> {
  const { rsp } = await call(conn, { opcode: SD_OP_GET_HASH, variant: REQ_OBJ, fields: { oid, tgtEpoch } })
  return rspVariant(rsp, RSP_HASH).digest
}

/** REPAIR_REPLICA: ask the answering sheep to copy `oid` from `source`. */
export async function repairReplica(conn: SheepConnection, oid: bigint, source: { addr: Buffer; port: number }, epoch: number): Promise<void> {
  await call(conn, { opcode: SD_OP_REPAIR_REPLICA, epoch, variant: REQ_FORW, fields: { oid, addr: source.addr, port: source.port } })
}

export interface PeerOptions {
  /** The sender's epoch: peer ops are epoch-checked. */
  epoch: number
  /** Strip index for erasure-coded objects, 0 otherwise. */
  ecIndex?: number
}

/** READ_PEER: read the local replica / strip `ecIndex` of an object on the answering sheep. */
export async function readPeer(
  conn: SheepConnection,
  oid: bigint,
  length: number,
  opts: PeerOptions & { offset?: number; tgtEpoch?: number; recovery?: boolean },
): Promise<Buffer> {
  const offset = opts.offset ?? 0
  checkObjectOffset(offset)
  const { data } = await call(conn, {
    opcode: SD_OP_READ_PEER,
    epoch: opts.epoch,
    flags: opts.recovery ? SD_FLAG_CMD_RECOVERY : 0,
    variant: REQ_OBJ,
    fields: { oid, offset, ecIndex: opts.ecIndex ?? 0, tgtEpoch: opts.tgtEpoch ?? opts.epoch },
    readLength: length,
  })
  return data
}

/** CREATE_AND_WRITE_PEER: store a replica / strip of an object on the answering sheep. */
export async function createAndWritePeer(conn: SheepConnection, oid: bigint, data: Buffer, opts: PeerOptions): Promise<void> {
  await call(conn, {
    opcode: SD_OP_CREATE_AND_WRITE_PEER,
    epoch: opts.epoch,
    variant: REQ_OBJ,
    fields: { oid, ecIndex: opts.ecIndex ?? 0 },
    data,
  })
}

export type { EpochLog, EpochLogHeader, SdNode, VdiStateRecord }
