// The object store over several disks (md.c) and its layouts (plain, tree): objects land on the
// disk the virtual-disk ring names and are found again by a new store over the same disks, even
// on another disk than the hashed one; plugging and unplugging move objects while writes go on
// (none lost, sparse objects stay sparse); a disk whose directory disappears is taken out and
// the request answered NETWORK_ERROR so the gateway tries another replica.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { silentLogger } from '../../lib/log.js'
import { vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import { SD_RES_NETWORK_ERROR, SD_RES_SUCCESS, SD_RES_UNKNOWN } from '../../lib/proto.js'
import { FileStore } from '../../sheep/store/file-store.js'
import { STORE_LAYOUTS, oidFileName, storeLayout } from '../../sheep/store/layout.js'
import { tempDir } from '../../harness/sheep.js'

const OBJECT_BYTES = 256 * 1024
const OBJECTS = 60

function newDisks(t: Test, count: number): string[] {
  const root = tempDir('store-disks-')
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }))
  return Array.from({ length: count }, (_, i) => path.join(root, `d${i}`))
}

async function newStore(disks: string[], layout = 'plain'): Promise<FileStore> {
  const store = new FileStore({ disks, nosync: true, log: silentLogger(), layout: storeLayout(layout) })
  await store.init()
  return store
}

const oidOf = (i: number) => vidToDataOid(0xabc00 + (i % 3), i)

async function fill(store: FileStore): Promise<Map<bigint, Buffer>> {
  const contents = new Map<bigint, Buffer>()
  for (let i = 0; i < OBJECTS; i++) {
    const data = crypto.randomBytes(1024)
    t.equal(await store.create({ oid: oidOf(i), offset: 4096, data }, OBJECT_BYTES), SD_RES_SUCCESS)
    contents.set(oidOf(i), data)
  }
  return contents
}

/** The disk whose directory holds the object file (undefined: none, or more than one). */
function diskHolding(disks: string[], rel: string): string | undefined {
  const holders = disks.filter((d) => fs.existsSync(path.join(d, rel)))
  return holders.length === 1 ? holders[0] : undefined
}

async function readsBack(t: Test, store: FileStore, contents: Map<bigint, Buffer>, what: string): Promise<void> {
  let good = 0
  for (const [oid, data] of contents) {
    const got = await store.read(oid, 4096, data.length)
    if (Buffer.isBuffer(got) && got.equals(data)) good++
  }
  t.equal(good, contents.size, what)
}

t.test('the tree layout keeps inodes under meta/ and data under the low byte of the vid', async (t) => {
  const tree = storeLayout('tree')
  t.ok(tree)
  t.equal(tree?.objectPath(vidToVdiOid(0x12345)), path.join('meta', oidFileName(vidToVdiOid(0x12345))))
  t.equal(tree?.objectPath(vidToDataOid(0x12345, 7)), path.join('45', oidFileName(vidToDataOid(0x12345, 7))))
  t.equal(storeLayout('plain')?.objectPath(vidToDataOid(0x12345, 7)), oidFileName(vidToDataOid(0x12345, 7)))
  t.same(
    STORE_LAYOUTS.map((l) => l.name),
    ['tree', 'plain'],
    'listed as the original lists them',
  )
})

for (const layout of ['plain', 'tree']) {
  t.test(`${layout}: objects spread over the disks by the ring and found again after a restart`, async (t) => {
    const disks = newDisks(t, 3)
    const store = await newStore(disks, layout)
    const contents = await fill(store)
    const lay = storeLayout(layout)!
    let placed = 0
    for (const oid of contents.keys()) if (diskHolding(disks, lay.objectPath(oid)) === store.disks.diskFor(oid)?.path) placed++
    t.equal(placed, OBJECTS, 'every object is on its hashed disk, and only there')
    const used = new Set([...contents.keys()].map((oid) => store.disks.diskFor(oid)?.path))
    t.equal(used.size, 3, 'every disk has objects')

    // an object on another disk than its hashed one (the original's placement moved) is still found
    const oid = oidOf(0)
    const home = store.disks.diskFor(oid)!.path
    const elsewhere = disks.find((d) => d !== home)!
    fs.renameSync(path.join(home, lay.objectPath(oid)), path.join(elsewhere, lay.objectPath(oid)))
    const again = await newStore(disks, layout)
    t.same(again.list(), store.list(), 'a new store over the same disks finds every object')
    await readsBack(t, again, contents, 'and reads each back')
  })
}

