// The write-back log (sheep/store/wb-log.ts, file-store.ts): a flush of unstable writes appends
// their bytes to the disk's log instead of syncing every object; after a restart of the machine
// (another boot id in the log's header) the records are written back into the objects they
// belong to, never into another incarnation and never over a later durable write; after a mere
// restart of the daemon (the same boot) nothing is written back, so writes made after the last
// flush are kept; a torn tail is ignored; a checkpoint syncs the disk and removes old files.
// Small durable writes are committed through the same log (group commit): the ones that arrive
// together share one append, and after a restart of the machine they are written back too.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { tempDir } from '../../harness/sheep.js'
import { silentLogger } from '../../lib/log.js'
import { SD_RES_SUCCESS } from '../../lib/proto.js'
import { FileStore, type FileStoreOptions } from '../../sheep/store/file-store.js'
import { syncfsAvailable } from '../../sheep/store/native-io.js'
import { WBLOG_DIR, WBLOG_EXTEND_RETRY_MS, WBLOG_RECORD_HEADER_BYTES, parseWbLog } from '../../sheep/store/wb-log.js'

const OBJECT_BYTES = 64 * 1024
const oidOf = (n: number) => (0x42n << 32n) | BigInt(n)
const fill = (byte: number, n = 4096) => Buffer.alloc(n, byte)
/** The log file's header: magic (8 bytes) and boot id (36). */
const FILE_HEADER_BYTES = 44

async function openStore(dir: string, more: Partial<FileStoreOptions> = {}): Promise<FileStore> {
  const store = new FileStore({ disks: [dir], nosync: false, log: silentLogger(), ...more })
  await store.init()
  return store
}

function logFiles(dir: string): string[] {
  const logDir = path.join(dir, WBLOG_DIR)
  return fs.existsSync(logDir)
    ? fs
        .readdirSync(logDir)
        .filter((n) => n.endsWith('.log'))
        .sort()
    : []
}

/** Makes the logs look written before a restart of the machine. */
function fromAnotherBoot(dir: string): void {
  for (const name of logFiles(dir)) {
    const fd = fs.openSync(path.join(dir, WBLOG_DIR, name), 'r+')
    fs.writeSync(fd, Buffer.alloc(36, 'x'), 0, 36, 8)
    fs.closeSync(fd)
  }
}

/** Puts bytes into the object file behind the store's back, as if a write had never reached the disk. */
function overwriteFile(store: FileStore, oid: bigint, offset: number, data: Buffer): void {
  const fd = fs.openSync(store.fileOf(oid) as string, 'r+')
  fs.writeSync(fd, data, 0, data.length, offset)
  fs.closeSync(fd)
}

