// The op table: opcode → kind (gateway | peer | local | cluster; names come from lib/proto.ts), whether it is a "force"
// op allowed while the cluster waits, and its handler (wire-protocol.md §5). For cluster ops,
// `work` runs on the receiving node (under the cluster-wide block when present) and `main` on
// every member in the driver's order. Opcodes not in the table answer INVALID_PARMS.
import fs from 'node:fs'
import path from 'node:path'
import { resultOfError } from '../lib/errors.js'
import {
  REQ_CLUSTER,
  REQ_FORW,
  REQ_INODE_COHERENCE,
  REQ_OBJ,
  REQ_SCRUB,
  REQ_VDI,
  REQ_VDI_STATE,
  REQ_VDI_STATE_CHECKPOINT,
  RSP_CLUSTER_DEFAULT,
  RSP_HASH,
  RSP_NODE,
  RSP_VDI,
  type SdRequest,
  encodeResponseHeader,
  reqVariant,
  rspVariant,
} from '../lib/codec.js'
import { cString } from '../lib/layout.js'
import {
  SD_OP_CLUSTER_INFO,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_DEL_VDI,
  SD_OP_DISCARD_OBJ,
  SD_OP_EXIST,
  SD_OP_FLUSH_DEL_CACHE,
  SD_OP_FLUSH_VDI,
  SD_OP_GET_CLUSTER_DEFAULT,
  SD_OP_GET_EPOCH,
  SD_OP_GET_HASH,
  SD_OP_GET_LOGLEVEL,
  SD_OP_GET_NODE_LIST,
  SD_OP_GET_OBJ_LIST,
  SD_OP_GET_STORE_LIST,
  SD_OP_GET_VDI_COPIES,
  SD_OP_GET_VDI_INFO,
  SD_OP_KILL_NODE,
  SD_OP_LOCK_VDI,
  SD_OP_MAKE_FS,
  SD_OP_NEW_VDI,
  SD_OP_READ_DEL_VDIS,
  SD_OP_READ_OBJ,
  SD_OP_READ_PEER,
  SD_OP_READ_VDIS,
  SD_OP_RELEASE_VDI,
  SD_OP_REMOVE_OBJ,
  SD_OP_REMOVE_PEER,
  SD_OP_SET_LOGLEVEL,
  SD_OP_SHUTDOWN,
  SD_OP_STAT_CLUSTER,
  SD_OP_STAT_SHEEP,
  SD_OP_WRITE_OBJ,
  SD_OP_WRITE_PEER,
  SD_OP_SYNC_NODES,
  SD_OP_SYNC_PEER,
  SD_RES_BUFFER_SMALL,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_SUPPORT,
  SD_RES_NO_OBJ,
  SD_RES_NO_STORE,
  SD_RES_NO_TAG,
  SD_RES_SUCCESS,
  SD_RES_WAIT_FOR_FORMAT,
  SD_RES_WAIT_FOR_JOIN,
  SD_STATUS_OK,
  SD_STATUS_SHUTDOWN,
  SD_STATUS_WAIT,
  SD_VDI_BITMAP_SIZE,
  SD_RES_SHUTDOWN,
  SD_OP_COMPLETE_RECOVERY,
  SD_OP_STAT_RECOVERY,
  SD_OP_GET_RECOVERY,
  SD_OP_SET_RECOVERY,
  SD_OP_ENABLE_RECOVER,
  SD_OP_DISABLE_RECOVER,
  SD_OP_FORCE_RECOVER,
  SD_OP_ALTER_CLUSTER_COPY,
  SD_OP_REWEIGHT,
  SD_OP_CLEANUP,
  SD_OP_OIDS_EXIST,
  SD_OP_STAT,
  SD_OP_SCRUB,
  SD_OP_GET_VNODES,
  SD_RES_FORCE_RECOVER,
  SD_RES_NODE_IN_RECOVERY,
  SD_MAX_COPIES,
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_CLUSTER_FLAG_USE_LOCK,
  SD_OP_GET_VDI_ATTR,
  SD_OP_NOTIFY_VDI_ADD,
  SD_OP_ALTER_VDI_COPY,
  SD_RES_NO_VDI,
  SD_OP_REPAIR_REPLICA,
  SD_OP_DECREF_OBJ,
  SD_OP_DECREF_PEER,
  SD_RES_EIO,
  SD_OP_INODE_COHERENCE,
  SD_OP_SET_VNODES,
  SD_RES_GATEWAY_MODE,
  SD_RES_INVALID_VNODES_STRATEGY,
  SD_MAX_VNODES,
  SD_DEFAULT_VNODES,
  SD_OP_DELETE_CACHE,
  SD_OP_NOTIFY_VDI_DEL,
  SD_OP_VDI_STATE_CHECKPOINT_CTL,
  SD_OP_MD_INFO,
  SD_OP_MD_PLUG,
  SD_OP_MD_UNPLUG,
  SD_RES_AGAIN,
  SD_RES_NO_CHECKPOINT_ENTRY,
  SD_RES_UNKNOWN,
} from '../lib/proto.js'
import {
  CLUSTER_INFO_SIZE,
  EPOCH_LOG_HEADER_SIZE,
  RECOVERY_STATE,
  RECOVERY_STATE_SIZE,
  RECOVERY_THROTTLING,
  RECOVERY_THROTTLING_SIZE,
  SCRUB_ACTION_START,
  SCRUB_ACTION_STATUS,
  SCRUB_ACTION_STOP,
  SCRUB_STATUS,
  SCRUB_STATUS_SIZE,
  SD_NODE_SIZE,
  decodeNode,
  encodeClusterInfo,
  encodeEpochLog,
  encodeNodes,
  encodeSdStat,
  epochLogStride,
  sameNode,
} from '../lib/structs.js'
import { SD_ADDR_LEN } from '../lib/addr.js'
import { readFields, writeFields } from '../lib/layout.js'
import { inodeIndexOffset, isDataObj, oidToIdx, oidToVid, vidToVdiOid } from '../lib/oid.js'
import { LOG_LEVEL_NAMES, sdLevelToPino } from '../lib/log.js'
import { gatewayCreateAndWriteObj, gatewayDecrefObj, gatewayReadObj, gatewayRemoveObj, gatewaySyncNodes, gatewayWriteObj } from './gateway.js'
import { gatewayWriteAll, readObject, writeObject } from './replica-io.js'
import { type OpContext, type OpKind, type OpReply, reply } from './op-types.js'
import { copyObject, peerPieceReader } from './object-copy.js'
import { handlePeerRequest, localStoreKey, objectSizeFor } from './peer.js'
import { listForRecovery } from './recovery.js'
import { decrefPeer } from './refcount.js'
import type { ClusterOpMain, Sheep } from './sheep.js'
import { MD_INFO_ENTRY, MD_INFO_ENTRY_SIZE, MD_INFO_NR_AT, MD_INFO_SIZE } from '../lib/sheep-api.js'
import { STORE_LAYOUTS } from './store/layout.js'
import { delVdiMain, delVdiWork, getVdiAttrWork, getVdiInfoWork, inodeCoherenceMain, lockMain, newVdiMain, newVdiWork, nodeIdOf, unlockMain } from './vdi.js'

