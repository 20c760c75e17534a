// VDI namespace operations (wire-protocol.md §9.3, §12.3–12.7; behaviour.md §10): lookup by
// name/tag/snapid through the bitmaps and inode headers, create / clone / snapshot, delete, the
// lock ops and the inode coherence of shared locks. The work phases run on the receiving node
// under the cluster-wide block; the main phases (in the `*Main` functions) run on every member
// in order.
import {
  REQ_INODE_COHERENCE,
  REQ_VDI,
  REQ_VDI_STATE,
  RSP_VDI,
  type SdRequest,
  type SdResponse,
  encodeRequestHeader,
  encodeResponseHeader,
  reqVariant,
  rspVariant,
} from '../lib/codec.js'
import { SdError } from '../lib/errors.js'
import { sdHashAttrId, sdHashVdi } from '../lib/hash.js'
import {
  SD_INODE_GREF_AT,
  SD_INODE_HEADER_SIZE,
  SD_INODE_INDEX_AT,
  SD_INODE_INDEX_SIZE,
  SD_INODE_LOOKUP_SIZE,
  SD_INODE_SIZE,
  OLD_SD_INODE_SIZE,
  type InodeHeader,
  decodeInodeHeader,
  encodeInodeHeader,
  updateInodeHeader,
} from '../lib/inode.js'
import {
  BTREE_HEADER_SIZE,
  BTREE_INDIRECT_DEPTH,
  BTREE_INDIRECT_ENTRY_SIZE,
  BTREE_LEAF_DEPTH,
  BTREE_MAGIC,
  BTREE_ROOT_AT,
  HYPER_VOLUME_STORE_POLICY,
  decodeBtreeHeader,
  decodeIndirectEntries,
  encodeBtreeHeader,
  encodeIndirectEntries,
  indexNodeOids,
  walkIndexLeaves,
} from '../lib/inode-index.js'
import { cString, readFields, writeFields } from '../lib/layout.js'
import { isVdiAttrObj, oidToVid, vidToAttrOid, vidToBtreeOid, vidToDataOid, vidToVdiOid } from '../lib/oid.js'
import {
  SD_DEFAULT_COPIES,
  SD_MAX_VDI_LEN,
  SD_MAX_VDI_TAG_LEN,
  SD_RES_BASE_VDI_READ,
  SD_RES_BASE_VDI_WRITE,
  SD_RES_FULL_VDI,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_BASE_VDI,
  SD_RES_NO_TAG,
  SD_RES_NO_VDI,
  SD_RES_SUCCESS,
  SD_RES_VDI_EXIST,
  SD_RES_VDI_LOCKED,
  SD_RES_VDI_NOT_LOCKED,
  SD_RES_VDI_WRITE,
  SD_RES_SYSTEM_ERROR,
  SD_FLAG_CMD_CREAT,
  SD_FLAG_CMD_EXCL,
  SD_FLAG_CMD_DEL,
  SD_RES_NO_OBJ,
  SD_OP_INODE_COHERENCE,
  SD_OP_NOTIFY_VDI_ADD,
  SD_OP_REMOVE_OBJ,
  LOCK_TYPE_SHARED,
  SD_CLUSTER_FLAG_RECYCLE_VID,
} from '../lib/proto.js'
import {
  LOCK_STATE_NORMAL,
  LOCK_STATE_SHARED,
  LOCK_STATE_UNLOCKED,
  NODE_ID,
  SD_NODE_ID_SIZE,
  VDI_ATTR,
  VDI_ATTR_SIZE,
  VDI_ATTR_VALUE_AT,
  VDI_STATE_MAX_PARTICIPANTS,
} from '../lib/structs.js'
import { gatewayWriteAll, readObject, writeObject } from './replica-io.js'
import { type LookupResult, lookupVid } from './vdi-lookup.js'
import type { Sheep } from './sheep.js'

/** LOCK_VDI / RELEASE_VDI `type`: 0 normal, 1 shared (multipath iSCSI). */
/** Shared-lock participant states (wire-protocol.md §7.6). */
export const SHARED_LOCK_STATE_MODIFIED = 1
export const SHARED_LOCK_STATE_SHARED = 2
export const SHARED_LOCK_STATE_INVALIDATED = 3

interface VdiName {
  name: string
  tag: string
}

