// The vid choice of wire-protocol.md §9.3 and the RECYCLE_VID family collection of behaviour.md
// §15.2, on a simulated cluster (a VdiTable and inode headers in memory) driven the way sheep's
// NEW_VDI and DEL_VDI drive them: the vids the original hands out (its functional test 106 and
// the wrap-around example of the spec), reuse only with -R and only once a whole family is gone,
// and a full vid space in both modes.
import t from 'tap'
import { sdHashVdi } from '../../lib/hash.js'
import { type InodeHeader, decodeInodeHeader } from '../../lib/inode.js'
import { SD_NR_VDIS, SD_RES_FULL_VDI, SD_RES_NO_TAG, SD_RES_NO_VDI, SD_RES_SUCCESS } from '../../lib/proto.js'
import { type LookupResult, lookupVid, searchPlan } from '../../sheep/vdi-lookup.js'
import { Bitmap, VdiTable } from '../../sheep/vdi-state.js'

/** The VDI namespace of one cluster, as every node's table and the inodes on disk hold it. */
class World {
  readonly table = new VdiTable()
  readonly inodes = new Map<number, InodeHeader>()
  constructor(readonly recycle: boolean) {}

  lookup(name: string, tag = '', snapid = 0): Promise<LookupResult> {
    return lookupVid(this.table, async (vid) => this.inodes.get(vid), { name, tag, snapid }, sdHashVdi(name), this.recycle)
  }

  /** NEW_VDI without snapid: the new vid, or the failure. */
  async create(name: string): Promise<number> {
    const found = await this.lookup(name)
    if (found.result === SD_RES_SUCCESS) return -1
    if (found.result !== SD_RES_NO_VDI || found.freeVid === 0) return -found.result
    this.register(found.freeVid, name, found.nextSnapid, 0)
    return found.freeVid
  }

  /** NEW_VDI with snapid: the working VDI becomes a snapshot; the new working VDI's vid. */
  async snapshot(name: string): Promise<number> {
    const found = await this.lookup(name)
    if (found.result !== SD_RES_SUCCESS || found.freeVid === 0) return -found.result
    const working = this.inodes.get(found.vid) as InodeHeader
    working.snapCtime = 1n
    this.register(found.freeVid, name, found.nextSnapid, found.vid)
    return found.freeVid
  }

  /** DEL_VDI: the inode's name is zeroed, the vid marked deleted, and with -R a deleted family collected. */
  async delete(name: string, snapid = 0): Promise<number> {
    const found = await this.lookup(name, '', snapid)
    if (found.result !== SD_RES_SUCCESS) return found.result
    ;(this.inodes.get(found.vid) as InodeHeader).name = ''
    this.table.markDeleted(found.vid)
    const family = this.table.family(found.vid)
    if (this.recycle && family.every((member) => member.deleted)) {
      for (const member of family) {
        this.table.remove(member.vid)
        this.inodes.delete(member.vid)
      }
    }
    return SD_RES_SUCCESS
  }

  private register(vid: number, name: string, snapId: number, parentVid: number): void {
    this.table.add({ vid, nrCopies: 3, copyPolicy: 0, blockSizeShift: 22, snapshot: false, deleted: false, parentVid })
    if (parentVid) this.table.markSnapshot(parentVid)
    this.inodes.set(vid, { ...decodeInodeHeader(Buffer.alloc(600)), name, snapId, vdiId: vid, parentVdiId: parentVid })
  }

  /** The vids `dog vdi list` shows: in use and not deleted. */
  listed(): number[] {
    return this.table
      .all()
      .filter((s) => !s.deleted)
      .map((s) => s.vid)
  }
}

t.test('the names of the spec hash as it says', async (t) => {
  t.equal(sdHashVdi('01909709'), 0)
  t.equal(sdHashVdi('05421217'), 0xffffff)
  t.equal(sdHashVdi('00471718'), 0xfffff9)
})