/** The store drivers a cluster can be formatted with, as GET_STORE_LIST names them. */
export const STORE_NAMES: readonly string[] = STORE_LAYOUTS.map((l) => l.name)

/** What a gateway, peer or local op runs on the receiving node. */
export type OpHandler = (sheep: Sheep, req: SdRequest, data: Buffer | undefined, ctx?: OpContext) => Promise<OpReply> | OpReply

interface OpDefBase {
  /** Accepted while the cluster waits for format or members (wire-protocol.md §1.2). */
  force?: boolean
  /**
   * Cluster-wide or destructive: with `sheep --admin-from`, accepted only on the unix socket and
   * from the listed networks (server.ts answers others SD_RES_NO_SUPPORT). Our own addition.
   */
  admin?: boolean
}

/** An op answered by the node that receives it. */
export interface NodeOpDef extends OpDefBase {
  kind: Exclude<OpKind, 'cluster'>
  handler: OpHandler
}

/** An op every member applies in the cluster driver's order (behaviour.md §8). */
export interface ClusterOpDef extends OpDefBase {
  kind: 'cluster'
  /** Work phase, run under the cluster-wide block on the receiving node; without one the op is broadcast as is. */
  work?: (sheep: Sheep, req: SdRequest, data: Buffer | undefined) => Promise<{ rsp: Buffer; data: Buffer | undefined }>
  /** Main phase, run on every member in order. */
  main?: ClusterOpMain
}

export type OpDef = NodeOpDef | ClusterOpDef

/** The STAT_CLUSTER result code: the cluster status as a result (§7.5). */
function statusResult(sheep: Sheep): number {
  if (sheep.status === SD_STATUS_OK) return SD_RES_SUCCESS
  if (sheep.status === SD_STATUS_SHUTDOWN) return SD_RES_SHUTDOWN
  return sheep.settings.ctime === 0n ? SD_RES_WAIT_FOR_FORMAT : SD_RES_WAIT_FOR_JOIN
}

async function statCluster(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  const { nodesNr } = reqVariant(req, REQ_CLUSTER)
  const stride = epochLogStride(nodesNr)
  const maxEntries = Math.floor(req.dataLength / stride)
  const result = statusResult(sheep)
  if (sheep.epoch === 0 || maxEntries === 0) return reply(result)
  const entries = Math.min(maxEntries, sheep.epoch)
  const buf = Buffer.alloc(entries * stride)
  let written = 0
  for (let e = sheep.epoch; e >= 1 && written < entries; e--) {
    // an epoch this node was not a member of comes from a member, as the original's
    // epoch_log_read_remote: every node prints the same history
    const rec = await sheep.group.epochLog(e)
    const nodes = rec?.nodes ?? []
    if (nodes.length > nodesNr && nodesNr > 0) return reply(SD_RES_BUFFER_SMALL)
    const first = written === 0
    const s = sheep.settings
    encodeEpochLog(
      {
        ctime: first ? s.ctime : 0n,
        time: nodesNr > 0 ? (rec?.timeSec ?? 0n) : 0n,
        epoch: e,
        nrNodes: nodesNr > 0 ? nodes.length : 0,
        disableRecovery: first && s.disableRecovery ? 1 : 0,
        nrCopies: first ? s.nrCopies : 0,
        copyPolicy: first ? s.copyPolicy : 0,
        flags: first ? s.flags : 0,
        drvName: first ? s.defaultStore : '',
        nodes,
      },
      nodesNr,
      buf,
      written * stride,
    )
    written++
    if (nodesNr === 0) break
  }
  return reply(result, buf.subarray(0, written * stride))
}

