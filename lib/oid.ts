// Object ids (oids): the u64 bit layout that names inode, data, vmstate, attribute, B-tree and
// ledger objects, the sizes of those objects and the inode offsets of a data object's index
// and gref entries (wire-protocol.md §8, §12.1, §12.8). Oids are bigint; vids and indexes are
// numbers (vid < 2^24, idx < 2^32).

import { SD_NR_VDIS } from './proto.js'

export { SD_NR_VDIS }

export const VDI_BIT = 1n << 63n
export const VMSTATE_BIT = 1n << 62n
export const VDI_ATTR_BIT = 1n << 61n
export const VDI_BTREE_BIT = 1n << 60n
export const LEDGER_BIT = 1n << 59n
export const SD_VDI_MASK = 0x00ffffff00000000n
const VDI_SPACE_SHIFT = 32n
// Bits 59..63: an oid with none of them set is a data object.
const OBJ_KIND_MASK = VDI_BIT | VMSTATE_BIT | VDI_ATTR_BIT | VDI_BTREE_BIT | LEDGER_BIT

/** Data objects per plain VDI (the inode's data_vdi_id[] has this many entries). */
export const MAX_DATA_OBJS = 1 << 20
/** Offset of data_vdi_id[] in sd_inode: the header is everything before it. */
export const SD_INODE_HEADER_SIZE = 4664
/** data_vdi_id[MAX_DATA_OBJS], u32 each. */
export const SD_INODE_DATA_INDEX_SIZE = MAX_DATA_OBJS * 4
/** Inode without the gref[] array (the pre-ledger layout); also the offset of gref[]. */
export const OLD_SD_INODE_SIZE = SD_INODE_HEADER_SIZE + SD_INODE_DATA_INDEX_SIZE
/** Whole sd_inode: header, data_vdi_id[], gref[MAX_DATA_OBJS] of 8 bytes each. */
export const SD_INODE_SIZE = OLD_SD_INODE_SIZE + MAX_DATA_OBJS * 8
/** sheepdog_vdi_attr: name, tag, ctime, snap_id, value_len, key, value. */
export const SD_ATTR_OBJ_SIZE = 66320
/** Default data object size (block_size_shift 22). */
export const SD_DATA_OBJ_SIZE = 1 << 22
/** Ledger: 2^20 u32 generation counters. */
export const SD_LEDGER_OBJ_SIZE = 1 << 22

export function vidToVdiOid(vid: number): bigint {
  return VDI_BIT | (BigInt(vid) << VDI_SPACE_SHIFT)
}

export function vidToDataOid(vid: number, idx: number): bigint {
  return (BigInt(vid) << VDI_SPACE_SHIFT) | BigInt(idx)
}

export function vidToVmstateOid(vid: number, idx: number): bigint {
  return VMSTATE_BIT | (BigInt(vid) << VDI_SPACE_SHIFT) | BigInt(idx)
}

export function vidToAttrOid(vid: number, attrId: number): bigint {
  return VDI_ATTR_BIT | (BigInt(vid) << VDI_SPACE_SHIFT) | BigInt(attrId)
}

export function vidToBtreeOid(vid: number, counter: number): bigint {
  return VDI_BTREE_BIT | (BigInt(vid) << VDI_SPACE_SHIFT) | BigInt(counter)
}

/** The ledger (reference-count) object of a data object. */
export function ledgerOidOf(dataOid: bigint): bigint {
  return LEDGER_BIT | dataOid
}

export function oidToVid(oid: bigint): number {
  return Number((oid & SD_VDI_MASK) >> VDI_SPACE_SHIFT)
}

/** Low 32 bits: data/vmstate index, attribute id or B-tree counter. */
export function oidToIdx(oid: bigint): number {
  return Number(oid & 0xffffffffn)
}

export function isVdiObj(oid: bigint): boolean {
  return (oid & VDI_BIT) !== 0n
}

export function isVmstateObj(oid: bigint): boolean {
  return (oid & VMSTATE_BIT) !== 0n
}

export function isVdiAttrObj(oid: bigint): boolean {
  return (oid & VDI_ATTR_BIT) !== 0n
}

export function isVdiBtreeObj(oid: bigint): boolean {
  return (oid & VDI_BTREE_BIT) !== 0n
}

export function isLedgerObj(oid: bigint): boolean {
  return (oid & LEDGER_BIT) !== 0n
}

export function isDataObj(oid: bigint): boolean {
  return (oid & OBJ_KIND_MASK) === 0n
}

/** Size of the object named by oid; data and vmstate objects are 1 << blockSizeShift. */
export function objectSizeOf(oid: bigint, blockSizeShift: number): number {
  if (isVdiObj(oid)) return SD_INODE_SIZE
  if (isVdiAttrObj(oid)) return SD_ATTR_OBJ_SIZE
  if (isVdiBtreeObj(oid)) return SD_INODE_DATA_INDEX_SIZE
  if (isLedgerObj(oid)) return SD_LEDGER_OBJ_SIZE
  return 2 ** blockSizeShift
}

/** Byte offset of data_vdi_id[idx] in the inode. */
export function inodeIndexOffset(idx: number): number {
  return SD_INODE_HEADER_SIZE + 4 * idx
}

/** Byte offset of gref[idx] in the inode. */
export function inodeGrefOffset(idx: number): number {
  return OLD_SD_INODE_SIZE + 8 * idx
}

/** 16 lower-case hex digits, zero padded: the form of object file names and dog output. */
export function oidToHex(oid: bigint): string {
  return oid.toString(16).padStart(16, '0')
}

/** Parses 1..16 hex digits, with or without 0x; undefined if it is not a u64 in hex. */
export function parseOidHex(s: string): bigint | undefined {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,16})$/.exec(s)
  return m ? BigInt('0x' + m[1]) : undefined
}

// ---- store keys: what one file of an object store holds. A replicated object's file holds the
// whole object and is keyed by its oid; an erasure-coded object (behaviour.md §14) is stored as
// strips, one per holder, each a file `<oid>_<i>` keyed by the oid with the strip index plus one
// above the oid's 64 bits — so a node's store can tell strip i of an object from strip j.
const STRIP_SHIFT = 64n
const U64_MASK = (1n << 64n) - 1n

/** The store key of strip `index` of the erasure-coded object `oid`. */
export function stripKey(oid: bigint, index: number): bigint {
  return oid | (BigInt(index + 1) << STRIP_SHIFT)
}

/** The object a store key belongs to. */
export function oidOfKey(key: bigint): bigint {
  return key & U64_MASK
}

/** The strip index of a store key; undefined for a whole (replicated) object. */
export function stripIndexOfKey(key: bigint): number | undefined {
  const i = key >> STRIP_SHIFT
  return i === 0n ? undefined : Number(i) - 1
}

/** A store key's file name: 16 hex digits, then `_<strip index>` for a strip. */
export function keyFileName(key: bigint): string {
  const index = stripIndexOfKey(key)
  return index === undefined ? oidToHex(key) : `${oidToHex(oidOfKey(key))}_${index}`
}

/** The store key a file name stands for (keyFileName's inverse); undefined for other names. */
export function parseKeyFileName(name: string): bigint | undefined {
  const m = /^([0-9a-f]{16})(?:_(\d{1,2}))?$/.exec(name)
  if (!m) return undefined
  const oid = BigInt(`0x${m[1]}`)
  return m[2] === undefined ? oid : stripKey(oid, Number(m[2]))
}
