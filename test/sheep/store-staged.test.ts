// The object store's piece-by-piece creates (beginCreate), as recovery and REPAIR_REPLICA use them
// for objects bigger than one request, and copyObject on top of them: an object is invisible
// until committed, a client's create made meanwhile wins over an ifAbsent commit, an aborted or
// failed copy leaves no file behind, and GET_HASH's SHA-1 (read in pieces) matches the bytes.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { OBJECT_CHUNK_BYTES, SD_RES_EIO, SD_RES_NO_OBJ, SD_RES_SUCCESS } from '../../lib/proto.js'
import { copyObject } from '../../sheep/object-copy.js'
import { FileStore, oidFileName } from '../../sheep/store/file-store.js'
import { silentLogger } from '../../lib/log.js'
import { tempDir } from '../../harness/sheep.js'

const MiB = 1024 * 1024
/** Three pieces and a bit: the last piece is shorter than the others. */
const OBJECT_BYTES = 3 * OBJECT_CHUNK_BYTES + MiB

async function newStore(t: Test): Promise<FileStore> {
  const dir = tempDir('store-staged-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const store = new FileStore({ disks: [dir], nosync: true, log: silentLogger() })
  await store.init()
  return store
}

/** Files in the store directory other than object files (temporary files left behind). */
function strayFiles(store: FileStore): string[] {
  return fs.readdirSync(store.dir).filter((name) => name !== '.stale' && !/^[0-9a-f]{16}$/.test(name))
}

t.test('a staged create is invisible until committed', async (t) => {
  const store = await newStore(t)
  const oid = 0x1234n << 32n
  const data = crypto.randomBytes(OBJECT_BYTES)
  const staged = await store.beginCreate(oid, OBJECT_BYTES)
  for (let at = 0; at < OBJECT_BYTES; at += OBJECT_CHUNK_BYTES) {
    await staged.write(at, data.subarray(at, at + OBJECT_CHUNK_BYTES))
    t.notOk(store.exists(oid), `not visible after the piece at ${at}`)
    t.equal(await store.read(oid, 0, 16), SD_RES_NO_OBJ)
  }
  t.equal(await staged.commit(), SD_RES_SUCCESS)
  t.ok(store.exists(oid))
  t.equal(fs.statSync(path.join(store.dir, oidFileName(oid))).size, OBJECT_BYTES)
  t.same(await store.sha1(oid), crypto.createHash('sha1').update(data).digest(), 'SHA-1 read in pieces')
  t.same(strayFiles(store), [])
})

t.test('with ifAbsent, an object created meanwhile wins', async (t) => {
  const store = await newStore(t)
  const oid = 0x1234n << 32n
  const staged = await store.beginCreate(oid, OBJECT_BYTES)
  await staged.write(0, Buffer.alloc(MiB, 1))
  const client = Buffer.alloc(MiB, 2)
  t.equal(await store.create({ oid, offset: 0, data: client }, OBJECT_BYTES), SD_RES_SUCCESS)
  t.equal(await staged.commit({ ifAbsent: true }), SD_RES_SUCCESS)
  t.same(await store.read(oid, 0, MiB), client, "the client's bytes stay")
  t.same(strayFiles(store), [], 'the staged copy is gone')
})

t.test('without ifAbsent, the staged object replaces it; abort leaves nothing', async (t) => {
  const store = await newStore(t)
  const oid = 0x1234n << 32n
  t.equal(await store.create({ oid, offset: 0, data: Buffer.alloc(MiB, 2) }, OBJECT_BYTES), SD_RES_SUCCESS)
  const replacing = await store.beginCreate(oid, OBJECT_BYTES)
  await replacing.write(2 * OBJECT_CHUNK_BYTES, Buffer.alloc(MiB, 3))
  t.same(await store.read(oid, 0, 4), Buffer.alloc(4, 2), 'the old object is served meanwhile')
  t.equal(await replacing.commit(), SD_RES_SUCCESS)
  t.same(await store.read(oid, 0, 4), Buffer.alloc(4), 'unwritten parts of the new object are zeros')
  t.same(await store.read(oid, 2 * OBJECT_CHUNK_BYTES, 4), Buffer.alloc(4, 3))
  const aborted = await store.beginCreate(0x99n, OBJECT_BYTES)
  await aborted.write(0, Buffer.alloc(MiB, 4))
  await aborted.abort()
  t.notOk(store.exists(0x99n))
  t.same(strayFiles(store), [])
})

t.test('copyObject: pieces in order, and a failed read leaves nothing', async (t) => {
  const store = await newStore(t)
  const data = crypto.randomBytes(OBJECT_BYTES)
  const asked: Array<[number, number]> = []
  const result = await copyObject(store, 0x7n, OBJECT_BYTES, async (offset, length) => {
    asked.push([offset, length])
    return data.subarray(offset, offset + length)
  })
  t.equal(result, SD_RES_SUCCESS)
  t.same(asked, [
    [0, OBJECT_CHUNK_BYTES],
    [OBJECT_CHUNK_BYTES, OBJECT_CHUNK_BYTES],
    [2 * OBJECT_CHUNK_BYTES, OBJECT_CHUNK_BYTES],
    [3 * OBJECT_CHUNK_BYTES, MiB],
  ])
  t.same(await store.sha1(0x7n), crypto.createHash('sha1').update(data).digest())

  const failing = await copyObject(store, 0x8n, OBJECT_BYTES, async (offset, length) => (offset > 0 ? SD_RES_EIO : data.subarray(0, length)))
  t.equal(failing, SD_RES_EIO)
  const short = await copyObject(store, 0x9n, OBJECT_BYTES, async (offset, length) => data.subarray(offset, offset + length - (offset > 0 ? 1 : 0)))
  t.equal(short, SD_RES_EIO, 'a short piece fails the copy')
  t.notOk(store.exists(0x8n))
  t.notOk(store.exists(0x9n))
  t.same(strayFiles(store), [])
})