function clusterInfo(sheep: Sheep, req: SdRequest): OpReply {
  const s = sheep.settings
  const size = Math.min(req.dataLength, CLUSTER_INFO_SIZE)
  if (size < EPOCH_LOG_HEADER_SIZE + sheep.members.length * SD_NODE_SIZE) return reply(SD_RES_BUFFER_SMALL)
  const data = encodeClusterInfo(
    {
      protoVer: 0x0a,
      disableRecovery: s.disableRecovery ? 1 : 0,
      nrNodes: sheep.members.length,
      epoch: sheep.epoch,
      // before format the flags tell this node's own vnode strategy (dog format checks it)
      ctime: s.ctime,
      flags: s.ctime === 0n && sheep.group.usesAutoVnodes ? SD_CLUSTER_FLAG_AUTO_VNODES : s.flags,
      nrCopies: s.nrCopies,
      copyPolicy: s.copyPolicy,
      status: sheep.status,
      blockSizeShift: s.blockSizeShift,
      defaultStore: s.defaultStore,
      nodes: sheep.members,
    },
    size,
  )
  return reply(SD_RES_SUCCESS, data)
}

/** The vnode counts SET_VNODES accepts. */
const SET_VNODES_MIN = 1
const SET_VNODES_MAX = SD_MAX_VNODES

/**
 * SET_VNODES (`dog node vnodes set N`) on the contacted node: fixed-vnode clusters only; the
 * new count is announced to every member (epoch + 1, recovery), even when it is the count the
 * node has, as the original's update_node. The epoch log keeps it: the sheep restarts with
 * -V N only (vnodeStartProblem).
 */
async function setVnodes(sheep: Sheep, _req: SdRequest, data: Buffer | undefined): Promise<OpReply> {
  if (sheep.gateway) return reply(SD_RES_GATEWAY_MODE)
  if (sheep.group.usesAutoVnodes) return reply(SD_RES_INVALID_VNODES_STRATEGY)
  // dog sends 8 bytes; the count is the first 4
  if (!data || data.length < 4) return reply(SD_RES_INVALID_PARMS)
  const vnodes = data.readInt32LE(0)
  if (vnodes < SET_VNODES_MIN || vnodes > SET_VNODES_MAX) return reply(SD_RES_INVALID_PARMS)
  return reply((await sheep.announceWeight({ space: sheep.space, nrVnodes: vnodes })).result)
}

/** MAKE_FS main phase on every member (behaviour.md §5). */
async function makeFsMain(sheep: Sheep, msg: { req: SdRequest; data: Buffer | undefined }): Promise<number> {
  const c = reqVariant(msg.req, REQ_CLUSTER)
  const store = msg.data ? cString(msg.data) : 'plain'
  if (!STORE_NAMES.includes(store)) return SD_RES_NO_STORE
  await sheep.format({
    ctime: c.ctime,
    flags: c.flags,
    nrCopies: c.copies,
    copyPolicy: c.copyPolicy,
    blockSizeShift: c.blockSizeShift,
    defaultStore: store,
    disableRecovery: false,
  })
  sheep.log.info(`formatted: copies ${sheep.settings.nrCopies}, store ${store}, flags 0x${c.flags.toString(16)}`)
  return SD_RES_SUCCESS
}

function readBitmap(bits: Uint8Array, req: SdRequest): OpReply {
  if (req.dataLength < SD_VDI_BITMAP_SIZE) return reply(SD_RES_INVALID_PARMS)
  return reply(SD_RES_SUCCESS, Buffer.from(bits.buffer, bits.byteOffset, SD_VDI_BITMAP_SIZE))
}

/** DISCARD_OBJ: clear the index entry of a data object, then remove the object (§5.1). */
async function discardObj(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  const { oid } = reqVariant(req, REQ_OBJ)
  if (!isDataObj(oid)) return reply(SD_RES_INVALID_PARMS)
  const vid = oidToVid(oid)
  const idx = oidToIdx(oid)
  try {
    const cur = (await readObject(sheep, vidToVdiOid(vid), inodeIndexOffset(idx), 4)).readUInt32LE(0)
    if (cur !== 0) await writeObject(sheep, vidToVdiOid(vid), inodeIndexOffset(idx), Buffer.alloc(4), { create: false })
  } catch (e) {
    return reply(resultOfError(e))
  }
  const r = await gatewayWriteAll(sheep, SD_OP_REMOVE_OBJ, { oid, cowOid: 0n, copies: 0, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset: 0 }, undefined)
  return reply(r.result === SD_RES_NO_OBJ ? SD_RES_SUCCESS : r.result)
}

const peer: OpDef = { kind: 'peer', handler: handlePeerRequest }

/** SYNC_PEER (ours): this node's unstable writes made durable; a disk that cannot answers EIO. */
async function syncPeerHandler(sheep: Sheep): Promise<OpReply> {
  try {
    await sheep.store.flush()
    return reply(SD_RES_SUCCESS)
  } catch (e) {
    sheep.log.error(`sync of unstable writes failed: ${String(e)}`)
    return reply(resultOfError(e))
  }
}

/** The op table. */
// ---- handlers and main phases of the ops below, named after their op -------------------------

const newVdiOpMain: ClusterOpMain = (s, m) => newVdiMain(s, m.rsp)

const lockVdiMain: ClusterOpMain = (s, m) => {
  if (m.rsp.result !== SD_RES_SUCCESS || !(s.settings.flags & SD_CLUSTER_FLAG_USE_LOCK)) return m.rsp.result
  return lockMain(s, rspVariant(m.rsp, RSP_VDI).vdiId, nodeIdOf(m.sender), reqVariant(m.req, REQ_VDI).type)
}