t.test('default mode: a family grows from the hash of its name and wraps around', async (t) => {
  const w = new World(false)
  t.equal(await w.create('01909709'), 1, 'hash 0 is taken as 1')
  t.equal(await w.create('05421217'), 0xffffff)
  t.equal(await w.create('00471718'), 0xfffff9)
  const vids: number[] = []
  for (let i = 0; i < 8; i++) vids.push(await w.snapshot('00471718'))
  t.same(vids, [0xfffffa, 0xfffffb, 0xfffffc, 0xfffffd, 0xfffffe, 2, 3, 4], 'past 0xffffff the search wraps to the lowest free vid')
  const found = await w.lookup('00471718')
  t.same([found.result, found.vid, found.nextSnapid], [SD_RES_SUCCESS, 4, 10], 'the working VDI is found after the wrap')
  const snap = await w.lookup('00471718', '', 3)
  t.same([snap.result, snap.vid], [SD_RES_SUCCESS, 0xfffffb], 'a snapshot before the wrap by its id')
  // "the name exists" counts per range, as in the original: the working VDI is in the first
  // range, the second finds nothing of the name but snapshots, so the answer is NO_VDI
  t.equal((await w.lookup('00471718', 'no-such-tag')).result, SD_RES_NO_VDI, 'wrapped: an unknown tag answers NO_VDI')
  const plain = new World(false)
  await plain.create('p')
  await plain.snapshot('p')
  t.equal((await plain.lookup('p', 'no-such-tag')).result, SD_RES_NO_TAG, 'not wrapped: an unknown tag answers NO_TAG')
})

t.test('default mode: a deleted VDI keeps its vid', async (t) => {
  const w = new World(false)
  const hash = sdHashVdi('alpha')
  t.equal(await w.create('alpha'), hash)
  t.equal(await w.delete('alpha'), SD_RES_SUCCESS)
  t.equal(await w.create('alpha'), hash + 1, 'the next free vid after the old one')
  t.equal(await w.delete('alpha'), SD_RES_SUCCESS)
  t.equal(await w.delete('alpha'), SD_RES_NO_VDI)
  t.ok(w.table.inUse.test(hash) && w.table.deleted.test(hash), 'the first vid stays in use and deleted')
})

t.test('-R: vids are handed out from the lowest free one (the original functional test 106)', async (t) => {
  const w = new World(true)
  t.equal(await w.create('test'), 1)
  const vids: number[] = []
  for (let i = 0; i < 8; i++) vids.push(await w.snapshot('test'))
  t.same(vids, [2, 3, 4, 5, 6, 7, 8, 9])
  t.same(
    [...w.inodes.values()].map((i) => i.snapId),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  )
  t.equal(await w.delete('test'), SD_RES_SUCCESS, 'the working VDI')
  t.same(w.listed(), [1, 2, 3, 4, 5, 6, 7, 8], 'its vid is kept while its snapshots live')
  t.equal(await w.create('test'), -1, 'create again: VDI exists (the newest snapshot answers for the name)')
  for (let id = 1; id <= 7; id++) t.equal(await w.delete('test', id), SD_RES_SUCCESS)
  t.ok(w.table.inUse.test(1), 'nothing is freed before the last member goes')
  t.equal(await w.delete('test', 8), SD_RES_SUCCESS)
  t.equal(w.table.inUse.findNextZero(1), 1, 'the whole family is freed')
  t.equal(w.table.deleted.findPrevSet(SD_NR_VDIS - 1), -1, 'no deleted bit is left')
  t.equal(w.table.all().length, 0, 'no state is left')
  t.equal(await w.create('test'), 1, 'and its first vid is reused')
})

t.test('-R: a deleted VDI without relatives frees its vid at once; default mode never does', async (t) => {
  for (const recycle of [true, false]) {
    const w = new World(recycle)
    const a = await w.create('a')
    const b = await w.create('b')
    await w.delete('a')
    const c = await w.create('c')
    if (recycle) t.same([a, b, c], [1, 2, 1], '-R: c takes the vid a left')
    else t.same([a, b, c], [sdHashVdi('a'), sdHashVdi('b'), sdHashVdi('c')], 'default: every name at its hash')
  }
})

