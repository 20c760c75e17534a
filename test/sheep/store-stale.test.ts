// The object store's stale area (docs/recovery.md): a copy moved there keeps the epoch in its name
// and is read only for exactly that epoch; a purge that runs while moves are under way removes
// stale files without making a move fail (it once removed the directory under them, and the
// moves that failed left live copies the node no longer held); a stale directory removed by hand
// is made again; a recovery read queues behind the writes accepted before it.
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { SD_RES_NO_OBJ } from '../../lib/proto.js'
import { FileStore } from '../../sheep/store/file-store.js'
import { silentLogger } from '../../lib/log.js'
import { tempDir } from '../../harness/sheep.js'

async function newStore(t: Test): Promise<FileStore> {
  const dir = tempDir('store-stale-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  await store.init()
  return store
}

const oidOf = (i: number) => (0x77n << 32n) | BigInt(i)

async function createObjects(store: FileStore, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await store.create({ oid: oidOf(i), offset: 0, data: Buffer.from(`object ${i}`) }, 4096)
}

t.test('a stale copy is read for exactly the epoch in its name', async (t) => {
  const store = await newStore(t)
  await createObjects(store, 1)
  await store.moveToStale(oidOf(0), 7)
  t.notOk(store.exists(oidOf(0)), 'no longer live')
  t.ok(store.hasStale(oidOf(0), 7))
  t.notOk(store.hasStale(oidOf(0), 6), 'not for an older epoch')
  t.notOk(store.hasStale(oidOf(0), 8), 'not for a newer epoch')
  t.equal(await store.readStale(oidOf(0), 8, 0, 8), SD_RES_NO_OBJ)
  t.same(await store.readStale(oidOf(0), 7, 0, 8), Buffer.from('object 0'))
  t.same(store.listStale(), [oidOf(0)])
})

t.test('a purge while moves are under way fails no move and leaves nothing live', async (t) => {
  const store = await newStore(t)
  await createObjects(store, 200)
  await Promise.all([...Array(100).keys()].map((i) => store.moveToStale(oidOf(i), 3)))
  const moves = [...Array(100).keys()].map((i) => store.moveToStale(oidOf(100 + i), 4))
  const purge = store.purgeStale()
  const results = await Promise.allSettled([...moves, purge])
  t.same(
    results.filter((r) => r.status === 'rejected'),
    [],
    'no move and no purge failed',
  )
  t.same(store.list(), [], 'every object left the live area')
  const onDisk = fs.readdirSync(path.join(store.dir, '.stale')).sort()
  const tracked = store
    .listStale()
    .flatMap((oid) => [3, 4].filter((e) => store.hasStale(oid, e)).map((e) => `${oid.toString(16).padStart(16, '0')}.${e}`))
    .sort()
  t.same(onDisk, tracked, 'the stale files on disk are exactly those the store knows')
})

t.test('a stale directory removed by hand is made again by the next move', async (t) => {
  const store = await newStore(t)
  await createObjects(store, 2)
  fs.rmSync(path.join(store.dir, '.stale'), { recursive: true })
  await store.moveToStale(oidOf(1), 2)
  t.ok(store.hasStale(oidOf(1), 2))
  t.ok(fs.existsSync(path.join(store.dir, '.stale', `${oidOf(1).toString(16).padStart(16, '0')}.2`)))
})

t.test('a recovery read queues behind the writes accepted before it', async (t) => {
  const store = await newStore(t)
  await createObjects(store, 1)
  const writes = [...Array(20).keys()].map((i) => store.write({ oid: oidOf(0), offset: 0, data: Buffer.from(`write ${String(i).padStart(2, '0')}`) }))
  const read = store.readAfterMutations(oidOf(0), 0, 8)
  await Promise.all(writes)
  t.same(await read, Buffer.from('write 19'), 'it sees the last write queued before it')
})
