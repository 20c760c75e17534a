// The checksum layer over the object store (sheep/store/checksums.ts, docs/integrity.md): every
// way bytes reach a replica keeps its checksums right (create, write — aligned or not —, staged
// creates, repairs, moves to the stale area, removal, purge), a flipped or truncated block is
// never served (EIO, onCorrupt told), object files stay byte-identical to what the plain store
// writes, a crash mid-write (intent marks left) never shows as corruption, and a checksum file
// older than its object (another program wrote it) is dropped instead of trusted.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import zlib from 'node:zlib'
import t, { type Test } from 'tap'
import { silentLogger } from '../../lib/log.js'
import { BufferPool } from '../../lib/buffer-pool.js'
import { OBJECT_CHUNK_BYTES, SD_RES_EIO, SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'
import { copyObject } from '../../sheep/object-copy.js'
import { CSUM_BLOCK_BYTES, CSUM_DIR, ChecksumStore, decodeTable, encodeTable, firstBadBlock, overwriteFileSync, tableOf } from '../../sheep/store/checksums.js'
import { crc32Blocks } from '../../sheep/store/crc32.js'
import { NOT_CACHED } from '../../sheep/store/driver.js'
import { FileStore, oidFileName } from '../../sheep/store/file-store.js'
import { INTENT_LOG_FILE } from '../../sheep/store/intent-log.js'
import { syncfsAvailable } from '../../sheep/store/native-io.js'
import { tempDir } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const OBJECT_BYTES = 4 * MiB
const OID = 0x00abcdef00000007n

interface Fixture {
  dir: string
  files: FileStore
  store: ChecksumStore
  corrupt: bigint[]
}

async function open(dir: string): Promise<Fixture> {
  const files = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  const store = new ChecksumStore(files, { dir: path.join(dir, CSUM_DIR), nosync: true, log: silentLogger() })
  const corrupt: bigint[] = []
  store.onCorrupt = (key) => corrupt.push(key)
  await store.init()
  return { dir, files, store, corrupt }
}

async function newStore(t: Test): Promise<Fixture> {
  const dir = tempDir('checksums-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const f = await open(dir)
  t.teardown(() => f.store.close())
  return f
}

function objectFile(f: Fixture, oid = OID): string {
  return path.join(f.dir, oidFileName(oid))
}

/** Flips one byte of the object file at `at`, as bit rot would. */
function flip(f: Fixture, at: number, oid = OID): void {
  const fd = fs.openSync(objectFile(f, oid), 'r+')
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, at)
  b[0] = (b[0] as number) ^ 0x5a
  fs.writeSync(fd, b, 0, 1, at)
  fs.closeSync(fd)
}

t.test('table encoding and block checks', async (t) => {
  const data = crypto.randomBytes(3 * CSUM_BLOCK_BYTES + 100)
  const table = tableOf(data.length, 0, data)
  t.equal(table.crcs.length, 4)
  t.same(decodeTable(encodeTable(table)), table, 'encode/decode pair')
  t.equal(decodeTable(encodeTable(table).subarray(0, 20)), undefined, 'a torn file is no table')
  const check = (bytes: Buffer, first: number) => {
    const crcs = new Uint32Array(Math.ceil(bytes.length / CSUM_BLOCK_BYTES))
    crc32Blocks(bytes, CSUM_BLOCK_BYTES, crcs, 0)
    return firstBadBlock(table, bytes, first, crcs)
  }
  t.equal(check(data, 0), -1)
  const bad = Buffer.from(data)
  bad[CSUM_BLOCK_BYTES * 2 + 5] ^= 1
  t.equal(check(bad, 0), 2)
  t.equal(check(bad.subarray(CSUM_BLOCK_BYTES, 2 * CSUM_BLOCK_BYTES), 1), -1, 'a read of block 1 only checks block 1')
})

t.test('create, aligned and unaligned writes, reads: checksums follow the bytes', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  t.equal(await f.store.create({ oid: OID, offset: 0, data: data.subarray(0, MiB) }, OBJECT_BYTES), SD_RES_SUCCESS)
  data.fill(0, MiB)
  t.equal(await f.store.write({ oid: OID, offset: 2 * MiB, data: data.subarray(2 * MiB, 2 * MiB + 8192) }), SD_RES_SUCCESS)
  // unaligned: starts and ends inside blocks
  const odd = crypto.randomBytes(5000)
  odd.copy(data, 3 * MiB + 777)
  t.equal(await f.store.write({ oid: OID, offset: 3 * MiB + 777, data: odd }), SD_RES_SUCCESS)
  t.same(await f.store.read(OID, 0, OBJECT_BYTES), data, 'whole object')
  t.same(await f.store.read(OID, 3 * MiB + 700, 100), data.subarray(3 * MiB + 700, 3 * MiB + 800), 'a small unaligned read')
  t.same(await f.store.sha1(OID), crypto.createHash('sha1').update(data).digest())
  t.equal(await f.store.verify(OID), 'ok')
  t.same(fs.readFileSync(objectFile(f)), data, 'the object file holds exactly the bytes (no checksums inside)')
  t.same(f.corrupt, [])
})

