// Object files kept open between requests (sheep/store/fd-cache.ts): a cached descriptor never
// outlives the file under the object's name (create over it, move to the stale area, removal,
// a move between disks), a descriptor in use is not closed under its request, and the cache
// stays within its bound.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'
import { FD_IDLE_RECHECK_MS, FdCache } from '../../sheep/store/fd-cache.js'
import { FileStore } from '../../sheep/store/file-store.js'
import { PAGE_CACHE_PIECE_BYTES, syncfsAvailable, writeInPieces, writeInPiecesNow } from '../../sheep/store/native-io.js'
import { silentLogger } from '../../lib/log.js'
import { tempDir } from '../../harness/sheep.js'

async function newStore(t: Test, nosync = true, writeBackLog = true): Promise<FileStore> {
  const dir = tempDir('store-fds-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new FileStore({ disks: [dir], nosync, log: silentLogger(), writeBackLog })
  await store.init()
  return store
}

const OID = (0x42n << 32n) | 7n
const text = (s: string) => Buffer.from(s)

t.test('reads and writes after every change of the file under the name see the new file', async (t) => {
  const store = await newStore(t, false)
  t.equal(await store.create({ oid: OID, offset: 0, data: text('first') }, 4096), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 5), text('first'), 'read opens and caches the file')
  t.equal(await store.write({ oid: OID, offset: 0, data: text('FIRST') }), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 5), text('FIRST'), 'a write through the cached descriptor is read back')
  t.equal(await store.create({ oid: OID, offset: 0, data: text('again') }, 4096), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 5), text('again'), 'a create over the object is read, not the old file')
  t.equal(await store.write({ oid: OID, offset: 1, data: text('G') }), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 5), text('aGain'), 'and written')
  await store.moveToStale(OID, 3)
  t.equal(await store.read(OID, 0, 5), SD_RES_NO_OBJ, 'moved to the stale area: no longer live')
  t.equal(await store.write({ oid: OID, offset: 0, data: text('x') }), SD_RES_NO_OBJ)
  t.same(await store.readStale(OID, 3, 0, 5), text('aGain'), 'the stale copy has the last write')
  t.equal(await store.create({ oid: OID, offset: 0, data: text('third') }, 4096), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 5), text('third'))
  t.equal(await store.remove(OID), SD_RES_SUCCESS)
  t.equal(await store.read(OID, 0, 5), SD_RES_NO_OBJ, 'removed')
  const staged = await store.beginCreate(OID, 4096)
  await staged.write(0, text('staged'))
  t.equal(await staged.commit(), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 6), text('staged'), 'a staged create committed over it is read')
  t.same(await store.readStale(OID, 3, 0, 5), text('aGain'), 'the stale copy kept its bytes')
})

t.test('concurrent reads and a create over the object: later reads see the new file', async (t) => {
  const store = await newStore(t)
  await store.create({ oid: OID, offset: 0, data: text('old') }, 4096)
  const reads = Array.from({ length: 20 }, () => store.read(OID, 0, 3))
  const created = store.create({ oid: OID, offset: 0, data: text('new') }, 4096)
  for (const r of await Promise.all(reads)) t.ok(Buffer.isBuffer(r) && ['old', 'new'].includes(r.toString()), 'a read during the create reads one of them')
  await created
  t.same(await store.read(OID, 0, 3), text('new'), 'after the create only the new file')
})