/** A test of a store on a fresh directory (skipped without the syncfs addon, which the log needs). */
function logTest(name: string, body: (t: Test, dir: string, store: FileStore) => Promise<void>, more: Partial<FileStoreOptions> = {}): void {
  t.test(name, { skip: !syncfsAvailable() && 'no syncfs addon' }, async (t) => {
    const dir = tempDir('store-wblog-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    await body(t, dir, await openStore(dir, more))
  })
}

/** The records of one log file. */
function recordsIn(dir: string, name: string) {
  return parseWbLog(fs.readFileSync(path.join(dir, WBLOG_DIR, name)).subarray(FILE_HEADER_BYTES))
}

/** A record of 4 KiB of bytes. */
const RECORD_4K_BYTES = WBLOG_RECORD_HEADER_BYTES + 4096

async function created(t: Test, store: FileStore, n: number): Promise<bigint> {
  const oid = oidOf(n)
  t.equal(await store.create({ oid, offset: 0, data: fill(0) }, OBJECT_BYTES), SD_RES_SUCCESS)
  return oid
}

logTest('a flush appends the ranges written since the last one; a restart of the machine writes them back', async (t, dir, store) => {
  const oids = [await created(t, store, 1), await created(t, store, 2), await created(t, store, 3)]
  for (const [i, oid] of oids.entries()) {
    t.equal(await store.write({ oid, offset: 4096, data: fill(0x10 + i), unstable: true }), SD_RES_SUCCESS)
    t.equal(await store.write({ oid, offset: 8192, data: fill(0x20 + i), unstable: true }), SD_RES_SUCCESS)
  }
  await store.flush()
  const files = logFiles(dir)
  t.equal(files.length, 1, 'one log file')
  const records = recordsIn(dir, files[0] as string)
  t.equal(records.length, 3, 'one record per object: its two adjacent ranges merged')
  t.same(
    records.map((r) => [r.key, r.offset, r.data.length]).sort((a, b) => Number((a[0] as bigint) - (b[0] as bigint))),
    oids.map((oid) => [oid, 4096, 8192]),
  )
  // power lost before the objects' pages reached the disk: the files have none of it
  for (const oid of oids) overwriteFile(store, oid, 4096, fill(0, 8192))
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  for (const [i, oid] of oids.entries()) {
    t.same(await after.read(oid, 4096, 4096), fill(0x10 + i), `object ${i + 1}: first range written back`)
    t.same(await after.read(oid, 8192, 4096), fill(0x20 + i), `object ${i + 1}: second range written back`)
  }
  t.same(logFiles(dir), [], 'the logs are removed once written back and synced')
})

logTest('after a restart of the daemon alone nothing is written back: writes after the last flush stay', async (t, dir, store) => {
  const oid = await created(t, store, 1)
  await store.write({ oid, offset: 0, data: fill(0xaa), unstable: true })
  await store.flush()
  await store.write({ oid, offset: 0, data: fill(0xbb), unstable: true })
  t.equal(logFiles(dir).length, 1)
  const after = await openStore(dir)
  t.same(await after.read(oid, 0, 4096), fill(0xbb), 'the write after the flush is kept (the page cache had it)')
  t.same(logFiles(dir), [], 'the logs are removed')
})

logTest('records are never written into another incarnation, nor over a later durable write', async (t, dir, store) => {
  const recreated = await created(t, store, 1)
  const overwritten = await created(t, store, 2)
  const other = await created(t, store, 3)
  await store.write({ oid: recreated, offset: 0, data: fill(0x11), unstable: true })
  await store.write({ oid: overwritten, offset: 0, data: fill(0x22), unstable: true })
  await store.write({ oid: other, offset: 0, data: fill(0x33), unstable: true })
  await store.flush()
  // a create over the object: another file under the name
  t.equal(await store.create({ oid: recreated, offset: 0, data: fill(0x44) }, OBJECT_BYTES), SD_RES_SUCCESS)
  // a durable write over the logged range: logged after the record it supersedes
  t.equal(await store.write({ oid: overwritten, offset: 0, data: fill(0x55) }), SD_RES_SUCCESS)
  overwriteFile(store, other, 0, fill(0))
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  t.same(await after.read(recreated, 0, 4096), fill(0x44), 'the new incarnation is left as it is')
  t.same(await after.read(overwritten, 0, 4096), fill(0x55), 'the durable write is what stays')
  t.same(await after.read(other, 0, 4096), fill(0x33), 'the other object is written back')
})

logTest('a torn tail ends the log; the records before it are written back', async (t, dir, store) => {
  const first = await created(t, store, 1)
  const second = await created(t, store, 2)
  await store.write({ oid: first, offset: 0, data: fill(0x61), unstable: true })
  await store.flush()
  await store.write({ oid: second, offset: 0, data: fill(0x62), unstable: true })
  await store.flush()
  // the file is longer than its records (zeros ahead of them): the second record is torn
  const file = path.join(dir, WBLOG_DIR, logFiles(dir)[0] as string)
  fs.truncateSync(file, FILE_HEADER_BYTES + 2 * RECORD_4K_BYTES - 100)
  overwriteFile(store, first, 0, fill(0))
  overwriteFile(store, second, 0, fill(0))
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  t.same(await after.read(first, 0, 4096), fill(0x61), 'the whole record is written back')
  t.same(await after.read(second, 0, 4096), fill(0), 'the torn one is not (its flush never returned)')
})

logTest(
  'a log past its checkpoint size begins a new file; the old one goes once the disk is synced',
  async (t, dir, store) => {
    const oid = await created(t, store, 1)
    for (let i = 0; i < 4; i++) {
      await store.write({ oid, offset: i * 4096, data: fill(0x70 + i), unstable: true })
      await store.flush()
    }
    // the checkpoint's sync and removal run in the background
    for (let i = 0; i < 50 && logFiles(dir).some((n) => n.startsWith('000000000001')); i++) await new Promise((r) => setTimeout(r, 20))
    t.same(logFiles(dir), ['000000000002.log'], 'the first file is removed, the second is being written')
    // a durable write now: committed through the log, after the object's record in the file not checkpointed yet
    await store.write({ oid, offset: 0, data: fill(0x7f) })
    const records = recordsIn(dir, '000000000002.log')
    t.same(
      records.map((r) => [r.offset, r.data[0]]),
      [
        [12288, 0x73],
        [0, 0x7f],
      ],
      'the durable write is logged after it',
    )
  },
  { wbLogCheckpointBytes: 3 * RECORD_4K_BYTES },
)

logTest('a clean stop checkpoints: the logs are gone and nothing is read back at the next start', async (t, dir, store) => {
  const oid = await created(t, store, 1)
  await store.write({ oid, offset: 0, data: fill(0x81), unstable: true })
  await store.flush()
  await store.write({ oid, offset: 0, data: fill(0x82), unstable: true })
  t.equal(logFiles(dir).length, 1)
  await store.close()
  t.same(logFiles(dir), [], 'no log left')
  // even after a restart of the machine, the write after the flush stays: nothing to write back
  const after = await openStore(dir)
  t.same(await after.read(oid, 0, 4096), fill(0x82))
})

logTest('durable writes are committed through the log; a restart of the machine writes them back', async (t, dir, store) => {
  const oids = [await created(t, store, 1), await created(t, store, 2)]
  for (const [i, oid] of oids.entries()) t.equal(await store.write({ oid, offset: 4096 * (i + 1), data: fill(0x90 + i) }), SD_RES_SUCCESS)
  const files = logFiles(dir)
  t.equal(files.length, 1, 'one log file')
  t.same(
    recordsIn(dir, files[0] as string).map((r) => [r.key, r.offset, r.data[0]]),
    oids.map((oid, i) => [oid, 4096 * (i + 1), 0x90 + i]),
    'a record per write, in order',
  )
  t.same(await store.read(oids[0] as bigint, 4096, 4096), fill(0x90), 'read back at once (the page cache has it)')
  t.equal(store.writeBackLogStats().writesCommitted, 2)
  // power lost before the objects' pages reached the disk
  for (const [i, oid] of oids.entries()) overwriteFile(store, oid, 4096 * (i + 1), fill(0))
  fromAnotherBoot(dir)
  const mtimes = oids.map((oid) => fs.statSync(store.fileOf(oid) as string).mtimeMs)
  const after = await openStore(dir)
  for (const [i, oid] of oids.entries()) t.same(await after.read(oid, 4096 * (i + 1), 4096), fill(0x90 + i), `object ${i + 1}: the acknowledged write is back`)
  t.ok(
    oids.every((oid, i) => Math.abs(fs.statSync(after.fileOf(oid) as string).mtimeMs - (mtimes[i] as number)) < 0.001),
    'written back with their times kept, to the µs (the checksum layer would take a newer file for another writer)',
  )
  t.same(logFiles(dir), [], 'the logs are removed once written back and synced')
})

logTest('durable writes that arrive together share one append', async (t, dir, store) => {
  const oids: bigint[] = []
  for (let n = 1; n <= 16; n++) oids.push(await created(t, store, n))
  // one to begin the file, then sixteen at once: the first is appended alone, the rest behind it together
  t.equal(await store.write({ oid: oids[0] as bigint, offset: 0, data: fill(1) }), SD_RES_SUCCESS)
  const before = store.writeBackLogStats()
  const results = await Promise.all(oids.map((oid, i) => store.write({ oid, offset: 8192, data: fill(0x40 + i) })))
  t.same(
    results,
    oids.map(() => SD_RES_SUCCESS),
  )
  const stats = store.writeBackLogStats()
  t.equal(stats.writesCommitted - before.writesCommitted, 16)
  t.ok(stats.commitGroups - before.commitGroups <= 2, `16 writes in ${stats.commitGroups - before.commitGroups} appends`)
  const records = recordsIn(dir, logFiles(dir)[0] as string)
  t.equal(records.length, 17)
  for (const [i, oid] of oids.entries()) t.same(await store.read(oid, 8192, 4096), fill(0x40 + i))
  for (const oid of oids) overwriteFile(store, oid, 8192, fill(0))
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  for (const [i, oid] of oids.entries()) t.same(await after.read(oid, 8192, 4096), fill(0x40 + i), `object ${i + 1} written back`)
})

logTest('a large durable write is written in place; once an object has records, it is logged too', async (t, dir, store) => {
  // larger than the writes group commit takes (64 KiB)
  const LARGE = 128 * 1024
  const [big, mixed] = [oidOf(1), oidOf(2)]
  for (const oid of [big, mixed]) t.equal(await store.create({ oid, offset: 0, data: fill(0) }, 2 * LARGE), SD_RES_SUCCESS)
  t.equal(await store.write({ oid: big, offset: 0, data: fill(0xa1, LARGE) }), SD_RES_SUCCESS)
  t.same(logFiles(dir), [], 'no log: the write went to the object file with O_DSYNC')
  t.equal(await store.write({ oid: mixed, offset: 0, data: fill(0xa2) }), SD_RES_SUCCESS)
  t.equal(await store.write({ oid: mixed, offset: 0, data: fill(0xa3, LARGE) }), SD_RES_SUCCESS)
  t.same(
    recordsIn(dir, logFiles(dir)[0] as string).map((r) => [r.key, r.data.length, r.data[0]]),
    [
      [mixed, 4096, 0xa2],
      [mixed, LARGE, 0xa3],
    ],
    'the large write follows the small one in the log: replayed, it stays the last',
  )
  overwriteFile(store, mixed, 0, fill(0, LARGE))
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  t.same(await after.read(big, 0, LARGE), fill(0xa1, LARGE))
  t.same(await after.read(mixed, 0, LARGE), fill(0xa3, LARGE))
})

logTest(
  'with group commit off durable writes are written in place',
  async (t, dir, store) => {
    const oid = await created(t, store, 1)
    t.equal(await store.write({ oid, offset: 0, data: fill(0xb1) }), SD_RES_SUCCESS)
    t.same(logFiles(dir), [])
    t.equal(store.writeBackLogStats().writesCommitted, 0)
  },
  { groupCommit: false },
)

logTest('a move to the stale area keeps the committed writes in the stale copy', async (t, dir, store) => {
  const oid = await created(t, store, 1)
  t.equal(await store.write({ oid, offset: 4096, data: fill(0xc1) }), SD_RES_SUCCESS)
  await store.moveToStale(oid, 7)
  t.same(await store.readStale(oid, 7, 4096, 4096), fill(0xc1))
  t.notOk(store.exists(oid))
  // the object is synced before it leaves its name: a record is never written back to a stale copy
  fromAnotherBoot(dir)
  const after = await openStore(dir)
  t.same(await after.readStale(oid, 7, 4096, 4096), fill(0xc1))
})

/** Fills the file system of `file` with it, but for `left` bytes. */
function fillAllBut(file: string, left: number): void {
  const fd = fs.openSync(file, 'w')
  let size = 0
  try {
    for (;;) size += fs.writeSync(fd, Buffer.alloc(64 * 1024))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  }
  fs.ftruncateSync(fd, size - left)
  fs.closeSync(fd)
}

/** A store on a tmpfs of 2 MiB (unmounted at the end), and the warnings it logs. */
function onSmallDisk(t: Test): { dir: string; warnings: string[]; open: () => Promise<FileStore> } {
  const dir = tempDir('store-wblog-full-')
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir])
  t.teardown(() => {
    execFileSync('umount', ['-l', dir])
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const warnings: string[] = []
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) })
  return { dir, warnings, open: () => openStore(dir, { log }) }
}