t.test('a flipped byte is never served; other blocks still are', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  flip(f, MiB + 10)
  t.equal(await f.store.read(OID, MiB, 4096), SD_RES_EIO, 'the bad block: EIO')
  t.equal(await f.store.read(OID, 0, OBJECT_BYTES), SD_RES_EIO, 'a read covering it: EIO')
  t.same(await f.store.read(OID, 2 * MiB, 4096), data.subarray(2 * MiB, 2 * MiB + 4096), 'a good block reads')
  t.equal(await f.store.sha1(OID), SD_RES_EIO, 'GET_HASH: EIO')
  t.equal(await f.store.verify(OID), 'corrupt')
  t.ok(f.corrupt.length >= 1 && f.corrupt.every((k) => k === OID), 'onCorrupt told')
  t.equal(await f.store.readAfterMutations(OID, MiB, 4096), SD_RES_EIO, 'a recovery read: EIO too')
  // a write over part of the bad block keeps it detectably bad
  t.equal(await f.store.write({ oid: OID, offset: MiB, data: Buffer.alloc(100, 1) }), SD_RES_SUCCESS)
  t.equal(await f.store.read(OID, MiB, 4096), SD_RES_EIO, 'a partial write does not bless the rot')
  // a whole-block write replaces it
  t.equal(await f.store.write({ oid: OID, offset: MiB, data: Buffer.alloc(4096, 2) }), SD_RES_SUCCESS)
  t.same(await f.store.read(OID, MiB, 4096), Buffer.alloc(4096, 2))
})

t.test('reads done at once (readNow) serve only checked bytes, and leave every failure to read()', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  t.equal(f.files.readNow(OID, 0, 4096), undefined, 'the file not open yet: not at once')
  t.same(await f.store.read(OID, 0, 4096), data.subarray(0, 4096), 'read() opens it')
  t.same(f.store.readNow(OID, 2 * MiB, 4096), data.subarray(2 * MiB, 2 * MiB + 4096), 'a block at once')
  t.same(f.store.readNow(OID, 2 * MiB + 100, 9000), data.subarray(2 * MiB + 100, 2 * MiB + 9100), 'an unaligned range at once')
  t.equal(f.store.readNow(OID, 0, 1024 * 1024), undefined, 'a large read goes to the thread pool')
  flip(f, MiB + 10)
  t.equal(f.store.readNow(OID, MiB, 4096), undefined, 'the bad block: not at once')
  t.equal(f.store.readNow(OID, MiB - 4096, 8192), undefined, 'a range covering it: not at once')
  t.same(f.store.readNow(OID, MiB + 4096, 4096), data.subarray(MiB + 4096, MiB + 8192), 'the next block: at once')
  t.same(f.corrupt, [], 'readNow reports nothing itself')
  t.equal(await f.store.read(OID, MiB, 4096), SD_RES_EIO, 'read() finds the bad block: EIO')
  t.same(f.corrupt, [OID], 'and reports it')
})