/** name[256] and the optional tag[256] of a VDI request payload. */
export function parseVdiPayload(data: Buffer | undefined): VdiName | undefined {
  if (!data || data.length < SD_MAX_VDI_LEN) return undefined
  const tagEnd = SD_MAX_VDI_LEN + SD_MAX_VDI_TAG_LEN
  return { name: cString(data.subarray(0, SD_MAX_VDI_LEN)), tag: data.length >= tagEnd ? cString(data.subarray(SD_MAX_VDI_LEN, tagEnd)) : '' }
}

function nowTimestamp(): bigint {
  const ms = Date.now()
  return (BigInt(Math.floor(ms / 1000)) << 32n) | BigInt((ms % 1000) * 1_000_000)
}

/** True when the cluster was formatted with -R: deleted families give their vids back. */
export function recyclesVids(sheep: Sheep): boolean {
  return (sheep.settings.flags & SD_CLUSTER_FLAG_RECYCLE_VID) !== 0
}

/** The lookup of wire-protocol.md §9.3 (vdi-lookup.ts) on this node's bitmaps, inodes read through the gateway. */
export function lookupVdi(sheep: Sheep, name: string, tag: string, snapid: number): Promise<LookupResult> {
  const read = async (vid: number): Promise<InodeHeader | undefined> => {
    try {
      return decodeInodeHeader(await readObject(sheep, vidToVdiOid(vid), 0, SD_INODE_LOOKUP_SIZE))
    } catch {
      return undefined
    }
  }
  return lookupVid(sheep.vdis, read, { name, tag, snapid }, sdHashVdi(name), recyclesVids(sheep))
}

function vdiReply(sheep: Sheep, req: SdRequest, result: number, vid: number, broadcast?: Buffer): { rsp: Buffer; data: Buffer | undefined } {
  const state = sheep.vdis.get(vid)
  const rsp = encodeResponseHeader({
    opcode: req.opcode,
    epoch: sheep.epoch,
    id: req.id,
    dataLength: 0,
    result,
    variant: RSP_VDI,
    fields: { vdiId: vid, copies: state?.nrCopies ?? 0, blockSizeShift: state?.blockSizeShift ?? 0 },
  })
  return { rsp, data: broadcast }
}

/**
 * The state record every member registers for a new vid before its inode is written: the
 * original's notify_vdi_add, a NOTIFY_VDI_ADD broadcast from the work phase (the cluster-wide
 * block is held; notifies still go through). `oldVid` — the working VDI a snapshot turns into a
 * snapshot, a clone's base — becomes a snapshot and the new vid's parent.
 */
interface NewVdiNotice {
  vid: number
  nrCopies: number
  copyPolicy: number
  blockSizeShift: number
  oldVid: number
}

async function notifyVdiAdd(sheep: Sheep, n: NewVdiNotice): Promise<number> {
  const req = encodeRequestHeader({
    opcode: SD_OP_NOTIFY_VDI_ADD,
    variant: REQ_VDI_STATE,
    fields: { oldVid: n.oldVid, newVid: n.vid, copies: n.nrCopies, setBitmap: 0, copyPolicy: n.copyPolicy, blockSizeShift: n.blockSizeShift },
  })
  const r = await sheep.broadcastOp(req, undefined)
  if (r.result !== SD_RES_SUCCESS) {
    sheep.log.error(`fail to notify vdi add event(${n.vid.toString(16)}, ${n.nrCopies}, ${n.oldVid.toString(16)}, ${n.blockSizeShift})`)
  }
  return r.result
}

