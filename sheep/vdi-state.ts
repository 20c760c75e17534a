// VDI bookkeeping every node keeps (behaviour.md §9, wire-protocol.md §9.2): the in-use and
// deleted bitmaps (2^24 bits each) and the VDI state table (copies, policy, object size,
// snapshot/deleted flags, parent, lock state).
import { SD_NR_VDIS, SD_VDI_BITMAP_SIZE } from '../lib/proto.js'
import { LOCK_STATE_UNLOCKED, SD_NODE_ID_SIZE, VDI_STATE_SIZE, type VdiStateRecord, decodeVdiState, encodeVdiState } from '../lib/structs.js'

export interface VdiState {
  vid: number
  nrCopies: number
  copyPolicy: number
  blockSizeShift: number
  snapshot: boolean
  deleted: boolean
  parentVid: number
  lockState: number
  lockOwner: Buffer
  participantStates: number[]
  participants: Buffer[]
}

export class Bitmap {
  readonly bytes = new Uint8Array(SD_VDI_BITMAP_SIZE)

  test(n: number): boolean {
    return (this.bytes[n >>> 3] & (1 << (n & 7))) !== 0
  }

  set(n: number): void {
    this.bytes[n >>> 3] |= 1 << (n & 7)
  }

  clear(n: number): void {
    this.bytes[n >>> 3] &= ~(1 << (n & 7))
  }

  clearAll(): void {
    this.bytes.fill(0)
  }

  /** First clear bit in [from, SD_NR_VDIS), or -1. */
  findNextZero(from: number): number {
    for (let n = from; n < SD_NR_VDIS; n++) {
      if (this.bytes[n >>> 3] === 0xff) {
        n |= 7
        continue
      }
      if (!this.test(n)) return n
    }
    return -1
  }

  /** Highest n ≤ `from` whose bit is set here or in `also`, or -1. */
  findPrevSet(from: number, also?: Bitmap): number {
    const other = also?.bytes
    for (let n = Math.min(from, SD_NR_VDIS - 1); n >= 0; n--) {
      const byte = this.bytes[n >>> 3] | (other ? other[n >>> 3] : 0)
      if (byte === 0) {
        // nothing in this byte: on to the last bit of the byte below
        n &= ~7
        continue
      }
      if (byte & (1 << (n & 7))) return n
    }
    return -1
  }
}

export class VdiTable {
  readonly inUse = new Bitmap()
  readonly deleted = new Bitmap()
  private readonly states = new Map<number, VdiState>()

  get(vid: number): VdiState | undefined {
    return this.states.get(vid)
  }

  /** Adds or replaces the state of a vid and marks it in use. */
  add(state: Omit<VdiState, 'lockState' | 'lockOwner' | 'participantStates' | 'participants'> & Partial<VdiState>): VdiState {
    const full: VdiState = {
      lockState: LOCK_STATE_UNLOCKED,
      lockOwner: Buffer.alloc(SD_NODE_ID_SIZE),
      participantStates: [],
      participants: [],
      ...state,
    }
    this.states.set(state.vid, full)
    this.inUse.set(state.vid)
    if (full.deleted) this.deleted.set(state.vid)
    return full
  }

  markDeleted(vid: number): void {
    this.deleted.set(vid)
    const s = this.states.get(vid)
    if (s) s.deleted = true
  }

  /** Forgets a vid (RECYCLE_VID family collection): its state goes and both its bits clear, so it can be reused. */
  remove(vid: number): void {
    this.states.delete(vid)
    this.inUse.clear(vid)
    this.deleted.clear(vid)
  }

  /**
   * The family of `vid` (behaviour.md §15.2): its root — the ancestor reached through parent
   * links while the parent is known — then every descendant of the root. Empty for an unknown vid.
   */
  family(vid: number): VdiState[] {
    let root = this.states.get(vid)
    if (!root) return []
    const seen = new Set<number>([root.vid])
    for (let parent = this.states.get(root.parentVid); parent && !seen.has(parent.vid); parent = this.states.get(parent.parentVid)) {
      seen.add(parent.vid)
      root = parent
    }
    const children = new Map<number, VdiState[]>()
    for (const s of this.states.values()) {
      if (s.parentVid === 0 || s.parentVid === s.vid) continue
      const list = children.get(s.parentVid) ?? []
      list.push(s)
      children.set(s.parentVid, list)
    }
    const members = [root]
    const inFamily = new Set<number>([root.vid])
    for (let at = 0; at < members.length; at++) {
      for (const child of children.get(members[at].vid) ?? []) {
        if (inFamily.has(child.vid)) continue
        inFamily.add(child.vid)
        members.push(child)
      }
    }
    return members
  }

  markSnapshot(vid: number): void {
    const s = this.states.get(vid)
    if (s) s.snapshot = true
  }

  clear(): void {
    this.inUse.clearAll()
    this.deleted.clearAll()
    this.states.clear()
  }

  all(): VdiState[] {
    return [...this.states.values()].sort((a, b) => a.vid - b.vid)
  }

  /** GET_VDI_COPIES payload: vdi_state records, or undefined when `capacity` bytes are too few. */
  encode(capacity: number): Buffer | undefined {
    const list = this.all()
    if (list.length * VDI_STATE_SIZE > capacity) return undefined
    const buf = Buffer.alloc(list.length * VDI_STATE_SIZE)
    list.forEach((s, i) => {
      encodeVdiState(toRecord(s), buf, i * VDI_STATE_SIZE)
    })
    return buf
  }

  /** One vid's vdi_state record (VDI_STATE_CHECKPOINT_CTL), or undefined for a vid not in the table. */
  encodeOne(vid: number): Buffer | undefined {
    const state = this.states.get(vid)
    if (!state) return undefined
    const buf = Buffer.alloc(VDI_STATE_SIZE)
    encodeVdiState(toRecord(state), buf, 0)
    return buf
  }

  /** Merges records received from another node (behaviour.md §9, on join). */
  merge(buf: Buffer): void {
    for (let at = 0; at + VDI_STATE_SIZE <= buf.length; at += VDI_STATE_SIZE) {
      const r = decodeVdiState(buf, at)
      this.add({
        vid: r.vid,
        nrCopies: r.nrCopies,
        copyPolicy: r.copyPolicy,
        blockSizeShift: r.blockSizeShift,
        snapshot: r.snapshot !== 0,
        deleted: r.deleted !== 0,
        parentVid: r.parentVid,
        lockState: r.lockState,
        lockOwner: r.lockOwner,
        participantStates: r.participantStates,
        participants: r.participants,
      })
    }
  }
}

function toRecord(s: VdiState): VdiStateRecord {
  return {
    vid: s.vid,
    nrCopies: s.nrCopies,
    snapshot: s.snapshot ? 1 : 0,
    deleted: s.deleted ? 1 : 0,
    copyPolicy: s.copyPolicy,
    blockSizeShift: s.blockSizeShift,
    parentVid: s.parentVid,
    lockState: s.lockState,
    lockOwner: s.lockOwner,
    nrParticipants: s.participants.length,
    participantStates: s.participantStates,
    participants: s.participants,
  }
}
