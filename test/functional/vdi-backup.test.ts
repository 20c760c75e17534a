// `dog vdi backup` and `dog vdi restore` on one real sheep, through the real dog: the stream
// between two snapshots holds exactly the changed sectors (format of cli-and-formats §4.15), and
// restoring it onto the base snapshot — on the same cluster, and on a freshly formatted one that
// only has the base — yields a snapshot byte-identical to the one backed up. A corrupted stream
// is refused before anything changes.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { dog, startSheep, stopSheep, tempDir, type SheepProcess } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const OBJECT_SIZE = 4 * MiB
const VDI_SIZE = 20 * MiB
const SECTOR = 512

/** Changes made between the two snapshots: offset → bytes. */
const CHANGES: Array<[offset: number, length: number]> = [
  [5 * MiB + 100, 1 * MiB], // inside object 1, not sector aligned
  [13 * MiB + 7, 3], // three bytes in object 3
  [2 * OBJECT_SIZE - 10, 20], // across objects 1 and 2
]

interface Record {
  idx: number
  offset: number
  length: number
  data: Buffer
}

function parseStream(stream: Buffer): { version: number; magic: number; records: Record[]; end: Buffer } {
  const records: Record[] = []
  let at = 8
  for (;;) {
    const idx = stream.readUInt32LE(at)
    if (idx === 0xffffffff) return { version: stream.readUInt32LE(0), magic: stream.readUInt32LE(4), records, end: stream.subarray(at) }
    const offset = stream.readUInt32LE(at + 4)
    const length = stream.readUInt32LE(at + 8)
    records.push({ idx, offset, length, data: stream.subarray(at + 16, at + 16 + length) })
    at += 16 + length
  }
}

