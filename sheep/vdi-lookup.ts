// The VDI lookup of wire-protocol.md §9.3 over the in-use and deleted bitmaps, with the inode
// reader injected so the rules can be tested without a cluster: where the search looks, which
// vid a new VDI gets, and what a name, tag or snap id resolves to — in the default mode (the
// bitmap is a hash table with open addressing from hash(name)) and with RECYCLE_VID (`cluster
// format -R`: vids are reused, so the whole vid space is searched and the lowest free vid is
// taken; behaviour.md §15.2). The original's quirks are kept on purpose, as clients see them:
// the first (highest) vid holding the name decides an untagged lookup; a wrapped search keeps
// what its first range remembered.
import type { InodeHeader } from '../lib/inode.js'
import { SD_NR_VDIS, SD_RES_FULL_VDI, SD_RES_NO_TAG, SD_RES_NO_VDI, SD_RES_SUCCESS } from '../lib/proto.js'
import type { Bitmap } from './vdi-state.js'

/** Vid 0 is never a VDI: the search and the allocation start at 1. */
export const FIRST_VID = 1

export interface LookupQuery {
  name: string
  /** '' for none. */
  tag: string
  /** 0 for none. */
  snapid: number
}

export interface LookupResult {
  result: number
  /** The vid found; with NO_VDI the snapshot that stopped an untagged search, with NO_TAG the working VDI. */
  vid: number
  /** The snap_id a new working VDI of this name gets (1 when the name is new). */
  nextSnapid: number
  /** The vid a new VDI of this name would get; 0 when every vid is in use. */
  freeVid: number
}

/** Vids scanned downwards, from `from` to `to` inclusive. */
export interface VidRange {
  from: number
  to: number
}

/**
 * Where a lookup of `name` searches (ranges in order, each scanned only if the ones before found
 * nothing) and which vid a new VDI gets; or the answer outright (NO_VDI: the name's hash slot is
 * free; FULL_VDI: default mode with no free vid at all).
 */
export type SearchPlan = { result: typeof SD_RES_SUCCESS; freeVid: number; ranges: VidRange[] } | { result: number; freeVid: number; ranges: [] }

export function searchPlan(inUse: Bitmap, nameHash: number, recycle: boolean): SearchPlan {
  if (recycle) {
    // a full vid space still answers lookups of existing names; only a create fails (freeVid 0)
    return { result: SD_RES_SUCCESS, freeVid: Math.max(inUse.findNextZero(FIRST_VID), 0), ranges: [{ from: SD_NR_VDIS - 1, to: FIRST_VID }] }
  }
  const left = nameHash || FIRST_VID
  const right = inUse.findNextZero(left)
  if (right === left) return { result: SD_RES_NO_VDI, freeVid: left, ranges: [] }
  if (right > left) return { result: SD_RES_SUCCESS, freeVid: right, ranges: [{ from: right - 1, to: left }] }
  // nothing free from the hash to the end: wrap around to the lowest free vid
  const wrapped = inUse.findNextZero(FIRST_VID)
  if (wrapped < 0) return { result: SD_RES_FULL_VDI, freeVid: 0, ranges: [] }
  return {
    result: SD_RES_SUCCESS,
    freeVid: wrapped,
    ranges: [
      { from: wrapped - 1, to: FIRST_VID },
      { from: SD_NR_VDIS - 1, to: left },
    ],
  }
}

/** The inode header of `vid`, or undefined when it cannot be read. */
export type InodeReader = (vid: number) => Promise<InodeHeader | undefined>

export interface VidBitmaps {
  inUse: Bitmap
  deleted: Bitmap
}

/** What a search remembers across ranges (the original's vdi_info). */
interface Remembered {
  vid: number
  nextSnapid: number
}

/**
 * Looks `q` up. The caller passes the hash of the name (sdHashVdi) and the cluster's
 * RECYCLE_VID flag; inodes are read only for vids whose in-use or deleted bit is set.
 */
export async function lookupVid(bitmaps: VidBitmaps, read: InodeReader, q: LookupQuery, nameHash: number, recycle: boolean): Promise<LookupResult> {
  const plan = searchPlan(bitmaps.inUse, nameHash, recycle)
  const info: Remembered = { vid: 0, nextSnapid: 0 }
  const answer = (result: number): LookupResult => ({ result, vid: info.vid, nextSnapid: info.nextSnapid || 1, freeVid: plan.freeVid })
  if (plan.result !== SD_RES_SUCCESS) return answer(plan.result)
  let result = SD_RES_NO_VDI
  for (const range of plan.ranges) {
    result = await scanRange(bitmaps, read, q, range, info)
    if (result !== SD_RES_NO_VDI && result !== SD_RES_NO_TAG) break
  }
  // -R: the working VDI was deleted but its snapshots live on; the name stays taken (a new
  // working VDI would overwrite what the snapshots depend on), so the snapshot is the answer
  if (recycle && result === SD_RES_NO_VDI && info.vid !== 0 && bitmaps.inUse.test(info.vid)) result = SD_RES_SUCCESS
  return answer(result)
}

/** One range of the search (the original's fill_vdi_info_range): "name exists" counts per range. */
async function scanRange(bitmaps: VidBitmaps, read: InodeReader, q: LookupQuery, range: VidRange, info: Remembered): Promise<number> {
  const hasTag = q.tag !== '' || q.snapid !== 0
  let nameExists = false
  for (
    let vid = bitmaps.inUse.findPrevSet(range.from, bitmaps.deleted);
    vid >= range.to && vid >= FIRST_VID;
    vid = bitmaps.inUse.findPrevSet(vid - 1, bitmaps.deleted)
  ) {
    const inode = await read(vid)
    if (!inode || inode.name !== q.name) continue
    const isSnapshot = inode.snapCtime !== 0n
    if (hasTag) {
      if (!isSnapshot) {
        nameExists = true
        info.vid = vid
        continue
      }
      if (!tagMatches(q, inode)) continue
    } else {
      info.nextSnapid = inode.snapId + 1
      // the working VDI was deleted: the newest snapshot stops the search
      if (isSnapshot) {
        info.vid = vid
        break
      }
    }
    info.vid = vid
    return SD_RES_SUCCESS
  }
  return nameExists ? SD_RES_NO_TAG : SD_RES_NO_VDI
}

function tagMatches(q: LookupQuery, inode: InodeHeader): boolean {
  return (inode.tag !== '' && inode.tag === q.tag) || (q.snapid !== 0 && q.snapid === inode.snapId)
}