t.test('the cache holds at most its bound and never closes a descriptor in use', async (t) => {
  const dir = tempDir('fd-cache-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const files = Array.from({ length: 6 }, (_, i) => {
    const f = path.join(dir, `f${i}`)
    fs.writeFileSync(f, `file ${i}`)
    return f
  })
  const cache = new FdCache<number, string>(fs.constants.O_RDWR, 2)
  const held = await cache.open(0, 'd', files[0] as string, () => true)
  for (let i = 1; i < 6; i++) (await cache.open(i, 'd', files[i] as string, () => true)).release()
  t.ok(cache.size <= 3, `at most the bound plus the one in use (${cache.size})`)
  const buf = Buffer.alloc(6)
  fs.readSync(held.fd, buf, 0, 6, 0)
  t.same(buf, text('file 0'), 'the descriptor in use still reads its file')
  cache.drop(0)
  fs.readSync(held.fd, buf, 0, 6, 0)
  t.same(buf, text('file 0'), 'dropped while in use: still open until released')
  held.release()
  t.notOk(cache.hit(0, 'd', files[0] as string), 'gone once released')
  const other = await cache.open(5, 'e', files[5] as string, () => true)
  t.notOk(cache.hit(5, 'd', files[5] as string), 'cached on disk e now: not a hit for disk d')
  other.release()
  cache.dropDisk('e')
  t.notOk(cache.hit(5, 'e', files[5] as string), 'dropped with its disk')
  const uncached = await cache.open(4, 'd', files[4] as string, () => false)
  uncached.release()
  t.notOk(cache.hit(4, 'd', files[4] as string), 'not cached when the disk takes no more')
  cache.dropAll()
  t.equal(cache.size, 0)
})

t.test('unstable writes are read back, made durable by flush, and kept by a move to the stale area', async (t) => {
  const store = await newStore(t, false)
  await store.create({ oid: OID, offset: 0, data: text('stable') }, 4096)
  t.equal(await store.write({ oid: OID, offset: 0, data: text('UN'), unstable: true }), SD_RES_SUCCESS)
  t.same(await store.read(OID, 0, 6), text('UNable'), 'an unstable write is read back at once')
  await store.flush()
  await store.flush()
  t.pass('flush with and without unstable writes')
  t.equal(await store.write({ oid: OID, offset: 2, data: text('ST'), unstable: true }), SD_RES_SUCCESS)
  await store.moveToStale(OID, 4)
  t.same(await store.readStale(OID, 4, 0, 6), text('UNSTle'), 'the stale copy has the unstable write')
  await store.flush()
  t.equal(await store.create({ oid: OID, offset: 0, data: text('fresh') }, 4096), SD_RES_SUCCESS)
  t.equal(await store.write({ oid: OID, offset: 0, data: text('F'), unstable: true }), SD_RES_SUCCESS)
  t.equal(await store.remove(OID), SD_RES_SUCCESS)
  await store.flush()
  t.pass('a removed object with unstable writes needs no sync')
})

/** A flush's fdatasyncs with and without the write-back log: after six objects, after none, after two. */
const FLUSH_SYNC_CASES = [
  {
    name: 'without the write-back log, a flush of many objects syncs the filesystem once; of a few, object by object',
    writeBackLog: false,
    fdatasyncs: [0, 0, 2],
    logAppends: [0, 0, 0],
    says: ['six objects: one syncfs, no fdatasync', 'nothing left to sync', 'two objects: an fdatasync each'],
  },
  {
    name: "with the write-back log, a flush of any number of objects is one append (O_DSYNC): the log's",
    writeBackLog: true,
    fdatasyncs: [0, 0, 0],
    logAppends: [1, 1, 2],
    says: ['six objects: one append to the log, no fdatasync', 'nothing left to sync', 'two objects: one more append'],
  },
]

for (const c of FLUSH_SYNC_CASES) {
  t.test(c.name, async (t) => {
    t.ok(syncfsAvailable(), 'the syncfs addon was built by npm ci (native/storeio)')
    const store = await newStore(t, false, c.writeBackLog)
    const oids = Array.from({ length: 6 }, (_, i) => OID + BigInt(i))
    for (const oid of oids) await store.create({ oid, offset: 0, data: text('stable') }, 4096)
    let fdatasyncs = 0
    const real = fs.fdatasync
    t.teardown(() => {
      fs.fdatasync = real
    })
    fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      fdatasyncs++
      real(fd, cb)
    }) as typeof fs.fdatasync
    for (const oid of oids) t.equal(await store.write({ oid, offset: 0, data: text('UN'), unstable: true }), SD_RES_SUCCESS)
    await store.flush()
    t.equal(fdatasyncs, c.fdatasyncs[0], c.says[0])
    t.equal(store.writeBackLogStats().flushesLogged, c.logAppends[0], c.says[0])
    await store.flush()
    t.equal(fdatasyncs, c.fdatasyncs[1], c.says[1])
    t.equal(store.writeBackLogStats().flushesLogged, c.logAppends[1], c.says[1])
    for (const oid of oids.slice(0, 2)) await store.write({ oid, offset: 0, data: text('UN'), unstable: true })
    await store.flush()
    t.equal(fdatasyncs, c.fdatasyncs[2], c.says[2])
    t.equal(store.writeBackLogStats().flushesLogged, c.logAppends[2], c.says[2])
    for (const oid of oids) t.same(await store.read(oid, 0, 6), text('UNable'))
  })
}