t.test('vdi backup and restore', async (t) => {
  const root = tempDir('dog-vdi-backup-')
  const sheep: SheepProcess = await startSheep({ dir: path.join(root, 'sheep'), args: ['-c', `local:${path.join(root, 'shm')}`] })
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(root, { recursive: true, force: true })
  })
  const port = sheep.port
  const run = (args: string[], input?: Buffer | string) => dog(args, { port, input })

  /** A VDI `disk` holding `base` with snapshot `base`. */
  const makeBase = async (base: Buffer): Promise<void> => {
    t.equal((await run(['vdi', 'create', 'disk', String(VDI_SIZE)])).status, 0)
    t.equal((await run(['vdi', 'write', 'disk', '0', String(14 * MiB)], base.subarray(0, 14 * MiB))).status, 0)
    t.equal((await run(['vdi', 'snapshot', '-s', 'base', 'disk'])).status, 0)
  }

  t.equal((await run(['cluster', 'format', '-c', '1'])).status, 0)
  const base = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(14 * MiB).copy(base)
  await makeBase(base)
  const changed = Buffer.from(base)
  for (const [offset, length] of CHANGES) {
    const bytes = crypto.randomBytes(length)
    bytes.copy(changed, offset)
    t.equal((await run(['vdi', 'write', 'disk', String(offset), String(length)], bytes)).status, 0)
  }
  t.equal((await run(['vdi', 'snapshot', '-s', 'changed', 'disk'])).status, 0)

  const backup = await run(['vdi', 'backup', '-F', 'base', '-s', 'changed', 'disk'])
  t.equal(backup.status, 0, backup.stderr)
  t.equal(backup.stderr, '')
  const stream = backup.stdoutBytes

  await t.test('the stream holds the changed sectors only', async (t) => {
    const parsed = parseStream(stream)
    t.equal(parsed.version, 1)
    t.equal(parsed.magic, 0x11921192)
    t.same(parsed.end, Buffer.from([0xff, 0xff, 0xff, 0xff, ...Array(12).fill(0)]), 'a 16-byte terminator ends it')
    t.same(
      parsed.records.map((r) => r.idx),
      [1, 2, 3],
      'one record per changed object, in order',
    )
    for (const r of parsed.records) {
      const objectStart = r.idx * OBJECT_SIZE
      t.equal(r.offset % SECTOR, 0, `record ${r.idx} starts on a sector`)
      t.equal(r.length % SECTOR, 0, `record ${r.idx} is whole sectors`)
      t.ok(r.data.equals(changed.subarray(objectStart + r.offset, objectStart + r.offset + r.length)), `record ${r.idx} carries the new bytes`)
      const firstChanged = changed.compare(
        base,
        objectStart + r.offset,
        objectStart + r.offset + SECTOR,
        objectStart + r.offset,
        objectStart + r.offset + SECTOR,
      )
      t.not(firstChanged, 0, `record ${r.idx} begins with a changed sector`)
    }
    const object3 = parsed.records[2] as Record
    t.same([object3.offset, object3.length], [1 * MiB, SECTOR], 'three changed bytes make one sector')
  })

  await t.test('restore on the same cluster', async (t) => {
    t.equal((await run(['vdi', 'write', 'disk', '0', '1M'], crypto.randomBytes(MiB))).status, 0, 'the working VDI changes after the backup')
    const restored = await run(['vdi', 'restore', '-s', 'base', 'disk'], stream)
    t.equal(restored.status, 0, restored.stderr)
    t.equal(restored.stdout, '')
    const list = (await run(['vdi', 'list', '-r', 'disk'])).stdout
      .trim()
      .split('\n')
      .map((row) => row.split(' '))
    t.same(
      list.map((row) => [row[0], row[2], row[9]]),
      [
        ['s', '1', 'base'],
        ['s', '2', 'changed'],
        ['s', '3', ''],
        ['=', '0', ''],
      ],
      'the restored state is snapshot 3, a working VDI follows',
    )
    const snapshot3 = await run(['vdi', 'read', '-s', '3', 'disk'])
    t.ok(snapshot3.stdoutBytes.equals(changed), 'the restored snapshot is byte-identical to the one backed up')
    const working = await run(['vdi', 'read', 'disk'])
    t.ok(working.stdoutBytes.equals(changed), 'the working VDI resumes from its old parent (changed)')
  })

  await t.test('restore on another cluster that has the base only', async (t) => {
    t.equal((await run(['cluster', 'format', '-c', '1', '-f'])).status, 0)
    await makeBase(base)
    const restored = await run(['vdi', 'restore', '-s', 'base', 'disk'], stream)
    t.equal(restored.status, 0, restored.stderr)
    const snapshot2 = await run(['vdi', 'read', '-s', '2', 'disk'])
    t.ok(snapshot2.stdoutBytes.equals(changed), 'the restored snapshot is byte-identical to the one backed up')
    const baseAgain = await run(['vdi', 'read', '-s', 'base', 'disk'])
    t.ok(baseAgain.stdoutBytes.equals(base), 'the base snapshot is untouched')
    const working = await run(['vdi', 'read', 'disk'])
    t.ok(working.stdoutBytes.equals(base), 'the working VDI resumes from its old parent (base)')
    const check = await run(['vdi', 'check', 'disk'])
    t.equal(check.stdout, 'finish check&repair disk\n')
  })

  await t.test('refusals', async (t) => {
    const before = (await run(['vdi', 'list', '-r'])).stdout
    const corrupted = Buffer.from(stream)
    corrupted.writeUInt32LE(0xdeadbeef, 4)
    const bad = await run(['vdi', 'restore', '-s', 'base', 'disk'], corrupted)
    t.equal(bad.status, 2)
    t.equal(bad.stderr, 'The backup file is corrupted\n')
    t.equal((await run(['vdi', 'list', '-r'])).stdout, before, 'nothing changed')
    const noFrom = await run(['vdi', 'backup', '-s', 'base', 'disk'])
    t.equal(noFrom.status, 64)
    t.match(noFrom.stderr, /^Please specify snapshots with '-F' and '-s' options\n/)
    const noSnapshot = await run(['vdi', 'restore', 'disk'], stream)
    t.equal(noSnapshot.status, 64)
    t.match(noSnapshot.stderr, /^We can restore a backup file only to snapshots\nPlease specify the '-s' option\n/)
    const unknown = await run(['vdi', 'restore', '-s', 'nosuch', 'disk'], stream)
    t.equal(unknown.status, 1)
    t.equal(
      unknown.stderr,
      "Failed to open VDI disk (snapshot id: 0 snapshot tag: nosuch): Failed to find requested tag\nSnapshot ID 0 or tag nosuch doesn't exist\n",
    )
  })
})