t.test('-R: a clone keeps the family of its base alive', async (t) => {
  const w = new World(true)
  await w.create('base')
  await w.snapshot('base')
  // a clone of snapshot 1 (vid 1) under another name: a new family member
  const found = await w.lookup('clone')
  t.equal(found.freeVid, 3)
  w.table.add({ vid: 3, nrCopies: 3, copyPolicy: 0, blockSizeShift: 22, snapshot: false, deleted: false, parentVid: 1 })
  w.inodes.set(3, { ...decodeInodeHeader(Buffer.alloc(600)), name: 'clone', snapId: 1, vdiId: 3, parentVdiId: 1 })
  t.same(
    w.table.family(2).map((s) => s.vid),
    [1, 2, 3],
    'root first, then its descendants',
  )
  await w.delete('base')
  await w.delete('base', 1)
  t.ok(w.table.inUse.test(1) && w.table.inUse.test(2), 'the clone still depends on them')
  await w.delete('clone')
  t.equal(w.table.all().length, 0, 'the last member frees all three')
})

t.test('a full vid space', async (t) => {
  const inUse = new Bitmap()
  inUse.bytes.fill(0xff)
  t.equal(searchPlan(inUse, 0x123456, false).result, SD_RES_FULL_VDI, 'default mode: every lookup answers FULL_VDI')
  const recycled = searchPlan(inUse, 0x123456, true)
  t.same([recycled.result, recycled.freeVid], [SD_RES_SUCCESS, 0], '-R: lookups still search; a create finds no free vid')
  inUse.clear(5)
  t.same(searchPlan(inUse, 0x123456, false).freeVid, 5, 'default mode: the one free vid, after the wrap')
  t.same(searchPlan(inUse, 0x123456, true).freeVid, 5, '-R: the one free vid')
  const w = new World(false)
  w.table.inUse.bytes.fill(0xff)
  t.equal((await w.lookup('x')).result, SD_RES_FULL_VDI)
  t.equal(await w.create('x'), -SD_RES_FULL_VDI)
})

t.test('the search plan of the default mode', async (t) => {
  const inUse = new Bitmap()
  t.same(searchPlan(inUse, 100, false), { result: SD_RES_NO_VDI, freeVid: 100, ranges: [] }, 'a free hash slot answers at once')
  t.same(searchPlan(inUse, 0, false).freeVid, 1, 'vid 0 is never used')
  inUse.set(100)
  inUse.set(101)
  t.same(searchPlan(inUse, 100, false), { result: SD_RES_SUCCESS, freeVid: 102, ranges: [{ from: 101, to: 100 }] })
  inUse.set(SD_NR_VDIS - 1)
  t.same(searchPlan(inUse, SD_NR_VDIS - 1, false), {
    result: SD_RES_SUCCESS,
    freeVid: 1,
    ranges: [
      { from: 0, to: 1 },
      { from: SD_NR_VDIS - 1, to: SD_NR_VDIS - 1 },
    ],
  })
})

t.test('findPrevSet looks in both bitmaps, downwards', async (t) => {
  const a = new Bitmap()
  const b = new Bitmap()
  t.equal(a.findPrevSet(SD_NR_VDIS - 1, b), -1)
  a.set(9)
  b.set(17)
  a.set(SD_NR_VDIS - 1)
  t.equal(a.findPrevSet(SD_NR_VDIS - 1, b), SD_NR_VDIS - 1)
  t.equal(a.findPrevSet(SD_NR_VDIS - 2, b), 17)
  t.equal(a.findPrevSet(16, b), 9)
  t.equal(a.findPrevSet(16), 9)
  t.equal(a.findPrevSet(17), 9, 'without the second bitmap')
  t.equal(a.findPrevSet(8, b), -1)
})