/**
 * RELEASE_VDI work phase: nothing (the original's local_release_vdi). It has one so that the op
 * travels as the original's does, through the cluster-wide block: an original member ends its
 * own block bookkeeping when a message of an op with a work phase arrives.
 */
async function releaseVdiWork(sheep: Sheep, req: SdRequest): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  return { rsp: encodeResponseHeader({ opcode: req.opcode, epoch: sheep.epoch, id: req.id, dataLength: 0, result: SD_RES_SUCCESS }), data: undefined }
}

const releaseVdiMain: ClusterOpMain = (s, m) => {
  if (!(s.settings.flags & SD_CLUSTER_FLAG_USE_LOCK)) return SD_RES_SUCCESS
  const v = reqVariant(m.req, REQ_VDI)
  return unlockMain(s, v.baseVdiId, nodeIdOf(m.sender), v.type)
}

const inodeCoherenceOpMain: ClusterOpMain = (s, m) => {
  const c = reqVariant(m.req, REQ_INODE_COHERENCE)
  return inodeCoherenceMain(s, c.vid, c.validate !== 0, nodeIdOf(m.sender))
}

const notifyVdiAddMain: ClusterOpMain = (s, m) => {
  const v = reqVariant(m.req, REQ_VDI_STATE)
  const old = s.vdis.get(v.newVid)
  s.vdis.add({
    vid: v.newVid,
    nrCopies: v.copies,
    copyPolicy: v.copyPolicy,
    blockSizeShift: v.blockSizeShift,
    snapshot: old?.snapshot ?? false,
    deleted: false,
    parentVid: v.oldVid,
  })
  // the previous working VDI (or a clone's base) is a snapshot now (cluster_notify_vdi_add)
  if (v.oldVid !== 0) s.vdis.markSnapshot(v.oldVid)
  if (!v.setBitmap && !old) s.vdis.inUse.clear(v.newVid)
  return SD_RES_SUCCESS
}

const alterVdiCopyMain: ClusterOpMain = (s, m) => {
  const v = reqVariant(m.req, REQ_VDI_STATE)
  const state = s.vdis.get(v.newVid)
  if (!state) return SD_RES_NO_VDI
  if (v.copyPolicy !== 0 || v.copies < 1 || v.copies > SD_MAX_COPIES) return SD_RES_INVALID_PARMS
  state.nrCopies = v.copies
  // objects that need more replicas now are recovered without an epoch change
  s.recovery.start(false)
  return SD_RES_SUCCESS
}

const delVdiOpMain: ClusterOpMain = (s, m) => delVdiMain(s, m.rsp)

const readVdisHandler: OpHandler = (s, req) => readBitmap(s.vdis.inUse.bytes, req)

const readDelVdisHandler: OpHandler = (s, req) => readBitmap(s.vdis.deleted.bytes, req)

const flushVdiHandler: OpHandler = () => reply(SD_RES_INVALID_PARMS)

const flushDelCacheHandler: OpHandler = () => reply(SD_RES_SUCCESS)

const getClusterDefaultHandler: OpHandler = (s) =>
  reply(SD_RES_SUCCESS, undefined, RSP_CLUSTER_DEFAULT, {
    nrCopies: s.settings.nrCopies,
    copyPolicy: s.settings.copyPolicy,
    blockSizeShift: s.settings.blockSizeShift,
  })

const getNodeListHandler: OpHandler = (s, req) => {
  const data = encodeNodes(s.members)
  if (data.length > req.dataLength) return reply(SD_RES_BUFFER_SMALL)
  return reply(SD_RES_SUCCESS, data, RSP_NODE, { nrNodes: s.members.length })
}

const shutdownMain: ClusterOpMain = async (s) => {
  await s.shutdown()
  return SD_RES_SUCCESS
}

/** STAT_SHEEP (stat_sheep): every disk's free space plus what its objects occupy, and the free space. */
const statSheepHandler: OpHandler = async (s) => {
  if (s.gateway) return reply(SD_RES_SUCCESS, undefined, RSP_NODE, { storeSize: 0n, storeFree: 0n })
  const { size, used } = await s.store.capacity()
  return reply(SD_RES_SUCCESS, undefined, RSP_NODE, { storeSize: size, storeFree: size - used })
}

const getStoreListHandler: OpHandler = (_s, req) => {
  const data = Buffer.from(STORE_NAMES.map((n) => `${n} `).join(''))
  return data.length > req.dataLength ? reply(SD_RES_BUFFER_SMALL) : reply(SD_RES_SUCCESS, data)
}

const killNodeHandler: OpHandler = (s) => {
  setImmediate(() => s.kill())
  return reply(SD_RES_SUCCESS)
}

const getVdiCopiesHandler: OpHandler = (s, req) => {
  const data = s.vdis.encode(req.dataLength)
  return data ? reply(SD_RES_SUCCESS, data) : reply(SD_RES_BUFFER_SMALL)
}

/** Whether this node stores the object (for an erasure-coded one: the strip of its place). */
function storesObject(s: Sheep, oid: bigint): boolean {
  const key = localStoreKey(s, oid)
  return key !== undefined && s.store.exists(key)
}

const existHandler: OpHandler = (s, req) => reply(storesObject(s, reqVariant(req, REQ_OBJ).oid) ? SD_RES_SUCCESS : SD_RES_NO_OBJ)

const getObjListHandler: OpHandler = async (s, req) => {
  // stale copies count: an object whose current holders all lack it must still be found
  const list = await listForRecovery(s, req.epoch || s.epoch)
  if (typeof list === 'number') return reply(list)
  if (list.length * 8 > req.dataLength) return reply(SD_RES_BUFFER_SMALL)
  const buf = Buffer.alloc(list.length * 8)
  list.forEach((oid, i) => {
    buf.writeBigUInt64LE(oid, i * 8)
  })
  return reply(SD_RES_SUCCESS, buf)
}