t.test('a read the sheep serves alone (lone) is done at once up to 1 MiB, in a pooled buffer, checked', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  t.same(await f.store.read(OID, 0, 4096), data.subarray(0, 4096), 'read() opens it')
  const pool = new BufferPool()
  t.equal(f.store.readNow(OID, 0, MiB, { pool }), undefined, 'not alone: 1 MiB goes to the thread pool')
  const now = f.store.readNow(OID, 2 * MiB, MiB, { pool, lone: true })
  t.ok(now instanceof Buffer && now.equals(data.subarray(2 * MiB, 3 * MiB)), 'alone: 1 MiB at once')
  t.ok(now instanceof Buffer && pool.lends(now), 'in a buffer of the pool')
  if (now instanceof Buffer) pool.release(now)
  t.equal(f.store.readNow(OID, 0, MiB + 4096, { pool, lone: true }), undefined, 'more than 1 MiB: the thread pool')
  flip(f, MiB + 10)
  t.equal(f.store.readNow(OID, MiB, MiB, { pool, lone: true }), undefined, 'a bad block inside: not at once')
  t.equal(pool.outBytes, 0, 'and its buffer is back in the pool')
  t.same(f.corrupt, [], 'readNow reports nothing itself')
  t.equal(await f.store.read(OID, MiB, MiB, { pool, lone: true }), SD_RES_EIO, 'read() alone: EIO')
  t.same(f.corrupt, [OID], 'and reports it')
  const whole = await f.store.read(OID, 2 * MiB, MiB, { pool, lone: true })
  t.ok(whole instanceof Buffer && whole.equals(data.subarray(2 * MiB, 3 * MiB)), 'read() alone: the good bytes')
})

/**
 * Drops the file's pages from the page cache (synced first: dirty pages stay), as memory pressure
 * would; false when python3 (which node-gyp needs anyway) is not there to call posix_fadvise.
 */
function evictFromPageCache(file: string): boolean {
  const script = 'import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nos.fsync(fd)\nos.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)'
  return spawnSync('python3', ['-c', script, file]).status === 0
}

t.test('bytes the page cache does not hold are said to be so (NOT_CACHED), and read() takes them from the disk', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  t.same(await f.store.read(OID, 0, 4096), data.subarray(0, 4096), 'read() opens it')
  if (!evictFromPageCache(objectFile(f))) {
    t.pass('no python3 to drop the file from the page cache: nothing more to check')
    return
  }
  t.equal(f.files.readNow(OID, 2 * MiB, 4096), NOT_CACHED, 'the store: not in the page cache')
  // (a read that found the bytes missing may have had the kernel start reading them ahead)
  evictFromPageCache(objectFile(f))
  t.equal(f.store.readNow(OID, 2 * MiB, 4096), NOT_CACHED, 'the checksum layer says so too')
  evictFromPageCache(objectFile(f))
  t.same(await f.store.read(OID, 2 * MiB, 4096), data.subarray(2 * MiB, 2 * MiB + 4096), 'read() reads it from the disk, checked')
  t.same(f.store.readNow(OID, 2 * MiB, 4096), data.subarray(2 * MiB, 2 * MiB + 4096), 'then it is at once')
  t.same(await f.files.read(OID, 3 * MiB, 4096, { uncached: true }), data.subarray(3 * MiB, 3 * MiB + 4096), 'a read told the bytes are not cached reads them')
  t.same(f.corrupt, [], 'nothing reported')
})