/** NEW_VDI work phase: create, clone (base ≠ 0) or snapshot (snapid ≠ 0). */
export async function newVdiWork(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  const fail = (result: number) => vdiReply(sheep, req, result, 0)
  const names = parseVdiPayload(data)
  if (!names || names.name === '') return fail(SD_RES_INVALID_PARMS)
  const v = reqVariant(req, REQ_VDI)
  const found = await lookupVdi(sheep, names.name, '', 0)
  if (found.result === SD_RES_FULL_VDI) return fail(SD_RES_FULL_VDI)
  const newVid = found.freeVid
  // the answer a full vid space gives a create once the name's own checks passed (-R finds no free vid)
  const full = newVid === 0
  const copyPolicy = v.copies === 0 ? sheep.settings.copyPolicy : v.copyPolicy
  const nrCopies = v.copies || sheep.settings.nrCopies || SD_DEFAULT_COPIES
  const blockSizeShift = v.blockSizeShift || sheep.settings.blockSizeShift
  const notice: NewVdiNotice = { vid: newVid, nrCopies, copyPolicy, blockSizeShift, oldVid: 0 }

  let header: InodeHeader = {
    name: names.name,
    tag: '',
    createTime: nowTimestamp(),
    snapCtime: 0n,
    vmClockNsec: 0n,
    vdiSize: v.vdiSize,
    vmStateSize: 0n,
    copyPolicy,
    storePolicy: v.storePolicy,
    nrCopies,
    blockSizeShift,
    snapId: 1,
    vdiId: newVid,
    parentVdiId: 0,
    btreeCounter: 0,
  }
  let inheritedBody: Buffer | undefined
  if (v.snapid === 0) {
    if (found.result === SD_RES_SUCCESS) return fail(SD_RES_VDI_EXIST)
    if (found.result !== SD_RES_NO_VDI) return fail(found.result)
    if (full) return fail(SD_RES_FULL_VDI)
    header.snapId = found.nextSnapid
    if (v.baseVdiId !== 0) {
      const base = await shareFrom(sheep, v.baseVdiId)
      if (typeof base === 'number') return fail(base)
      inheritedBody = base.body
      header = {
        ...header,
        parentVdiId: v.baseVdiId,
        nrCopies: base.header.nrCopies,
        copyPolicy: base.header.copyPolicy,
        blockSizeShift: base.header.blockSizeShift,
      }
      notice.oldVid = v.baseVdiId
    }
  } else {
    // snapshot: the working VDI becomes the snapshot, a new working VDI takes a new vid
    if (found.result !== SD_RES_SUCCESS) return fail(found.result)
    if (full) return fail(SD_RES_FULL_VDI)
    const working = found.vid
    const baseVid = v.baseVdiId || working
    const base = await shareFrom(sheep, baseVid)
    if (typeof base === 'number') return fail(base)
    const marked = await markSnapshotted(sheep, working, baseVid, base)
    if (marked !== SD_RES_SUCCESS) return fail(marked)
    inheritedBody = base.body
    header = {
      ...header,
      snapId: found.nextSnapid,
      parentVdiId: baseVid,
      vdiSize: v.vdiSize || base.header.vdiSize,
      nrCopies: base.header.nrCopies,
      copyPolicy: base.header.copyPolicy,
      blockSizeShift: base.header.blockSizeShift,
    }
    notice.oldVid = working
  }
  if (inheritedBody && header.storePolicy === HYPER_VOLUME_STORE_POLICY) {
    header.btreeCounter = await copyIndexNodes(sheep, inheritedBody, newVid, header.nrCopies)
  }
  notice.nrCopies = header.nrCopies
  notice.copyPolicy = header.copyPolicy
  notice.blockSizeShift = header.blockSizeShift
  // every member registers the vid before the inode is written (the original's order)
  const added = await notifyVdiAdd(sheep, notice)
  if (added !== SD_RES_SUCCESS) return fail(added)
  const inode = inheritedBody ?? freshInodeBody(header.storePolicy)
  updateInodeHeader(inode, header)
  try {
    await writeObject(sheep, vidToVdiOid(newVid), 0, inode, { create: true, copies: header.nrCopies })
  } catch (e) {
    // whatever the gateway answered (HALT in a strict cluster short of zones, or with no data
    // node at all), the original's create_vdi reports a failed inode write as VDI_WRITE
    if (e instanceof SdError) return fail(SD_RES_VDI_WRITE)
    throw e
  }
  return vdiReply(sheep, req, SD_RES_SUCCESS, newVid)
}

/**
 * A snapshot's inode updates before the new working VDI exists: the snap_ctime of the working
 * VDI (when the client named another base) and the base's header. Like the original's
 * snapshot_vdi, a failed read answers BASE_VDI_READ and a failed write BASE_VDI_WRITE (an inode
 * deleted meanwhile by a racing client, for one) instead of throwing out of the request.
 */