const getEpochHandler: OpHandler = (s, req) => {
  const raw = s.epochs.readRaw(reqVariant(req, REQ_OBJ).tgtEpoch)
  if (!raw) return reply(SD_RES_NO_TAG)
  return raw.length > req.dataLength ? reply(SD_RES_BUFFER_SMALL) : reply(SD_RES_SUCCESS, raw)
}

const getHashHandler: OpHandler = async (s, req) => {
  const digest = await s.store.sha1(localStoreKey(s, reqVariant(req, REQ_OBJ).oid) ?? reqVariant(req, REQ_OBJ).oid)
  return typeof digest === 'number' ? reply(digest) : reply(SD_RES_SUCCESS, undefined, RSP_HASH, { digest })
}

const completeRecoveryMain: ClusterOpMain = async (s, m) => {
  if (m.data && m.data.length >= SD_NODE_SIZE) await s.recovery.completed_(reqVariant(m.req, REQ_OBJ).tgtEpoch, decodeNode(m.data))
  return SD_RES_SUCCESS
}

const setRecoveryHandler: OpHandler = (s, _req, data) => setRecoveryThrottle(s, data)

const enableRecoverMain: ClusterOpMain = (s) => {
  s.settings.disableRecovery = false
  s.recovery.resume()
  return SD_RES_SUCCESS
}

const disableRecoverMain: ClusterOpMain = (s) => {
  s.settings.disableRecovery = true
  return SD_RES_SUCCESS
}

const forceRecoverMain: ClusterOpMain = async (s, m) => {
  if (m.rsp.result !== SD_RES_SUCCESS) return m.rsp.result
  await s.forceRecover()
  return SD_RES_SUCCESS
}

const alterClusterCopyMain: ClusterOpMain = async (s, m) => {
  const c = reqVariant(m.req, REQ_CLUSTER)
  if (c.copyPolicy !== 0 || c.copies < 1 || c.copies > SD_MAX_COPIES) return SD_RES_INVALID_PARMS
  s.settings.nrCopies = c.copies
  await s.saveConfig()
  return SD_RES_SUCCESS
}

const reweightMain: ClusterOpMain = (s) => {
  s.reweight()
  return SD_RES_SUCCESS
}

const cleanupMain: ClusterOpMain = async (s) => {
  if (s.recovery.running) return SD_RES_NODE_IN_RECOVERY
  if (s.gateway) return SD_RES_SUCCESS
  return (await s.recovery.purgeStale(() => !s.recovery.running)) ? SD_RES_SUCCESS : SD_RES_NODE_IN_RECOVERY
}

const statHandler: OpHandler = (s) => reply(SD_RES_SUCCESS, encodeSdStat(s.stats))

/** SD_OP_SCRUB (our own, docs/integrity.md): start or stop this node's scrubber; its status either way. */
const scrubHandler: OpHandler = (s, req) => {
  const { action, rateMiB } = reqVariant(req, REQ_SCRUB)
  if (!s.integrity.checksums || s.gateway) return reply(SD_RES_NO_SUPPORT)
  if (action === SCRUB_ACTION_START) s.integrity.startScrub(rateMiB)
  else if (action === SCRUB_ACTION_STOP) s.integrity.stopScrub()
  else if (action !== SCRUB_ACTION_STATUS) return reply(SD_RES_INVALID_PARMS)
  const st = s.integrity.scrub
  const status = writeFields(Buffer.alloc(SCRUB_STATUS_SIZE), SCRUB_STATUS, {
    running: st.running ? 1 : 0,
    rateMiB: Math.round(st.rateMiB),
    objectsDone: BigInt(st.objectsDone),
    objectsTotal: BigInt(st.objectsTotal),
    bytesDone: BigInt(st.bytesDone),
    corrupt: BigInt(st.corrupt),
    repaired: BigInt(st.repaired),
    established: BigInt(st.established),
    unverified: BigInt(st.unverified),
    startedS: BigInt(Math.floor(st.startedMs / 1000)),
    finishedS: BigInt(Math.floor(st.finishedMs / 1000)),
    mismatches: BigInt(s.integrity.mismatches),
    repairs: BigInt(s.integrity.repaired),
  })
  return reply(SD_RES_SUCCESS, status)
}

/**
 * GET_VNODES: the node's own count, as the original's this_node — on an auto-vnode cluster the
 * default a data node starts with, not the share its capacity gives it in the ring.
 */
const getVnodesHandler: OpHandler = (s) => {
  const b = Buffer.alloc(4)
  b.writeInt32LE(s.group.usesAutoVnodes && !s.gateway ? SD_DEFAULT_VNODES : s.self.nrVnodes)
  return reply(SD_RES_SUCCESS, b)
}

const getLoglevelHandler: OpHandler = (s, req) => {
  if (req.dataLength < 4) return reply(SD_RES_INVALID_PARMS)
  const b = Buffer.alloc(4)
  b.writeInt32LE(s.logLevel)
  return reply(SD_RES_SUCCESS, b)
}

const setLoglevelHandler: OpHandler = (s, _req, data) => {
  const level = data && data.length >= 4 ? data.readInt32LE(0) : -1
  if (level < 0 || level >= LOG_LEVEL_NAMES.length) return reply(SD_RES_INVALID_PARMS)
  s.logLevel = level
  s.log.level = sdLevelToPino(level)
  return reply(SD_RES_SUCCESS)
}