t.test('a truncated object file reads as EIO, not zeros', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  fs.truncateSync(objectFile(f), MiB)
  t.same(await f.store.read(OID, 0, 4096), data.subarray(0, 4096))
  t.equal(await f.store.read(OID, 2 * MiB, 4096), SD_RES_EIO)
})

t.test('staged creates and repairs through replace', async (t) => {
  const f = await newStore(t)
  const size = 2 * OBJECT_CHUNK_BYTES + 3 * CSUM_BLOCK_BYTES + 11
  const data = crypto.randomBytes(size)
  const read = async (o: number, l: number) => data.subarray(o, o + l)
  t.equal(await copyObject(f.store, OID, size, read), SD_RES_SUCCESS)
  t.equal(await f.store.verify(OID), 'ok')
  t.same(await f.store.sha1(OID), crypto.createHash('sha1').update(data).digest())
  flip(f, size - 3)
  t.equal(await f.store.verify(OID), 'corrupt', 'the short last block is checked too')
  t.equal(await f.store.replace(OID, (store) => copyObject(store, OID, size, read)), SD_RES_SUCCESS)
  t.equal(await f.store.verify(OID), 'ok', 'rewritten whole: checksums fresh')
  // pieces that split blocks
  const key = OID + 1n
  const staged = await f.store.beginCreate(key, 3 * CSUM_BLOCK_BYTES)
  const bytes = crypto.randomBytes(3 * CSUM_BLOCK_BYTES)
  await staged.write(0, bytes.subarray(0, 5000))
  await staged.write(5000, bytes.subarray(5000))
  t.equal(await staged.commit(), SD_RES_SUCCESS)
  t.equal(await f.store.verify(key), 'ok')
})

t.test('stale moves keep checksums; remove and purge drop them', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  await f.store.moveToStale(OID, 3)
  t.same(await f.store.readStale(OID, 3, 0, 4096), data.subarray(0, 4096))
  const staleFile = path.join(f.dir, '.stale', `${oidFileName(OID)}.3`)
  const fd = fs.openSync(staleFile, 'r+')
  fs.writeSync(fd, Buffer.from([1, 2, 3]), 0, 3, 100)
  fs.closeSync(fd)
  t.equal(await f.store.readStale(OID, 3, 0, 4096), SD_RES_EIO, 'a corrupt stale copy is not served to recovery')
  await f.store.purgeStale()
  t.same(
    fs.readdirSync(path.join(f.dir, CSUM_DIR)).filter((n) => n !== INTENT_LOG_FILE),
    [],
    'no checksum file left',
  )
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  t.equal(await f.store.remove(OID), SD_RES_SUCCESS)
  t.notOk(fs.existsSync(path.join(f.dir, CSUM_DIR, oidFileName(OID))))
  t.equal(await f.store.read(OID, 0, 10), SD_RES_NO_OBJ)
})

t.test('objects without checksums are served unverified, then established', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  // the plain store alone writes it, as the original would
  await f.files.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  t.notOk(await f.store.hasChecksums(OID))
  t.same(await f.store.read(OID, 0, 4096), data.subarray(0, 4096))
  t.equal(await f.store.write({ oid: OID, offset: 0, data: Buffer.alloc(4096, 9) }), SD_RES_SUCCESS)
  data.fill(9, 0, 4096)
  const wrong = crypto.createHash('sha1').update('other').digest()
  t.notOk(await f.store.establish(OID, wrong), 'not established when the majority has other bytes')
  t.ok(await f.store.establish(OID, crypto.createHash('sha1').update(data).digest()))
  t.equal(await f.store.verify(OID), 'ok')
})