/**
 * After an append failed and the objects were synced in place: no record of the object is left
 * in the logs, so a restart of the host (another boot id) leaves `last` at its offset 0.
 */
async function lastWriteSurvivesRestart(t: Test, dir: string, oid: bigint, last: Buffer): Promise<void> {
  t.same(
    logFiles(dir).flatMap((name) => recordsIn(dir, name)),
    [],
    "checkpointed: the object's older records can never be written back over the bytes synced in place",
  )
  fromAnotherBoot(dir)
  const reopened = await openStore(dir)
  t.same(await reopened.read(oid, 0, last.length), last, 'after a restart of the host the last write is what stays')
}

const SMALL_DISK_SKIP = (process.getuid?.() !== 0 && 'needs root to mount a tmpfs') || (!syncfsAvailable() && 'no syncfs addon')

t.test('a flush that cannot append to a full disk syncs its objects and checkpoints the log', { skip: SMALL_DISK_SKIP }, async (t) => {
  const { dir, warnings, open } = onSmallDisk(t)
  const store = await open()
  const oid = await created(t, store, 1)
  // flushes logged while there is room, until less than a 64 KiB record's room is left
  await store.write({ oid, offset: 0, data: fill(0xe0), unstable: true })
  await store.flush()
  for (let i = 0; i < 15; i++) {
    await store.write({ oid, offset: 0, data: fill(0xe1, OBJECT_BYTES), unstable: true })
    await store.flush()
  }
  t.equal(store.writeBackLogStats().flushesLogged, 16)
  fillAllBut(path.join(dir, 'filler'), 256 * 1024)
  await store.write({ oid, offset: 0, data: fill(0xe2, OBJECT_BYTES), unstable: true })
  await store.flush()
  t.equal(store.writeBackLogStats().flushesLogged, 16, 'the last flush could not append')
  t.equal(warnings.filter((w) => w.includes('write-back log failed')).length, 1)
  await lastWriteSurvivesRestart(t, dir, oid, fill(0xe2, OBJECT_BYTES))
})