// ---- ops of the original kept for its clients: the object list cache, VDI state checkpoints and
// multi-disk, answered as the original answers them for a sheep with one disk

/** NOTIFY_VDI_DEL main phase: the original drops the vid's cached object lists; there are none here. */
const notifyVdiDelMain: ClusterOpMain = () => SD_RES_SUCCESS

/** DELETE_CACHE main phase: a no-op since the object cache was removed (libsheepdog still sends it). */
const deleteCacheMain: ClusterOpMain = () => SD_RES_SUCCESS

/**
 * VDI_STATE_CHECKPOINT_CTL: an original sheep joining a locking cluster asks each member for
 * the VDI states of the epoch before its join. The table here is kept current on every member,
 * so it serves as the checkpoint of any earlier epoch: get → the vid's record (NO_CHECKPOINT_ENTRY
 * for an unknown vid, AGAIN for an epoch not reached yet); free → nothing to free. Clusters
 * without locking ignore it, as the original does.
 */
const vdiStateCheckpointCtlHandler: OpHandler = (s, req) => {
  if (!(s.settings.flags & SD_CLUSTER_FLAG_USE_LOCK)) return reply(SD_RES_SUCCESS)
  const c = reqVariant(req, REQ_VDI_STATE_CHECKPOINT)
  if (c.get === 0) return reply(SD_RES_SUCCESS)
  if (c.tgtEpoch >= s.epoch) return reply(SD_RES_AGAIN)
  const record = s.vdis.encodeOne(c.vid)
  return record ? reply(SD_RES_SUCCESS, record) : reply(SD_RES_NO_CHECKPOINT_ENTRY)
}

/** MD_INFO (md_get_info): each disk with its index, free bytes, the bytes its objects occupy, and path. */
const mdInfoHandler: OpHandler = async (s, req) => {
  if (req.dataLength < MD_INFO_SIZE) return reply(SD_RES_INVALID_PARMS)
  const info = Buffer.alloc(MD_INFO_SIZE)
  const disks = await s.store.usage()
  for (const [idx, disk] of disks.entries()) {
    writeFields(info, MD_INFO_ENTRY, { idx, free: disk.free, used: disk.used, path: disk.path }, idx * MD_INFO_ENTRY_SIZE)
  }
  info.writeInt32LE(disks.length, MD_INFO_NR_AT)
  return reply(SD_RES_SUCCESS, info)
}

/** The comma-separated paths of MD_PLUG / MD_UNPLUG (NUL-terminated), or undefined without any. */
function diskPaths(data: Buffer | undefined): string[] | undefined {
  const paths = data ? cString(data).split(',').filter(Boolean) : []
  return paths.length > 0 ? paths : undefined
}

/** MD_PLUG: adds the disks (each purged first); the objects that belong on them move there. */
const mdPlugHandler: OpHandler = (s, _req, data) => {
  const paths = diskPaths(data)
  if (!paths || s.gateway) return reply(SD_RES_INVALID_PARMS)
  return reply(s.store.plug(paths))
}

/**
 * MD_UNPLUG: takes the disks out; their objects move to the disks left (those that cannot be read
 * are recovered from other replicas). With no disk left the node leaves the cluster and stops,
 * as the original's; UNKNOWN when none of the paths was plugged.
 */
const mdUnplugHandler: OpHandler = (s, _req, data) => {
  const paths = diskPaths(data)
  if (!paths || s.gateway) return reply(SD_RES_INVALID_PARMS)
  const result = s.store.unplug(paths, () => {
    if (s.status === SD_STATUS_OK) s.recovery.start(false)
  })
  if (result === SD_RES_SUCCESS && s.store.diskCount === 0) {
    s.log.warn('no disks plugged, going down')
    setImmediate(() => s.kill())
  }
  return reply(result)
}