t.test('after a crash mid-write, marked objects are recomputed, not reported', async (t) => {
  const dir = tempDir('checksums-crash-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const f = await open(dir)
  const data = crypto.randomBytes(OBJECT_BYTES)
  await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES)
  f.store.close = async () => undefined // a crash: no clean stop
  // the bytes changed and the checksum file did not (killed between the two)
  flip(f, 12345)
  t.match(fs.readFileSync(path.join(dir, CSUM_DIR, INTENT_LOG_FILE), 'utf8'), oidFileName(OID), 'the object is marked in the intent log')
  const again = await open(dir)
  t.teardown(() => again.store.close())
  const got = await again.store.read(OID, 0, OBJECT_BYTES)
  t.ok(Buffer.isBuffer(got), 'served (the write was in progress)')
  await again.store.mutationsSettled()
  for (let i = 0; i < 250 && !(await again.store.hasChecksums(OID)); i++) await new Promise((r) => setTimeout(r, 20))
  t.equal(await again.store.verify(OID), 'ok', 'checksums recomputed')
  t.same(again.corrupt, [], 'no corruption reported')
})

t.test('a create marks the object durably before its bytes become visible (the mark overlaps the data sync)', async (t) => {
  const f = await newStore(t)
  const intentLog = path.join(f.dir, CSUM_DIR, INTENT_LOG_FILE)
  const seen: Array<{ marked: boolean; visible: boolean }> = []
  const inner = f.files
  const create = inner.create.bind(inner)
  inner.create = (w, objectSize, opts) =>
    create(w, objectSize, {
      ...opts,
      beforeVisible: async () => {
        await opts?.beforeVisible?.()
        seen.push({ marked: fs.readFileSync(intentLog, 'utf8').includes(oidFileName(w.oid)), visible: fs.existsSync(objectFile(f, w.oid)) })
      },
    })
  const beginCreate = inner.beginCreate.bind(inner)
  inner.beginCreate = async (oid, objectSize) => {
    const staged = await beginCreate(oid, objectSize)
    return {
      ...staged,
      commit: (opts) =>
        staged.commit({
          ...opts,
          beforeVisible: async () => {
            await opts?.beforeVisible?.()
            seen.push({ marked: fs.readFileSync(intentLog, 'utf8').includes(oidFileName(oid)), visible: fs.existsSync(objectFile(f, oid)) })
          },
        }),
    }
  }
  const data = crypto.randomBytes(OBJECT_BYTES)
  t.equal(await f.store.create({ oid: OID, offset: 0, data: data.subarray(0, MiB) }, OBJECT_BYTES), SD_RES_SUCCESS)
  const other = OID + 1n
  const staged = await f.store.beginCreate(other, OBJECT_BYTES)
  await staged.write(0, data)
  t.equal(await staged.commit(), SD_RES_SUCCESS)
  t.same(seen, [
    { marked: true, visible: false },
    { marked: true, visible: false },
  ])
  t.equal(await f.store.verify(OID), 'ok')
  t.equal(await f.store.verify(other), 'ok')
  t.equal(await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES, { ifAbsent: true }), SD_RES_SUCCESS)
  t.same(await f.store.read(OID, MiB, 4096), Buffer.alloc(4096), 'ifAbsent kept the object (and its checksums)')
})