async function markSnapshotted(sheep: Sheep, working: number, baseVid: number, base: { header: InodeHeader; rawHeader: Buffer }): Promise<number> {
  let w: InodeHeader | undefined
  if (baseVid !== working) {
    try {
      w = decodeInodeHeader(await readObject(sheep, vidToVdiOid(working), 0, SD_INODE_HEADER_SIZE))
    } catch (e) {
      if (e instanceof SdError) return SD_RES_BASE_VDI_READ
      throw e
    }
  }
  try {
    if (w) await writeObject(sheep, vidToVdiOid(working), 0, encodeInodeHeader({ ...w, snapCtime: nowTimestamp() }), { create: false, copies: w.nrCopies })
    await writeObject(sheep, vidToVdiOid(baseVid), 0, updateInodeHeader(base.rawHeader, baseVid === working ? { snapCtime: nowTimestamp() } : {}), {
      create: false,
      copies: base.header.nrCopies,
    })
  } catch (e) {
    if (e instanceof SdError) return SD_RES_BASE_VDI_WRITE
    throw e
  }
  return SD_RES_SUCCESS
}

/** The part of a fresh inode that is not zeros: its header, and a hyper volume's empty B-tree root (sd_inode_init). */
function freshInodeBody(storePolicy: number): Buffer {
  if (storePolicy !== HYPER_VOLUME_STORE_POLICY) return Buffer.alloc(SD_INODE_HEADER_SIZE)
  return Buffer.concat([Buffer.alloc(BTREE_ROOT_AT), encodeBtreeHeader(BTREE_LEAF_DEPTH, 0)])
}

/**
 * Makes `baseVid`'s objects shared by one more child (wire-protocol.md §12.4): the base's gref
 * counts go up by one for every allocated index, and the child's inode body (index + gref with
 * generation + 1) is returned.
 */
async function shareFrom(sheep: Sheep, baseVid: number): Promise<{ header: InodeHeader; rawHeader: Buffer; body: Buffer } | number> {
  let whole: Buffer
  try {
    whole = await readObject(sheep, vidToVdiOid(baseVid), 0, SD_INODE_SIZE)
  } catch (e) {
    return e instanceof SdError ? SD_RES_NO_BASE_VDI : SD_RES_SYSTEM_ERROR
  }
  const header = decodeInodeHeader(whole)
  if (header.name === '') return SD_RES_NO_BASE_VDI
  const child = Buffer.alloc(SD_INODE_SIZE)
  whole.copy(child, SD_INODE_INDEX_AT, SD_INODE_INDEX_AT, OLD_SD_INODE_SIZE)
  let touched = false
  for (let i = 0; i < (OLD_SD_INODE_SIZE - SD_INODE_INDEX_AT) / 4; i++) {
    if (whole.readUInt32LE(SD_INODE_INDEX_AT + 4 * i) === 0) continue
    const g = SD_INODE_GREF_AT + 8 * i
    whole.writeInt32LE(whole.readInt32LE(g + 4) + 1, g + 4)
    child.writeInt32LE(whole.readInt32LE(g) + 1, g)
    touched = true
  }
  if (touched) {
    try {
      await writeObject(sheep, vidToVdiOid(baseVid), SD_INODE_GREF_AT, whole.subarray(SD_INODE_GREF_AT), { create: false, copies: header.nrCopies })
    } catch (e) {
      // the base deleted between the read and this write (a racing client): the original's
      // clone_vdi and snapshot_vdi answer a failed write of the base so
      if (e instanceof SdError) return SD_RES_BASE_VDI_WRITE
      throw e
    }
  }
  return { header, rawHeader: Buffer.from(whole.subarray(0, SD_INODE_HEADER_SIZE)), body: child }
}

/**
 * A snapshot or clone of a depth-2 hyper volume gets node objects of its own, copies of its
 * base's, and its root (in `body`) points at them (the original's sd_inode_copy_vdis): its writes
 * must not change the base's index, nor a deletion of either take the other's nodes. Returns the
 * new volume's btree_counter.
 */
async function copyIndexNodes(sheep: Sheep, body: Buffer, newVid: number, copies: number): Promise<number> {
  const root = decodeBtreeHeader(body.subarray(BTREE_ROOT_AT, BTREE_ROOT_AT + BTREE_HEADER_SIZE))
  if (root.magic !== BTREE_MAGIC || root.depth !== BTREE_INDIRECT_DEPTH) return 0
  const at = BTREE_ROOT_AT + BTREE_HEADER_SIZE
  const pointers = decodeIndirectEntries(body.subarray(at, at + root.entries * BTREE_INDIRECT_ENTRY_SIZE), root.entries)
  const copied = []
  for (const [counter, pointer] of pointers.entries()) {
    const oid = vidToBtreeOid(newVid, counter)
    await writeObject(sheep, oid, 0, await readObject(sheep, pointer.oid, 0, SD_INODE_INDEX_SIZE), { create: true, copies })
    copied.push({ ...pointer, oid })
  }
  encodeIndirectEntries(copied).copy(body, at)
  return copied.length
}