export const OPS: ReadonlyMap<number, OpDef> = new Map<number, OpDef>([
  [SD_OP_CREATE_AND_WRITE_OBJ, { kind: 'gateway', handler: gatewayCreateAndWriteObj }],
  [SD_OP_READ_OBJ, { kind: 'gateway', handler: gatewayReadObj }],
  [SD_OP_WRITE_OBJ, { kind: 'gateway', handler: gatewayWriteObj }],
  [SD_OP_REMOVE_OBJ, { kind: 'gateway', handler: gatewayRemoveObj }],
  [SD_OP_DECREF_OBJ, { kind: 'gateway', handler: gatewayDecrefObj }],
  [SD_OP_DECREF_PEER, { kind: 'peer', handler: decrefPeer }],
  [SD_OP_CREATE_AND_WRITE_PEER, peer],
  [SD_OP_READ_PEER, peer],
  [SD_OP_WRITE_PEER, peer],
  [SD_OP_REMOVE_PEER, peer],
  [SD_OP_SYNC_NODES, { kind: 'gateway', handler: gatewaySyncNodes }],
  [SD_OP_SYNC_PEER, { kind: 'peer', handler: syncPeerHandler }],
  [SD_OP_DISCARD_OBJ, { kind: 'local', handler: discardObj }],
  [SD_OP_NEW_VDI, { kind: 'cluster', work: newVdiWork, main: newVdiOpMain }],
  [SD_OP_GET_VDI_INFO, { kind: 'cluster', work: getVdiInfoWork }],
  [SD_OP_LOCK_VDI, { kind: 'cluster', work: getVdiInfoWork, main: lockVdiMain }],
  [SD_OP_RELEASE_VDI, { kind: 'cluster', work: releaseVdiWork, main: releaseVdiMain }],
  [SD_OP_INODE_COHERENCE, { kind: 'cluster', main: inodeCoherenceOpMain }],
  [SD_OP_GET_VDI_ATTR, { kind: 'cluster', work: getVdiAttrWork }],
  [SD_OP_NOTIFY_VDI_ADD, { kind: 'cluster', admin: true, force: true, main: notifyVdiAddMain }],
  [SD_OP_ALTER_VDI_COPY, { kind: 'cluster', admin: true, main: alterVdiCopyMain }],
  [SD_OP_DEL_VDI, { kind: 'cluster', admin: true, work: delVdiWork, main: delVdiOpMain }],
  [SD_OP_READ_VDIS, { kind: 'local', force: true, handler: readVdisHandler }],
  [SD_OP_READ_DEL_VDIS, { kind: 'local', force: true, handler: readDelVdisHandler }],
  [SD_OP_FLUSH_VDI, { kind: 'local', handler: flushVdiHandler }],
  [SD_OP_FLUSH_DEL_CACHE, { kind: 'local', handler: flushDelCacheHandler }],
  [SD_OP_GET_CLUSTER_DEFAULT, { kind: 'local', force: true, handler: getClusterDefaultHandler }],
  [SD_OP_GET_NODE_LIST, { kind: 'local', force: true, handler: getNodeListHandler }],
  [SD_OP_MAKE_FS, { kind: 'cluster', admin: true, force: true, main: makeFsMain }],
  [SD_OP_SHUTDOWN, { kind: 'cluster', admin: true, force: true, main: shutdownMain }],
  [SD_OP_STAT_SHEEP, { kind: 'local', handler: statSheepHandler }],
  [SD_OP_STAT_CLUSTER, { kind: 'local', force: true, handler: statCluster }],
  [SD_OP_CLUSTER_INFO, { kind: 'local', force: true, handler: clusterInfo }],
  [SD_OP_GET_STORE_LIST, { kind: 'local', force: true, handler: getStoreListHandler }],
  [SD_OP_KILL_NODE, { kind: 'local', admin: true, force: true, handler: killNodeHandler }],
  [SD_OP_GET_VDI_COPIES, { kind: 'local', force: true, handler: getVdiCopiesHandler }],
  [SD_OP_EXIST, { kind: 'local', force: true, handler: existHandler }],
  [SD_OP_GET_OBJ_LIST, { kind: 'local', handler: getObjListHandler }],
  [SD_OP_GET_EPOCH, { kind: 'local', handler: getEpochHandler }],
  [SD_OP_GET_HASH, { kind: 'local', handler: getHashHandler }],
  [SD_OP_COMPLETE_RECOVERY, { kind: 'cluster', force: true, main: completeRecoveryMain }],
  [SD_OP_STAT_RECOVERY, { kind: 'local', handler: statRecovery }],
  [SD_OP_GET_RECOVERY, { kind: 'local', force: true, handler: getRecoveryThrottle }],
  [SD_OP_SET_RECOVERY, { kind: 'local', admin: true, force: true, handler: setRecoveryHandler }],
  [SD_OP_ENABLE_RECOVER, { kind: 'cluster', admin: true, main: enableRecoverMain }],
  [SD_OP_DISABLE_RECOVER, { kind: 'cluster', admin: true, main: disableRecoverMain }],
  [SD_OP_FORCE_RECOVER, { kind: 'cluster', admin: true, force: true, work: forceRecoverWork, main: forceRecoverMain }],
  [SD_OP_ALTER_CLUSTER_COPY, { kind: 'cluster', admin: true, main: alterClusterCopyMain }],
  [SD_OP_REWEIGHT, { kind: 'cluster', admin: true, main: reweightMain }],
  [SD_OP_CLEANUP, { kind: 'cluster', admin: true, force: true, main: cleanupMain }],
  [SD_OP_REPAIR_REPLICA, { kind: 'local', admin: true, handler: repairReplica }],
  [SD_OP_OIDS_EXIST, { kind: 'local', force: true, handler: oidsExist }],
  [SD_OP_STAT, { kind: 'local', handler: statHandler }],
  [SD_OP_SCRUB, { kind: 'local', handler: scrubHandler }],
  [SD_OP_SET_VNODES, { kind: 'local', admin: true, handler: setVnodes }],
  [SD_OP_GET_VNODES, { kind: 'local', handler: getVnodesHandler }],
  [SD_OP_GET_LOGLEVEL, { kind: 'local', force: true, handler: getLoglevelHandler }],
  [SD_OP_SET_LOGLEVEL, { kind: 'local', admin: true, force: true, handler: setLoglevelHandler }],
  [SD_OP_NOTIFY_VDI_DEL, { kind: 'cluster', admin: true, force: true, main: notifyVdiDelMain }],
  [SD_OP_DELETE_CACHE, { kind: 'cluster', admin: true, main: deleteCacheMain }],
  [SD_OP_VDI_STATE_CHECKPOINT_CTL, { kind: 'local', handler: vdiStateCheckpointCtlHandler }],
  [SD_OP_MD_INFO, { kind: 'local', handler: mdInfoHandler }],
  [SD_OP_MD_PLUG, { kind: 'local', admin: true, handler: mdPlugHandler }],
  [SD_OP_MD_UNPLUG, { kind: 'local', admin: true, handler: mdUnplugHandler }],
])