t.test('a flush that finds nothing left to sync still waits for the syncs under way', async (t) => {
  // a FLUSH promises every write acknowledged before it durable: the writes an earlier flush
  // took and is still syncing are this one's too (fio sends a burst of FLUSHes after each batch)
  for (const count of [1, 6]) {
    const store = await newStore(t, false)
    const oids = Array.from({ length: count }, (_, i) => OID + BigInt(i))
    for (const oid of oids) await store.create({ oid, offset: 0, data: text('stable') }, 4096)
    for (const oid of oids) t.equal(await store.write({ oid, offset: 0, data: text('UN'), unstable: true }), SD_RES_SUCCESS)
    let firstDone = false
    const first = store.flush().then(() => {
      firstDone = true
    })
    const later = [store.flush(), store.flush()]
    await later[0]
    t.ok(firstDone, `${count} object(s): a second flush returns only after the first one's sync`)
    await Promise.all([first, ...later])
    let idleDone = false
    await store.flush().then(() => {
      idleDone = true
    })
    t.ok(idleDone, 'with nothing written and nothing under way, a flush returns')
  }
})

t.test('a flush waits for the sync a move to the stale area started', async (t) => {
  // the move takes the object's unstable writes out of the flush's set and syncs them itself:
  // a FLUSH answered meanwhile must not return before that sync is done
  const store = await newStore(t, false)
  await store.create({ oid: OID, offset: 0, data: text('stable') }, 4096)
  t.equal(await store.write({ oid: OID, offset: 0, data: text('UN'), unstable: true }), SD_RES_SUCCESS)
  const real = fs.fdatasync
  t.teardown(() => {
    fs.fdatasync = real
  })
  let moveSyncDone = false
  let syncStarted: () => void = () => undefined
  const started = new Promise<void>((resolve) => {
    syncStarted = resolve
  })
  fs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    syncStarted()
    // a slow disk: the sync takes a while
    setTimeout(
      () =>
        real(fd, (err) => {
          moveSyncDone = true
          cb(err)
        }),
      200,
    )
  }) as typeof fs.fdatasync
  const moved = store.moveToStale(OID, 4)
  await started
  await store.flush()
  t.ok(moveSyncDone, "the flush returned only after the move's sync")
  await moved
  t.same(await store.readStale(OID, 4, 0, 6), text('UNable'), 'the stale copy has the unstable write')
})

t.test('an object file removed by hand is noticed by the next read after a pause', async (t) => {
  const dir = tempDir('store-fds-hand-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  await store.init()
  await store.create({ oid: OID, offset: 0, data: text('here') }, 4096)
  t.same(await store.read(OID, 0, 4), text('here'), 'read once: its descriptor is cached')
  const file = fs.readdirSync(dir).find((f) => f.startsWith('0000004200000007'))
  fs.rmSync(path.join(dir, file as string))
  await new Promise((r) => setTimeout(r, FD_IDLE_RECHECK_MS + 30))
  t.equal(await store.read(OID, 0, 4), SD_RES_NO_OBJ, 'the removed file reads as missing')
})

t.test('an idle descriptor is answered by its directory while nothing in it changed; a change by hand is still seen', async (t) => {
  const dir = tempDir('store-fds-dir-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  await store.init()
  await store.create({ oid: OID, offset: 0, data: text('here') }, 4096)
  const file = path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('0000004200000007')) as string)
  // the directory last changed long before the descriptor was opened
  const past = new Date(Date.now() - 60_000)
  fs.utimesSync(dir, past, past)
  t.same(await store.read(OID, 0, 4), text('here'), 'read once: its descriptor is cached')
  const statted: string[] = []
  // node:fs declares statSync read-only; the module's object takes the assignment
  const mutableFs = fs as { statSync: typeof fs.statSync }
  const realStat = fs.statSync
  mutableFs.statSync = ((p: fs.PathLike, o?: fs.StatSyncOptions) => {
    statted.push(String(p))
    return realStat(p, o)
  }) as typeof fs.statSync
  t.teardown(() => {
    mutableFs.statSync = realStat
  })
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, FD_IDLE_RECHECK_MS + 10))
    t.same(await store.read(OID, 0, 4), text('here'), `idle read ${i + 1}`)
  }
  t.notOk(statted.includes(file), "the object file itself was not stat'ed")
  t.ok(statted.includes(dir), 'its directory was')
  // replaced by hand: a new file renamed over the name (the directory's mtime moves)
  fs.writeFileSync(`${file}.new`, 'HERE')
  fs.renameSync(`${file}.new`, file)
  await new Promise((r) => setTimeout(r, FD_IDLE_RECHECK_MS + 10))
  t.same(await store.read(OID, 0, 4), text('HERE'), 'the file replaced by hand is read after a pause')
  fs.rmSync(file)
  await new Promise((r) => setTimeout(r, FD_IDLE_RECHECK_MS + 10))
  t.equal(await store.read(OID, 0, 4), SD_RES_NO_OBJ, 'and once removed by hand, reads as missing')
})