t.test('tables change in memory; their files are written when the mark is cleaned or the table leaves the cache', async (t) => {
  const dir = tempDir('checksums-unwritten-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const files = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  const store = new ChecksumStore(files, { dir: path.join(dir, CSUM_DIR), nosync: true, log: silentLogger(), tableCacheEntries: 2 })
  const corrupt: bigint[] = []
  store.onCorrupt = (key) => corrupt.push(key)
  await store.init()
  t.teardown(() => store.close())
  const f: Fixture = { dir, files, store, corrupt }
  const oids = [OID, OID + 1n, OID + 2n]
  const tableFileOf = (oid: bigint) => path.join(dir, CSUM_DIR, oidFileName(oid))
  for (const oid of oids) {
    t.equal(await store.create({ oid, offset: 0, data: crypto.randomBytes(MiB) }, MiB), SD_RES_SUCCESS)
    t.equal(await store.write({ oid, offset: 8192, data: Buffer.alloc(4096, 9) }), SD_RES_SUCCESS)
  }
  t.ok(fs.existsSync(tableFileOf(OID)), 'the first table left the cache: its file was written')
  t.notOk(fs.existsSync(tableFileOf(OID + 2n)), 'the last one is in memory only (its mark covers a crash)')
  t.same(await store.read(OID, 8192, 4096), Buffer.alloc(4096, 9), 'read back, checked with the table loaded from its file')
  flip(f, 8192 + 100, OID)
  t.equal(await store.read(OID, 8192, 4096), SD_RES_EIO, 'and that table is the current one')
  await store.close()
  for (const oid of oids.slice(1)) {
    const table = decodeTable(fs.readFileSync(tableFileOf(oid)))
    t.equal(table?.crcs[2], zlib.crc32(Buffer.alloc(4096, 9)) >>> 0, `${oidFileName(oid)}: written by the clean of a stop`)
  }
})

t.test('the table cache is bounded by bytes too (objects of a large block size have large tables)', async (t) => {
  const dir = tempDir('checksums-bytes-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const files = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  // a 1 MiB object has a table of 256 CRCs, 1 KiB: room for two
  const store = new ChecksumStore(files, { dir: path.join(dir, CSUM_DIR), nosync: true, log: silentLogger(), tableCacheBytes: 2500 })
  await store.init()
  t.teardown(() => store.close())
  const tableFileOf = (oid: bigint) => path.join(dir, CSUM_DIR, oidFileName(oid))
  const oids = [OID, OID + 1n, OID + 2n]
  for (const oid of oids) t.equal(await store.create({ oid, offset: 0, data: crypto.randomBytes(MiB) }, MiB), SD_RES_SUCCESS)
  t.ok(fs.existsSync(tableFileOf(OID)), 'the oldest table left the cache: its file was written')
  t.notOk(fs.existsSync(tableFileOf(OID + 2n)), 'the newest is in memory only')
  for (const oid of oids) t.equal((await store.read(oid, 0, 4096)) instanceof Buffer, true, `${oidFileName(oid)} reads back verified`)
})

t.test('a clean of several objects makes their checksum files durable with one syncfs', async (t) => {
  t.ok(syncfsAvailable(), 'the syncfs addon was built by npm ci (native/storeio)')
  const dir = tempDir('checksums-syncfs-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const files = new FileStore({ disks: [dir], nosync: false, log: silentLogger() })
  const store = new ChecksumStore(files, { dir: path.join(dir, CSUM_DIR), nosync: false, log: silentLogger() })
  await store.init()
  const oids = Array.from({ length: 5 }, (_, i) => OID + BigInt(i))
  for (const oid of oids) t.equal(await store.create({ oid, offset: 0, data: crypto.randomBytes(64 * 1024) }, MiB), SD_RES_SUCCESS)
  // the fdatasync of one checksum file opens it first
  const opened: string[] = []
  const realOpen = fsp.open
  t.teardown(() => {
    fsp.open = realOpen
  })
  fsp.open = ((file: fs.PathLike, ...rest: unknown[]) => {
    opened.push(String(file))
    return (realOpen as (...args: unknown[]) => Promise<fsp.FileHandle>)(file, ...rest)
  }) as typeof fsp.open
  await store.close()
  t.same(
    opened.filter((f) => oids.some((oid) => f.endsWith(oidFileName(oid)))),
    [],
    "no checksum file opened to be fdatasync'd one by one",
  )
  for (const oid of oids) t.ok(fs.existsSync(path.join(dir, CSUM_DIR, oidFileName(oid))), `${oidFileName(oid)}: its checksum file is written`)
})

t.test('a clean stop empties the intent log; an object written by another program loses its checksums', async (t) => {
  const dir = tempDir('checksums-foreign-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const f = await open(dir)
  await f.store.create({ oid: OID, offset: 0, data: crypto.randomBytes(OBJECT_BYTES) }, OBJECT_BYTES)
  await f.store.close()
  t.equal(fs.readFileSync(path.join(dir, CSUM_DIR, INTENT_LOG_FILE), 'utf8'), '', 'no marks after a clean stop')
  await new Promise((r) => setTimeout(r, 20))
  // the original sheep writes the object (it knows nothing of .csum)
  const fd = fs.openSync(objectFile(f), 'r+')
  fs.writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 0)
  fs.closeSync(fd)
  const again = await open(dir)
  t.teardown(() => again.store.close())
  t.notOk(await again.store.hasChecksums(OID), 'checksums older than the object are dropped')
  t.same(await again.store.read(OID, 0, 4096), Buffer.alloc(4096, 7), 'served unverified, as the original would')
  t.same(again.corrupt, [])
})

t.test('disk moves keep the object file age (checksums stay trusted)', async (t) => {
  const base = tempDir('checksums-md-')
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }))
  const d1 = path.join(base, 'd1')
  const d2 = path.join(base, 'd2')
  const files = new FileStore({ disks: [d1], nosync: true, log: silentLogger() })
  const store = new ChecksumStore(files, { dir: path.join(d1, CSUM_DIR), nosync: true, log: silentLogger() })
  await store.init()
  const oids = Array.from({ length: 16 }, (_, i) => OID + (BigInt(i) << 40n))
  for (const oid of oids) await store.create({ oid, offset: 0, data: crypto.randomBytes(64 * 1024) }, 64 * 1024)
  await new Promise((r) => setTimeout(r, 20))
  t.equal(store.plug([d2]), SD_RES_SUCCESS)
  await store.rebalanced()
  t.ok(
    fs.readdirSync(d2).some((n) => /^[0-9a-f]{16}$/.test(n)),
    'some objects moved to the new disk',
  )
  await store.close()
  const again = new ChecksumStore(new FileStore({ disks: [d1, d2], nosync: true, log: silentLogger() }), {
    dir: path.join(d1, CSUM_DIR),
    nosync: true,
    log: silentLogger(),
  })
  await again.init()
  t.teardown(() => again.close())
  for (const oid of oids) t.equal(await again.verify(oid), 'ok', `${oidFileName(oid)} checked after the move`)
})