/** NEW_VDI main phase (post_cluster_new_vdi): the vid the work created is in use; its state came with NOTIFY_VDI_ADD. */
export function newVdiMain(sheep: Sheep, rsp: SdResponse): number {
  if (rsp.result !== SD_RES_SUCCESS) return rsp.result
  const { vdiId, copies, blockSizeShift } = rspVariant(rsp, RSP_VDI)
  // a state the notify did not bring (never, from sheep of either kind): the answer's fields
  if (!sheep.vdis.get(vdiId)) {
    sheep.vdis.add({ vid: vdiId, nrCopies: copies, copyPolicy: 0, blockSizeShift, snapshot: false, deleted: false, parentVid: 0 })
  }
  sheep.vdis.inUse.set(vdiId)
  return rsp.result
}

/** GET_VDI_INFO and LOCK_VDI work phase: resolve name/tag/snapid to a vid. */
export async function getVdiInfoWork(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  const names = parseVdiPayload(data)
  if (!names) return vdiReply(sheep, req, SD_RES_INVALID_PARMS, 0)
  const v = reqVariant(req, REQ_VDI)
  const found = await lookupVdi(sheep, names.name, names.tag, v.snapid)
  if (found.result !== SD_RES_SUCCESS) return vdiReply(sheep, req, found.result, 0)
  return vdiReply(sheep, req, SD_RES_SUCCESS, found.vid)
}

/**
 * DEL_VDI work phase (§12.7): a VDI whose index still has entries is left as it is (the client
 * clears the index first) but still reported deleted; an empty one gets its name and size zeroed.
 * A hyper volume's index is its B-tree, which no client clears: the sheep removes the objects the
 * volume owns (as the original's delete_vdi_work) and then empties the inode's index.
 */
export async function delVdiWork(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  const names = parseVdiPayload(data)
  if (!names) return vdiReply(sheep, req, SD_RES_INVALID_PARMS, 0)
  const v = reqVariant(req, REQ_VDI)
  const found = await lookupVdi(sheep, names.name, names.tag, v.snapid)
  if (found.result !== SD_RES_SUCCESS) return vdiReply(sheep, req, found.result, 0)
  const oid = vidToVdiOid(found.vid)
  const head = await readObject(sheep, oid, 0, SD_INODE_HEADER_SIZE)
  const inode = decodeInodeHeader(head)
  const deleted = updateInodeHeader(head, { name: '', vdiSize: 0n })
  if (inode.storePolicy === HYPER_VOLUME_STORE_POLICY) {
    const removed = await reclaimHyperVolume(sheep, found.vid)
    sheep.log.info(`VDI ${names.name} (vid ${found.vid.toString(16)}): ${removed} object(s) of the hyper volume removed`)
    // the header and an index of zeros: no B-tree left to point at what was removed
    const emptied = Buffer.alloc(OLD_SD_INODE_SIZE)
    deleted.copy(emptied)
    await writeObject(sheep, oid, 0, emptied, { create: false, copies: inode.nrCopies })
  } else {
    const index = await readObject(sheep, oid, SD_INODE_INDEX_AT, OLD_SD_INODE_SIZE - SD_INODE_INDEX_AT)
    if (index.some((b) => b !== 0)) {
      sheep.log.warn(`VDI ${names.name} (vid ${found.vid.toString(16)}) still has data objects; its inode is kept`)
    } else {
      await writeObject(sheep, oid, 0, deleted, { create: false, copies: inode.nrCopies })
    }
  }
  return vdiReply(sheep, req, SD_RES_SUCCESS, found.vid)
}

/** How many objects a hyper volume's deletion removes at a time. */
const HYPER_VOLUME_REMOVALS_IN_FLIGHT = 16

/**
 * Removes, on every replica, the data objects a hyper volume's B-tree says `vid` owns (entries of
 * other vids belong to the snapshot they came from and stay, as in the original: hyper volumes
 * have no reference counts) and the volume's own B-tree node objects (which the original left
 * behind). Returns how many objects were removed.
 */