t.test('reads the page cache holds are served without the thread pool; others through it', async (t) => {
  const store = await newStore(t, false)
  const big = crypto.randomBytes(256 * 1024)
  t.equal(await store.create({ oid: OID, offset: 0, data: big }, big.length), SD_RES_SUCCESS)
  let poolReads = 0
  const real = fs.read
  t.teardown(() => {
    fs.read = real
  })
  fs.read = ((...args: Parameters<typeof fs.read>) => {
    poolReads++
    return (real as (...a: unknown[]) => void)(...args)
  }) as typeof fs.read
  t.same(await store.read(OID, 4096, 4096), big.subarray(4096, 8192), 'a 4 KiB read of a just written object')
  t.same(await store.read(OID, 100, 60_000), big.subarray(100, 60_100), 'a 60,000-byte read at an odd offset')
  t.equal(poolReads, 0, 'both from the page cache, on the event loop')
  t.same(await store.read(OID, 0, big.length), big, 'a read larger than the inline limit')
  t.equal(poolReads, 1, 'goes to the pool')
  // past the end of the file: a short read, zeros after it (the pool's way)
  t.equal(await store.create({ oid: OID + 1n, offset: 0, data: text('short') }, 5), SD_RES_SUCCESS)
  t.same(await store.read(OID + 1n, 0, 4096), Buffer.concat([text('short'), Buffer.alloc(4091)]), 'a read past the end reads zeros')
  t.ok(poolReads > 1, 'through the pool')
})

t.test('writes in pieces: every byte lands, synced or not, and a failure is an errno error', async (t) => {
  const dir = tempDir('store-pieces-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'object')
  fs.writeFileSync(file, Buffer.alloc(0))
  const fd = fs.openSync(file, 'r+')
  t.teardown(() => fs.closeSync(fd))
  // a view into the middle of a larger buffer, longer than several pieces, at an odd position
  const backing = crypto.randomBytes(5 * PAGE_CACHE_PIECE_BYTES)
  const data = backing.subarray(777, 777 + 3 * PAGE_CACHE_PIECE_BYTES + 4321)
  await writeInPieces(fd, data, 12_345, false)
  await writeInPieces(fd, data.subarray(0, 100), 0, true)
  const back = fs.readFileSync(file)
  t.equal(back.length, 12_345 + data.length, 'the file ends where the write did')
  t.same(back.subarray(12_345), data, 'every piece in place')
  t.same(back.subarray(0, 100), data.subarray(0, 100), 'the synced write too')
  writeInPiecesNow(fd, data, 1)
  t.same(fs.readFileSync(file).subarray(1, 1 + data.length), data, 'on the calling thread as well')
  const readOnly = fs.openSync(file, 'r')
  t.teardown(() => fs.closeSync(readOnly))
  await t.rejects(writeInPieces(readOnly, data, 0, false), { code: 'EBADF' }, 'a descriptor not open for writing: EBADF')
})