t.test('a write of no bytes changes nothing and throws nothing (the wire fuzz sent one)', async (t) => {
  const f = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  t.equal(await f.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
  for (const offset of [0, 4096, 5000]) t.equal(await f.store.write({ oid: OID, offset, data: Buffer.alloc(0) }), SD_RES_SUCCESS, `at ${offset}`)
  const back = await f.store.read(OID, 0, OBJECT_BYTES)
  t.ok(Buffer.isBuffer(back) && back.equals(data), 'the object reads back, verified')
  t.same(f.corrupt, [])
})

t.test('reads racing a remove never take the object for corrupt (a table loaded as its file went)', async (t) => {
  const dir = tempDir('checksums-race-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const csumDir = path.join(dir, CSUM_DIR)
  // the removal of a checksum file takes a while, as on a busy disk: reads load the table from
  // the file meanwhile
  const rm = fsp.rm
  fsp.rm = async (file, opts) => {
    if (String(file).startsWith(csumDir)) await new Promise((resolve) => setTimeout(resolve, 20))
    return rm(file, opts)
  }
  t.teardown(() => {
    fsp.rm = rm
  })
  const files = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  // one table in memory: a second object pushes the first one's table to its file
  const store = new ChecksumStore(files, { dir: csumDir, nosync: true, log: silentLogger(), tableCacheEntries: 1 })
  const corrupt: bigint[] = []
  store.onCorrupt = (key) => corrupt.push(key)
  await store.init()
  t.teardown(() => store.close())
  const other = OID + 1n
  const data = crypto.randomBytes(64 * 1024)
  for (let round = 0; round < 5; round++) {
    t.equal(await store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
    t.equal(await store.create({ oid: other, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
    // reads keep coming (from other clients) while the remove runs, each on its own
    const reads: Promise<Buffer | number>[] = []
    let removed = false
    const removing = store.remove(OID).finally(() => {
      removed = true
    })
    while (!removed) {
      reads.push(store.read(OID, 0, 4096))
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    for (const got of await Promise.all(reads)) {
      if (typeof got !== 'number' && !got.equals(data.subarray(0, 4096))) t.fail('wrong bytes served')
    }
    await removing
    t.equal(await store.read(OID, 0, 4096), SD_RES_NO_OBJ, 'gone after the remove')
    t.equal(await store.remove(other), SD_RES_SUCCESS)
  }
  t.same(corrupt, [], 'never reported corrupt')
})

t.test('a create marks the next absent objects of its VDI ahead, never one that exists', async (t) => {
  const dir = tempDir('checksums-ahead-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const f = await open(dir)
  const data = crypto.randomBytes(4096)
  // OID + 2 exists (written long ago, its mark cleaned): it must not be marked by OID's create
  t.equal(await f.store.create({ oid: OID + 2n, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
  await f.store.close()
  const again = await open(dir)
  t.teardown(() => again.store.close())
  t.equal(await again.store.create({ oid: OID, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
  const marked = fs
    .readFileSync(path.join(dir, CSUM_DIR, INTENT_LOG_FILE), 'utf8')
    .split('\n')
    .filter(Boolean)
  const want = [0n, 1n, 3n, 4n, 5n, 6n, 7n, 8n].map((i) => oidFileName(OID + i))
  t.same(marked.sort(), want.sort(), 'the object and the 8 after it, except the one that exists')
  // the next create finds its mark durable: nothing is appended
  const before = fs.statSync(path.join(dir, CSUM_DIR, INTENT_LOG_FILE)).size
  t.equal(await again.store.create({ oid: OID + 1n, offset: 0, data }, OBJECT_BYTES), SD_RES_SUCCESS)
  t.equal(fs.statSync(path.join(dir, CSUM_DIR, INTENT_LOG_FILE)).size, before, 'no append for the object marked ahead')
  // a corrupt OID + 2 is still caught after a crash: its checksums were never dropped
  // (rot: the bytes change and the file does not look newer than its checksums, or the start
  // would drop them as outdated, as for a file another program wrote; set back a minute, since
  // restoring its exact time through a Date could round it past the checksum file's)
  flip(again, 100, OID + 2n)
  const aMinuteAgo = new Date(Date.now() - 60_000)
  fs.utimesSync(objectFile(again, OID + 2n), aMinuteAgo, aMinuteAgo)
  again.store.close = async () => undefined // a crash: no clean stop
  const third = await open(dir)
  t.teardown(() => third.store.close())
  t.equal(await third.store.read(OID + 2n, 0, 4096), SD_RES_EIO, 'the existing object’s checksums are still trusted')
  t.same(await third.store.read(OID + 1n, 0, 4096), data, 'the objects created under the marks read back')
})

t.test('a checksum file is written over in place: a longer, a shorter and an equal table leave exactly their bytes', async (t) => {
  const dir = tempDir('csum-overwrite-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'table')
  const first = crypto.randomBytes(8200)
  overwriteFileSync(file, first)
  t.same(fs.readFileSync(file), first, 'a new file')
  const inode = fs.statSync(file).ino
  const shorter = crypto.randomBytes(4100)
  overwriteFileSync(file, shorter)
  t.same(fs.readFileSync(file), shorter, 'a shorter table: the rest cut off')
  const same = crypto.randomBytes(4100)
  overwriteFileSync(file, same)
  t.same(fs.readFileSync(file), same, 'one of the same size')
  const longer = crypto.randomBytes(9000)
  overwriteFileSync(file, longer)
  t.same(fs.readFileSync(file), longer, 'a longer one')
  t.equal(fs.statSync(file).ino, inode, 'always the same file')
})