async function reclaimHyperVolume(sheep: Sheep, vid: number): Promise<number> {
  const inodeOid = vidToVdiOid(vid)
  const io = { read: (oid: bigint, offset: number, length: number) => readObject(sheep, oid, offset, length) }
  const root = decodeBtreeHeader(await readObject(sheep, inodeOid, BTREE_ROOT_AT, BTREE_HEADER_SIZE))
  const doomed: bigint[] = []
  for await (const leaf of walkIndexLeaves(io, inodeOid, root)) {
    for (const [idx, owner] of leaf) if (owner === vid) doomed.push(vidToDataOid(vid, idx))
  }
  for (const node of await indexNodeOids(io, inodeOid, root)) if (oidToVid(node) === vid) doomed.push(node)
  let removed = 0
  for (let at = 0; at < doomed.length; at += HYPER_VOLUME_REMOVALS_IN_FLIGHT) {
    const batch = doomed.slice(at, at + HYPER_VOLUME_REMOVALS_IN_FLIGHT)
    const results = await Promise.all(
      batch.map((oid) =>
        gatewayWriteAll(sheep, SD_OP_REMOVE_OBJ, { oid, cowOid: 0n, copies: 0, copyPolicy: 0, ecIndex: 0, tgtEpoch: 0, offset: 0 }, undefined),
      ),
    )
    results.forEach((r, i) => {
      if (r.result === SD_RES_SUCCESS) removed++
      else if (r.result !== SD_RES_NO_OBJ) sheep.log.error(`remove object ${batch[i].toString(16).padStart(16, '0')} fail, result 0x${r.result.toString(16)}`)
    })
  }
  return removed
}

/** DEL_VDI main phase on every member: the vid is marked deleted; with -R its family may be collected. */
/** DEL_VDI main phase (post_cluster_del_vdi): the vid the work deleted, from its answer. */
export async function delVdiMain(sheep: Sheep, rsp: SdResponse): Promise<number> {
  const result = rsp.result
  if (result !== SD_RES_SUCCESS) return result
  const vid = rspVariant(rsp, RSP_VDI).vdiId
  sheep.vdis.markDeleted(vid)
  if (recyclesVids(sheep)) await collectFamily(sheep, vid)
  return result
}

/**
 * RECYCLE_VID garbage collection (behaviour.md §15.2, the original's run_vid_gc): when the
 * deletion of `vid` leaves its whole family deleted, every member's state and bits go and this
 * node drops what it stores of those vids — inodes, and any data, vmstate or B-tree object left
 * behind — so a VDI that gets one of the vids later starts empty. Attribute objects stay: they
 * live in the vid space of their name's hash, not of a VDI. The removals are queued before this
 * returns (the store keeps each object's operations in order), so a create of a reused vid that
 * arrives afterwards cannot be undone by them.
 */
function collectFamily(sheep: Sheep, vid: number): Promise<unknown> {
  const family = sheep.vdis.family(vid)
  if (family.length === 0) {
    sheep.log.error(`vid ${vid.toString(16)} doesn't have its entry`)
    return Promise.resolve()
  }
  const root = family[0].vid.toString(16)
  if (!family.every((member) => member.deleted)) {
    sheep.log.info(`not all members of the family (root: ${root}) are deleted`)
    return Promise.resolve()
  }
  sheep.log.info(`all members of the family (root: ${root}) are deleted`)
  const vids = new Set(family.map((member) => member.vid))
  for (const member of vids) sheep.vdis.remove(member)
  const removals = sheep.store
    .list()
    .filter((oid) => vids.has(oidToVid(oid)) && !isVdiAttrObj(oid))
    .map((oid) => sheep.store.remove(oid))
  return Promise.all(removals)
}

/**
 * GET_VDI_ATTR work phase (wire-protocol.md §12.9): find, create or delete an attribute object
 * in the vid space of the name's hash, probing attribute ids from the key's hash.
 */