t.test('a disk too full for its log to grow: durable writes are synced in place, warned of once', { skip: SMALL_DISK_SKIP }, async (t) => {
  const { dir, warnings, open } = onSmallDisk(t)
  const store = await open()
  const oid = await created(t, store, 1)
  // committed through the log while there is room (the object then has records in it), until
  // less than a 64 KiB record's room is left in the log's first 1 MiB of zeros
  t.equal(await store.write({ oid, offset: 0, data: fill(0xc0) }), SD_RES_SUCCESS)
  for (let i = 0; i < 15; i++) t.equal(await store.write({ oid, offset: 0, data: fill(0xc1, OBJECT_BYTES) }), SD_RES_SUCCESS)
  t.equal(store.writeBackLogStats().writesCommitted, 16)
  // what is left of the disk is less than the log's next extension (1 MiB of zeros)
  fillAllBut(path.join(dir, 'filler'), 256 * 1024)
  for (let i = 0; i < 3; i++) t.equal(await store.write({ oid, offset: 0, data: fill(0xd0 + i, OBJECT_BYTES) }), SD_RES_SUCCESS, `write ${i + 1}`)
  t.same(await store.read(oid, 0, OBJECT_BYTES), fill(0xd2, OBJECT_BYTES))
  t.equal(store.writeBackLogStats().writesCommitted, 16, 'none of the three went through the log')
  t.equal(warnings.filter((w) => w.includes('write-back log failed')).length, 1, 'one warning for the three')
  await lastWriteSurvivesRestart(t, dir, oid, fill(0xd2, OBJECT_BYTES))
  // space again: the log takes the next one, once its retry delay is over
  fs.rmSync(path.join(dir, 'filler'))
  await new Promise((r) => setTimeout(r, WBLOG_EXTEND_RETRY_MS + 100))
  t.equal(await store.write({ oid, offset: 0, data: fill(0xdf) }), SD_RES_SUCCESS)
  t.equal(store.writeBackLogStats().writesCommitted, 17, 'committed through the log once it can grow')
})