/** STAT_RECOVERY: this node's recovery progress (wire-protocol.md §7.7). */
function statRecovery(sheep: Sheep): OpReply {
  const r = sheep.recovery
  const buf = writeFields(Buffer.alloc(RECOVERY_STATE_SIZE), RECOVERY_STATE, {
    inRecovery: r.running ? 1 : 0,
    state: r.state,
    nrFinished: BigInt(r.nrFinished),
    nrTotal: BigInt(r.nrTotal),
  })
  return reply(SD_RES_SUCCESS, buf)
}

/** The longest wait a timer can make (2^31 − 1 ms, about 24.8 days); longer ones would fire at once. */
const MAX_TIMER_MS = 0x7fff_ffff
/** The interval SET_RECOVERY was given, by the throttle it set: GET_RECOVERY answers it to the bit. */
const requestedIntervals = new WeakMap<object, bigint>()

function getRecoveryThrottle(sheep: Sheep): OpReply {
  const t = sheep.recovery.throttle
  const buf = writeFields(Buffer.alloc(RECOVERY_THROTTLING_SIZE), RECOVERY_THROTTLING, {
    maxExecCount: t?.maxExecCount ?? 0,
    queueWorkInterval: t ? (requestedIntervals.get(t) ?? BigInt(t.intervalMs)) : 0n,
    throttling: t ? 1 : 0,
  })
  return reply(SD_RES_SUCCESS, buf)
}

function setRecoveryThrottle(sheep: Sheep, data: Buffer | undefined): OpReply {
  if (!data || data.length < RECOVERY_THROTTLING_SIZE) return reply(SD_RES_INVALID_PARMS)
  const t = readFields(data, RECOVERY_THROTTLING)
  if ((t.maxExecCount === 0) !== (t.queueWorkInterval === 0n)) return reply(SD_RES_INVALID_PARMS)
  if (t.maxExecCount === 0) {
    sheep.recovery.throttle = undefined
  } else {
    // intervals up to 2^64 − 1 ms are accepted and reported back; a timer waits at most ~24.8 days
    const throttle = { maxExecCount: t.maxExecCount, intervalMs: Number(t.queueWorkInterval > BigInt(MAX_TIMER_MS) ? MAX_TIMER_MS : t.queueWorkInterval) }
    requestedIntervals.set(throttle, t.queueWorkInterval)
    sheep.recovery.throttle = throttle
  }
  sheep.log.info(`recovery throttle: ${t.maxExecCount} object(s) per ${t.queueWorkInterval} ms`)
  return reply(SD_RES_SUCCESS)
}

/** FORCE_RECOVER work phase: only a waiting cluster with an epoch can be forced (§7.6). */
async function forceRecoverWork(sheep: Sheep, req: SdRequest): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  const ok = sheep.status === SD_STATUS_WAIT && sheep.epoch > 0
  // the reply carries the node list of the new epoch: the members present now
  const nodes = ok ? encodeNodes(sheep.members) : Buffer.alloc(0)
  const fits = nodes.length <= req.dataLength
  const rsp = encodeResponseHeader({
    opcode: req.opcode,
    epoch: sheep.epoch + (ok ? 1 : 0),
    id: req.id,
    dataLength: fits ? nodes.length : 0,
    result: !ok ? SD_RES_FORCE_RECOVER : fits ? SD_RES_SUCCESS : SD_RES_BUFFER_SMALL,
  })
  return { rsp, data: fits && nodes.length > 0 ? nodes : undefined }
}

/** OIDS_EXIST: the oids of the payload this node does not store (answered with NO_OBJ). */
function oidsExist(sheep: Sheep, req: SdRequest, data: Buffer | undefined): OpReply {
  if (!data) return reply(SD_RES_INVALID_PARMS)
  const missing: bigint[] = []
  for (let at = 0; at + 8 <= data.length; at += 8) {
    const oid = data.readBigUInt64LE(at)
    if (!storesObject(sheep, oid)) missing.push(oid)
  }
  if (missing.length === 0) return reply(SD_RES_SUCCESS)
  const out = Buffer.alloc(missing.length * 8)
  missing.forEach((oid, i) => {
    out.writeBigUInt64LE(oid, i * 8)
  })
  return reply(SD_RES_NO_OBJ, out.subarray(0, Math.min(out.length, req.dataLength)))
}

/**
 * REPAIR_REPLICA: copy an object from the named node into the local store (`dog vdi check`),
 * replacing the local replica — in pieces, as objects may be bigger than one request.
 */
async function repairReplica(sheep: Sheep, req: SdRequest): Promise<OpReply> {
  const f = reqVariant(req, REQ_FORW)
  if (sheep.gateway) return reply(SD_RES_INVALID_PARMS)
  // the request names the source by its main address; a member's record adds its I/O NIC
  const source = sheep.members.find((m) => sameNode(m, f)) ?? { addr: f.addr, port: f.port, ioAddr: Buffer.alloc(SD_ADDR_LEN), ioPort: 0 }
  const read = peerPieceReader(sheep, source, f.oid)
  try {
    return reply(await copyObject(sheep.store, f.oid, objectSizeFor(sheep, f.oid), read))
  } catch (e) {
    sheep.log.error(`repair of ${f.oid.toString(16)} failed: ${String(e)}`)
    return reply(SD_RES_EIO)
  }
}

/** True while the cluster waits: everything but force ops is refused with the waiting result. */
export function waitingResult(sheep: Sheep): number | undefined {
  if (sheep.status !== SD_STATUS_WAIT) return undefined
  return sheep.settings.ctime === 0n ? SD_RES_WAIT_FOR_FORMAT : SD_RES_WAIT_FOR_JOIN
}