export async function getVdiAttrWork(sheep: Sheep, req: SdRequest, data: Buffer | undefined): Promise<{ rsp: Buffer; data: Buffer | undefined }> {
  const answer = (result: number, fields: { vdiId?: number; attrId?: number; copies?: number } = {}) => ({
    rsp: encodeResponseHeader({ opcode: req.opcode, epoch: sheep.epoch, id: req.id, dataLength: 0, result, variant: RSP_VDI, fields }),
    data: undefined,
  })
  if (!data || data.length < VDI_ATTR_SIZE) return answer(SD_RES_INVALID_PARMS)
  const attr = readFields(data, VDI_ATTR)
  const v = reqVariant(req, REQ_VDI)
  const found = await lookupVdi(sheep, attr.name, attr.tag, v.snapid)
  if (found.result !== SD_RES_SUCCESS) return answer(found.result)
  const inode = decodeInodeHeader(await readObject(sheep, vidToVdiOid(found.vid), 0, SD_INODE_LOOKUP_SIZE))
  const copies = inode.nrCopies
  const hashVid = sdHashVdi(attr.name) || 1
  const create = (req.flags & SD_FLAG_CMD_CREAT) !== 0
  const excl = (req.flags & SD_FLAG_CMD_EXCL) !== 0
  const del = (req.flags & SD_FLAG_CMD_DEL) !== 0
  const payload = Buffer.from(data.subarray(0, VDI_ATTR_SIZE))
  writeFields(payload, VDI_ATTR, { ctime: inode.createTime })
  const name = data.subarray(0, 256)
  const tag = data.subarray(256, 512)
  const key = data.subarray(528, 784)
  let attrId = sdHashAttrId(name, tag, attr.snapId, key) >>> 0
  const done = (result: number) => answer(result, { vdiId: hashVid, attrId, copies })
  for (let probe = 0; probe < VDI_ATTR_MAX_PROBES; probe++, attrId = (attrId + 1) >>> 0) {
    const oid = vidToAttrOid(hashVid, attrId)
    if (create && !excl) {
      await writeObject(sheep, oid, 0, payload, { create: true, copies })
      return done(SD_RES_SUCCESS)
    }
    let stored: Buffer
    try {
      stored = await readObject(sheep, oid, 0, VDI_ATTR_VALUE_AT, copies)
    } catch (e) {
      if (!(e instanceof SdError) || e.code !== SD_RES_NO_OBJ) throw e
      if (!create) return done(SD_RES_NO_OBJ)
      await writeObject(sheep, oid, 0, payload, { create: true, copies })
      return done(SD_RES_SUCCESS)
    }
    const same = stored.subarray(0, 512).equals(data.subarray(0, 512)) && stored.readUInt32LE(520) === attr.snapId && stored.subarray(528, 784).equals(key)
    if (!same) continue
    if (excl) return done(SD_RES_VDI_EXIST)
    if (del) {
      await writeObject(sheep, oid, 0, Buffer.alloc(1), { create: false, copies })
      return done(SD_RES_SUCCESS)
    }
    if (create) await writeObject(sheep, oid, 0, payload, { create: true, copies })
    return done(SD_RES_SUCCESS)
  }
  return done(SD_RES_FULL_VDI)
}

/** How many attribute ids are probed before giving up. */
const VDI_ATTR_MAX_PROBES = 4096

/** LOCK_VDI / RELEASE_VDI with USE_LOCK (behaviour.md §10): who locks is the receiving node. */
export function lockMain(sheep: Sheep, vid: number, owner: Buffer, type: number): number {
  const state = sheep.vdis.get(vid)
  if (!state) return SD_RES_NO_VDI
  if (type === LOCK_TYPE_SHARED) {
    if (state.lockState === LOCK_STATE_NORMAL) return SD_RES_VDI_LOCKED
    if (state.participants.some((p) => p.equals(owner))) return SD_RES_SUCCESS
    if (state.participants.length >= VDI_STATE_MAX_PARTICIPANTS) return SD_RES_VDI_LOCKED
    const someModified = state.participantStates.includes(SHARED_LOCK_STATE_MODIFIED)
    state.participants.push(owner)
    state.participantStates.push(
      state.participants.length === 1 ? SHARED_LOCK_STATE_MODIFIED : someModified ? SHARED_LOCK_STATE_INVALIDATED : SHARED_LOCK_STATE_SHARED,
    )
    state.lockState = LOCK_STATE_SHARED
    return SD_RES_SUCCESS
  }
  if (state.lockState !== LOCK_STATE_UNLOCKED) return SD_RES_VDI_LOCKED
  state.lockState = LOCK_STATE_NORMAL
  state.lockOwner = owner
  return SD_RES_SUCCESS
}