t.test('plug and unplug move objects while writes go on; sparse objects stay sparse', async (t) => {
  const disks = newDisks(t, 3)
  const store = await newStore(disks.slice(0, 2))
  const contents = await fill(store)

  t.equal(store.plug([disks[2] as string]), SD_RES_SUCCESS)
  // writes queued while the objects move: each lands on the object wherever it ends up
  const writes = [...contents.keys()].map(async (oid) => {
    const data = crypto.randomBytes(1024)
    t.equal(await store.write({ oid, offset: 4096, data }), SD_RES_SUCCESS)
    contents.set(oid, data)
  })
  await Promise.all(writes)
  await store.rebalanced()
  const moved = [...contents.keys()].filter((oid) => store.disks.diskFor(oid)?.path === disks[2])
  t.ok(moved.length > 0, `${moved.length} object(s) belong on the new disk`)
  t.equal(moved.filter((oid) => fs.existsSync(path.join(disks[2] as string, oidFileName(oid)))).length, moved.length, 'and are there')
  await readsBack(t, store, contents, 'every write made during the move reads back')
  const st = fs.statSync(path.join(disks[2] as string, oidFileName(moved[0] as bigint)))
  t.ok(st.blocks * 512 < OBJECT_BYTES, `a moved object stays sparse (${st.blocks * 512} of ${OBJECT_BYTES} bytes allocated)`)

  t.equal(
    store.unplug(['/no/such/disk'], () => undefined),
    SD_RES_UNKNOWN,
    'a disk that is not plugged: nothing changes',
  )
  let lost = 0
  t.equal(
    store.unplug([disks[0] as string], (n) => (lost += n)),
    SD_RES_SUCCESS,
  )
  await store.rebalanced()
  t.equal(lost, 0, 'nothing lost: the unplugged disk was readable')
  t.same(
    fs.readdirSync(disks[0] as string).filter((n) => /^[0-9a-f]{16}$/.test(n)),
    [],
    'no object is left on the unplugged disk',
  )
  await readsBack(t, store, contents, 'every object reads back from the disks left')
  t.equal(store.diskCount, 2)
})

t.test('a disk whose directory disappears is taken out; the others keep serving', async (t) => {
  const disks = newDisks(t, 3)
  const store = await newStore(disks)
  const contents = await fill(store)
  const failures: Array<[string, number]> = []
  store.onDiskFailure = (p, left) => failures.push([p, left])

  const victim = disks[1] as string
  fs.rmSync(victim, { recursive: true, force: true })
  const onVictim = [...contents.keys()].filter((oid) => store.disks.diskFor(oid)?.path === victim)
  t.ok(onVictim.length > 0)
  t.equal(await store.read(onVictim[0] as bigint, 0, 16), SD_RES_NETWORK_ERROR, 'the request that finds it gone is answered NETWORK_ERROR')
  await new Promise((r) => setImmediate(r))
  t.same(failures, [[victim, 2]], 'the node is told once, with the disks left')
  t.equal(store.diskCount, 2)
  t.notOk(store.exists(onVictim[1] as bigint), 'its objects are forgotten (recovery brings them back)')
  const survivors = new Map([...contents].filter(([oid]) => !onVictim.includes(oid)))
  await readsBack(t, store, survivors, 'the objects on the other disks read as before')
  t.equal(
    await store.create({ oid: onVictim[0] as bigint, offset: 0, data: Buffer.from('again') }, OBJECT_BYTES),
    SD_RES_SUCCESS,
    'its objects can be created again, on a disk left',
  )
})
