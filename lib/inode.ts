// The inode (sd_inode, 12 587 576 bytes): its header, the data_vdi_id index and the gref array
// (wire-protocol.md §12.1). Callers read and write only the parts an operation needs, so the
// codec works on the header alone, or on a slice of the index.
import { type Fields, type Layout, checkLayout, readFields, writeFields } from './layout.js'
import { MAX_DATA_OBJS, OLD_SD_INODE_SIZE, SD_INODE_DATA_INDEX_SIZE, SD_INODE_HEADER_SIZE, inodeGrefOffset, inodeIndexOffset } from './oid.js'

export { SD_INODE_SIZE, SD_INODE_HEADER_SIZE, OLD_SD_INODE_SIZE } from './oid.js'
/** The header up to parent_vdi_id and btree_counter: what a VDI lookup needs to read. */
export const SD_INODE_LOOKUP_SIZE = 572
export const SD_INODE_INDEX_AT = SD_INODE_HEADER_SIZE
export const SD_INODE_INDEX_ENTRIES = MAX_DATA_OBJS
export const SD_INODE_INDEX_SIZE = SD_INODE_DATA_INDEX_SIZE
/** End of data_vdi_id: the "old inode size" QEMU and tgt read and write (header + index, no gref). */
export const SD_INODE_DATA_INDEX_END = OLD_SD_INODE_SIZE
export const SD_INODE_GREF_AT = OLD_SD_INODE_SIZE
export const SD_INODE_GREF_SIZE = MAX_DATA_OBJS * 8

export const INODE_HEADER = {
  name: [0, 'string', 256],
  tag: [256, 'string', 256],
  createTime: [512, 'u64'],
  snapCtime: [520, 'u64'],
  vmClockNsec: [528, 'u64'],
  vdiSize: [536, 'u64'],
  vmStateSize: [544, 'u64'],
  copyPolicy: [552, 'u8'],
  storePolicy: [553, 'u8'],
  nrCopies: [554, 'u8'],
  blockSizeShift: [555, 'u8'],
  snapId: [556, 'u32'],
  vdiId: [560, 'u32'],
  parentVdiId: [564, 'u32'],
  btreeCounter: [568, 'u32'],
} as const satisfies Layout
export type InodeHeader = Fields<typeof INODE_HEADER>

export function decodeInodeHeader(buf: Buffer): InodeHeader {
  return readFields(buf, INODE_HEADER)
}

/** A fresh header-sized buffer (4664 bytes) holding `header`. */
export function encodeInodeHeader(header: InodeHeader, size = SD_INODE_HEADER_SIZE): Buffer {
  return writeFields(Buffer.alloc(size), INODE_HEADER, header)
}

export function updateInodeHeader(buf: Buffer, fields: Partial<InodeHeader>): Buffer {
  return writeFields(buf, INODE_HEADER, fields)
}

export function isSnapshot(h: Pick<InodeHeader, 'snapCtime'>): boolean {
  return h.snapCtime !== 0n
}

/** dog's definition of a clone: snap_id 1 and a parent (wire-protocol.md §12.4). */
export function isClone(h: Pick<InodeHeader, 'snapId' | 'parentVdiId' | 'snapCtime'>): boolean {
  return !isSnapshot(h) && h.snapId === 1 && h.parentVdiId !== 0
}

export function objectSize(h: Pick<InodeHeader, 'blockSizeShift'>): number {
  return 2 ** h.blockSizeShift
}

/** Number of data objects of a VDI: ceil(vdi_size / object_size). */
export function dataObjectCount(h: Pick<InodeHeader, 'vdiSize' | 'blockSizeShift'>): number {
  const size = BigInt(objectSize(h))
  return Number((h.vdiSize + size - 1n) / size)
}

/** Byte offsets of data_vdi_id[idx] and gref[idx] inside the inode object. */
export { inodeIndexOffset as indexOffset, inodeGrefOffset as grefOffset }

/** A view over a slice of data_vdi_id that starts at entry `firstIdx`. */
export class InodeIndex {
  constructor(
    readonly bytes: Buffer,
    readonly firstIdx = 0,
  ) {}

  get length(): number {
    return this.bytes.length >>> 2
  }

  get(idx: number): number {
    const i = idx - this.firstIdx
    if (i < 0 || i >= this.length) return 0
    return this.bytes.readUInt32LE(i * 4)
  }

  set(idx: number, vid: number): void {
    const i = idx - this.firstIdx
    if (i < 0 || i >= this.length) throw new RangeError(`index ${idx} outside the loaded slice`)
    this.bytes.writeUInt32LE(vid >>> 0, i * 4)
  }
}

/** 4-byte little-endian value, as written for a one-entry index update. */
export function u32le(value: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(value >>> 0)
  return b
}

checkLayout('INODE_HEADER', INODE_HEADER, SD_INODE_HEADER_SIZE)