export function unlockMain(sheep: Sheep, vid: number, owner: Buffer, type: number): number {
  const state = sheep.vdis.get(vid)
  if (!state || state.lockState === LOCK_STATE_UNLOCKED) return SD_RES_VDI_NOT_LOCKED
  if (type === LOCK_TYPE_SHARED) {
    const at = state.participants.findIndex((p) => p.equals(owner))
    if (at < 0) return SD_RES_VDI_NOT_LOCKED
    state.participants.splice(at, 1)
    state.participantStates.splice(at, 1)
    if (state.participants.length === 0) state.lockState = LOCK_STATE_UNLOCKED
    return SD_RES_SUCCESS
  }
  if (state.lockState !== LOCK_STATE_NORMAL) return SD_RES_VDI_NOT_LOCKED
  state.lockState = LOCK_STATE_UNLOCKED
  state.lockOwner = Buffer.alloc(SD_NODE_ID_SIZE)
  return SD_RES_SUCCESS
}

/**
 * Inode coherence between the tgt gateways of a shared lock (behaviour.md §10): this node's
 * participant state for `vid`, undefined when the VDI is not shared-locked with this node.
 */
function ownParticipantState(sheep: Sheep, vid: number): number | undefined {
  const state = sheep.vdis.get(vid)
  if (!state || state.lockState !== LOCK_STATE_SHARED) return undefined
  const me = nodeIdOf(sheep.self)
  const at = state.participants.findIndex((p) => p.equals(me))
  return at < 0 ? undefined : state.participantStates[at]
}

/** True when this node's copy of the working VDI's inode is stale: CMD_TGT I/O answers INODE_INVALIDATED. */
export function inodeRefreshRequired(sheep: Sheep, vid: number): boolean {
  const state = sheep.vdis.get(vid)
  if (!state || state.snapshot) return false
  return ownParticipantState(sheep, vid) === SHARED_LOCK_STATE_INVALIDATED
}

/** Broadcasts INODE_COHERENCE for `vid` from this node and waits for its own main phase. */
async function broadcastCoherence(sheep: Sheep, vid: number, validate: boolean): Promise<void> {
  const req = encodeRequestHeader({ opcode: SD_OP_INODE_COHERENCE, variant: REQ_INODE_COHERENCE, fields: { vid, validate: validate ? 1 : 0 } })
  const r = await sheep.broadcastOp(req, undefined)
  if (r.result !== SD_RES_SUCCESS)
    sheep.log.error(`failed to ${validate ? 'validate' : 'invalidate'} the inode of ${vid.toString(16)}: result 0x${r.result.toString(16)}`)
}

/** After this node re-read the whole inode: an invalidated participant becomes valid again. */
export async function validateInode(sheep: Sheep, vid: number): Promise<void> {
  if (inodeRefreshRequired(sheep, vid)) await broadcastCoherence(sheep, vid, true)
}

/** Before an index update through this node: it becomes the modifier, every other participant is invalidated. */
export async function invalidateOtherInodes(sheep: Sheep, vid: number): Promise<void> {
  const own = ownParticipantState(sheep, vid)
  if (own !== undefined && own !== SHARED_LOCK_STATE_MODIFIED) await broadcastCoherence(sheep, vid, false)
}

/**
 * INODE_COHERENCE main phase on every member. Validate: the sender and every participant that
 * is not invalidated become shared (others re-validate themselves). Invalidate: the sender
 * becomes the modifier, every other participant invalidated.
 */
export function inodeCoherenceMain(sheep: Sheep, vid: number, validate: boolean, sender: Buffer): number {
  const state = sheep.vdis.get(vid)
  if (!state) return SD_RES_NO_VDI
  // a participant released the lock after the broadcast was sent: nothing left to keep coherent
  if (state.lockState !== LOCK_STATE_SHARED) return SD_RES_SUCCESS
  const isSender = state.participants.map((p) => p.equals(sender))
  if (validate) {
    state.participantStates = state.participantStates.map((st, i) => (!isSender[i] && st === SHARED_LOCK_STATE_INVALIDATED ? st : SHARED_LOCK_STATE_SHARED))
    return SD_RES_SUCCESS
  }
  if (!isSender.includes(true)) return SD_RES_NO_VDI
  state.participantStates = isSender.map((me) => (me ? SHARED_LOCK_STATE_MODIFIED : SHARED_LOCK_STATE_INVALIDATED))
  return SD_RES_SUCCESS
}

/** A node's node_id (40 bytes): what lock owners and participants are recorded as. */
export function nodeIdOf(node: { addr: Buffer; port: number; ioAddr: Buffer; ioPort: number }): Buffer {
  return writeFields(Buffer.alloc(SD_NODE_ID_SIZE), NODE_ID, node)
}
