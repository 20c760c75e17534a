// Functional tests of dog's snapshot family on one real sheep formatted with -c 1, through the real
// dog: first the capture's command sequence (snapshot, list, tree, clone, setattr/getattr, object
// map, lock unlock, graph, deleting the snapshot) compared with what the original printed, then the
// data: a snapshot keeps its bytes while the working VDI changes, rollback restores them, clones
// are independent of their source and survive the deletion of the snapshot they share objects
// with, snapshot objects refuse writes; tree drawings, attributes, dump-inode, and locks.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { vidToDataOid } from '../../lib/oid.js'
import { SD_RES_READONLY } from '../../lib/proto.js'
import { createAndWriteObj, lockVdi, writeObj } from '../../lib/sheep-api.js'
import { findCommand, findCommands, loadFixture } from '../helpers/fixture.js'
import { dog, filterDates, startSheep, stopSheep, tempDir, type DogResult } from '../../harness/sheep.js'

const fixture = loadFixture()
const MiB = 1024 * 1024
const DATA_VDI_SIZE = 20 * MiB
const DATE = '[YYYY-MM-DD HH:MM]'

/** What the original printed for the first (or `nth`) capture of a command. */
function printedByOriginal(words: string[], nth = 0): string {
  const command = words.length === 0 ? undefined : findCommands(fixture, ...words).filter((c) => c.argv.length === words.length)[nth]
  if (command?.stdout === undefined) throw new Error(`no output captured for dog ${words.join(' ')}`)
  return command.stdout
}

/** The capture ran with 2 copies, these tests with 1: the copies column of list rows. */
function withOneCopy(listing: string): string {
  return listing.replace(/( [0-9a-f]{6}) {6}2 /g, '$1      1 ')
}

/** Dates and times in `vdi graph` labels replaced by markers. */
function filterGraphTimes(text: string): string {
  return text.replace(/Date: \d{4}-\d{2}-\d{2}/g, 'Date: YYYY-MM-DD').replace(/Time: {3}\d{2}:\d{2}:\d{2}/g, 'Time:   HH:MM:SS')
}

/** The 6 MiB the capture wrote: byte i = i mod 251. */
function capturePattern(length: number): Buffer {
  const data = Buffer.alloc(length)
  for (let i = 0; i < length; i++) data[i] = i % 251
  return data
}

t.test('dog vdi snapshot, clone, rollback, tree, graph, attributes, objects, locks', async (t) => {
  const root = tempDir('dog-vdi-snapshot-')
  const sheep = await startSheep({ dir: path.join(root, 'sheep'), args: ['-c', `local:${path.join(root, 'shm')}`] })
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(root, { recursive: true, force: true })
  })
  const port = sheep.port
  const conn = new SheepConnection({ host: '127.0.0.1', port })
  t.teardown(() => conn.close())
  const run = (...args: string[]): Promise<DogResult> => dog(args, { port })
  const ok = async (args: string[], input?: Buffer | string): Promise<DogResult> => {
    const r = await dog(args, { port, input })
    t.equal(r.status, 0, `dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  const readVdi = async (...args: string[]): Promise<Buffer> => (await ok(['vdi', 'read', ...args])).stdoutBytes

  await ok(['cluster', 'format', '-c', '1'])

  await t.test("the capture's sequence prints what the original printed", async (t) => {
    await ok(['vdi', 'create', 'alpha', '16M'])
    await ok(['vdi', 'write', 'alpha', '0', '6M'], capturePattern(6 * MiB))

    const snapshot = await ok(['vdi', 'snapshot', '-s', 'snap1', 'alpha'])
    t.equal(snapshot.stdout, printedByOriginal(['vdi', 'snapshot', '-s', 'snap1', 'alpha']))

    const listed = await ok(['vdi', 'list'])
    t.equal(filterDates(listed.stdout), withOneCopy(filterDates(printedByOriginal(['vdi', 'list'], 1))), 's row and working row')
    t.match(listed.stdout, /^s alpha {8}1 {3}16 MB {2}8\.0 MB {2}0\.0 MB .* ed202b {6}1 {9}snap1 {2}22\n {2}alpha {8}0 {3}16 MB {2}0\.0 MB {2}8\.0 MB/m)

    const tree = await ok(['vdi', 'tree'])
    t.equal(filterDates(tree.stdout), filterDates(printedByOriginal(['vdi', 'tree'])))
    t.equal(filterDates(tree.stdout), `alpha---${DATE}---(you are here)\n`)

    const clone = await ok(['vdi', 'clone', '-s', 'snap1', 'alpha', 'beta'])
    t.equal(clone.stdout, printedByOriginal(['vdi', 'clone', '-s', 'snap1', 'alpha', 'beta']))
    const withClone = await ok(['vdi', 'list', '-r', 'beta'])
    t.match(withClone.stdout, /^c beta 0 16777216 0 8388608 \d+ [0-9a-f]{6} 1 {2}22\n$/, 'a clone row: shares the snapshot objects')

    const set = await ok(['vdi', 'setattr', 'alpha', 'owner', 'alice'])
    t.equal(set.stdout, printedByOriginal(['vdi', 'setattr', 'alpha', 'owner', 'alice']))
    const got = await ok(['vdi', 'getattr', 'alpha', 'owner'])
    t.equal(got.stdout, printedByOriginal(['vdi', 'getattr', 'alpha', 'owner']))
    t.equal(got.stdout, 'alice', 'the value alone, no newline')

    const map = await ok(['vdi', 'object', 'map', 'alpha'])
    t.equal(map.stdout, printedByOriginal(['vdi', 'object', 'map', 'alpha']))

    const unlock = await run('vdi', 'lock', 'unlock', 'alpha')
    t.equal(unlock.status, findCommand(fixture, 'vdi', 'lock', 'unlock').exitCode)
    t.equal(unlock.stderr, printedByOriginal(['vdi', 'lock', 'unlock', 'alpha']), 'the capture has stdout and stderr together')

    await ok(['vdi', 'resize', 'alpha', '32M'])
    await ok(['vdi', 'delete', 'beta'])
    const locks = await ok(['vdi', 'lock', 'list'])
    t.equal(locks.stdout, printedByOriginal(['vdi', 'lock', 'list']))

    const graph = await ok(['vdi', 'graph'])
    t.equal(filterGraphTimes(graph.stdout), filterGraphTimes(printedByOriginal(['vdi', 'graph'])))

    await ok(['vdi', 'delete', '-s', 'snap1', 'alpha'])
    const raw = await ok(['vdi', 'list', '-r'])
    const rawOriginal = printedByOriginal(['vdi', 'list', '-r'], 1)
    t.equal(raw.stdout.replace(/ \d{10} /, ' TIME '), rawOriginal.replace(/ \d{10} /, ' TIME ').replace(' ed202c 2 ', ' ed202c 1 '))
    t.ok((await readVdi('alpha', '0', '6M')).equals(capturePattern(6 * MiB)), 'the working VDI keeps the data of the deleted snapshot')
  })

  const imageA = crypto.randomBytes(DATA_VDI_SIZE)
  const patchB = crypto.randomBytes(6 * MiB)
  const imageAB = Buffer.from(imageA)
  patchB.copy(imageAB, 2 * MiB)

  await t.test('a snapshot keeps its data while the working VDI changes', async (t) => {
    await ok(['vdi', 'create', 'data', String(DATA_VDI_SIZE)])
    await ok(['vdi', 'write', 'data'], imageA)
    const snapshot = await ok(['vdi', 'snapshot', '-s', 'one', '-v', 'data'])
    t.match(snapshot.stdout, /^new VID of original VDI: ([0-9a-f]+), VDI ID of newly created snapshot: ([0-9a-f]+)\n$/)
    await ok(['vdi', 'write', 'data', '2M', '6M'], patchB)
    t.ok((await readVdi('data', '-s', 'one')).equals(imageA), 'read -s TAG: the snapshot as it was')
    t.ok((await readVdi('data', '-s', '1')).equals(imageA), 'read -s ID: the same')
    t.ok((await readVdi('data')).equals(imageAB), 'the working VDI has the new data')
    t.ok((await readVdi('data', '-s', 'one', '2M', '6M')).equals(imageA.subarray(2 * MiB, 8 * MiB)), 'a range of the snapshot')
  })

  await t.test('the data objects of a snapshot refuse writes', async (t) => {
    const snapshotVid = parseInt((await ok(['vdi', 'list', '-r', 'data'])).stdout.split('\n')[0]?.split(' ')[7] ?? '', 16)
    await t.rejects(writeObj(conn, vidToDataOid(snapshotVid, 0), 0, Buffer.alloc(4096, 7)), { code: SD_RES_READONLY }, 'WRITE_OBJ')
    await t.rejects(createAndWriteObj(conn, vidToDataOid(snapshotVid, 4), 0, Buffer.alloc(4096, 7)), { code: SD_RES_READONLY }, 'CREATE_AND_WRITE_OBJ')
    t.ok((await readVdi('data', '-s', 'one')).equals(imageA), 'the snapshot is unchanged')
    const write = await run('vdi', 'write', '-s', 'one', 'data')
    t.equal(write.status, 64, 'vdi write has no -s')
  })

  await t.test('three snapshots in a row: one line in the tree', async (t) => {
    await ok(['vdi', 'snapshot', '-s', 'two', 'data'])
    const raw = await ok(['vdi', 'snapshot', '-v', '-r', 'data'])
    t.match(raw.stdout, /^[0-9a-f]+ [0-9a-f]+\n$/, 'raw -v: new working vid and snapshot vid')
    const tree = await ok(['vdi', 'tree'])
    t.equal(
      filterDates(tree.stdout)
        .split('\n')
        .find((line) => line.startsWith('data')),
      `data---${DATE}---${DATE}---${DATE}---(you are here)`,
    )
    const again = await run('vdi', 'snapshot', '-s', 'two', 'data')
    t.equal(again.status, 1)
    t.equal(again.stderr, 'Failed to create snapshot for data, maybe snapshot id (0) or tag (two) is existed\n')
    const numeric = await run('vdi', 'snapshot', '-s', '5', 'data')
    t.equal(numeric.status, 64)
    t.match(numeric.stderr, /^Please specify a non-integer value for a snapshot tag name\n/)
    const reduced = await dog(['vdi', 'snapshot', '-R', '-v', 'data'], { port })
    t.equal(reduced.status, 0)
    t.equal(reduced.stderr, "VDI data doesn't have its own objects, skipping creation of snapshot\n", '-R: nothing new to keep')
  })

  await t.test('rollback restores the snapshot', async (t) => {
    const declined = await dog(['vdi', 'rollback', '-s', 'one', 'data'], { port, input: 'no\n' })
    t.equal(declined.status, 0)
    t.equal(declined.stdout, 'This operation discards any changes made since the previous\nsnapshot was taken.  Continue? [yes/no]: ')
    t.ok((await readVdi('data')).equals(imageAB), 'declined: nothing changed')
    const rolled = await dog(['vdi', 'rollback', '-s', 'one', '-v', 'data'], { port, input: 'yes\n' })
    t.equal(rolled.status, 0, rolled.stderr)
    t.match(rolled.stdout, /Continue\? \[yes\/no\]: New VDI ID of rollbacked VDI: [0-9a-f]+\n$/)
    t.ok((await readVdi('data')).equals(imageA), 'the working VDI holds the snapshot data again')
    const tree = filterDates((await ok(['vdi', 'tree'])).stdout)
    t.match(tree, `data---${DATE}-+-${DATE}---${DATE}\n${' '.repeat(26)}\`-(you are here)\n`, 'the new working VDI branches from the snapshot')
    const missing = await run('vdi', 'rollback', 'data')
    t.equal(missing.status, 64)
    t.match(missing.stderr, /^Please specify the '-s' option\n/)
  })

  const patchC = crypto.randomBytes(5 * MiB)
  await t.test("a clone's writes do not reach its source", async (t) => {
    const clone = await ok(['vdi', 'clone', '-s', 'two', '-v', 'data', 'copy'])
    t.match(clone.stdout, /^VDI ID of newly created clone: [0-9a-f]+\n$/)
    t.ok((await readVdi('copy')).equals(imageAB), 'the clone starts as the snapshot')
    await ok(['vdi', 'write', 'copy', '1M', '5M'], patchC)
    const expected = Buffer.from(imageAB)
    patchC.copy(expected, MiB)
    t.ok((await readVdi('copy')).equals(expected), 'the clone has its write')
    t.ok((await readVdi('data', '-s', 'two')).equals(imageAB), 'the snapshot does not')
    t.ok((await readVdi('data')).equals(imageA), 'nor does the working VDI')
    const noSnapshot = await run('vdi', 'clone', 'data', 'other')
    t.equal(noSnapshot.status, 64)
    t.match(noSnapshot.stderr, /^Only snapshot VDIs can be cloned\nPlease specify the '-s' option\n/)
    const noDestination = await run('vdi', 'clone', '-s', 'two', 'data')
    t.equal(noDestination.status, 64)
    t.match(noDestination.stderr, /^Destination VDI name must be specified\n/)
    const taken = await run('vdi', 'clone', '-s', 'two', 'data', 'copy')
    t.equal(taken.status, 1)
    t.equal(taken.stderr, 'Failed to create VDI copy: VDI exists already\n')
  })

  await t.test('clone -n copies, clone -P preallocates', async (t) => {
    await ok(['vdi', 'clone', '-n', '-s', 'one', 'data', 'solo'])
    t.match((await ok(['vdi', 'list', '-r', 'solo'])).stdout, /^= solo 0 20971520 20971520 0 /, '-n: every object its own, no parent')
    t.ok((await readVdi('solo')).equals(imageA))
    await ok(['vdi', 'create', 'sparse', '16M'])
    await ok(['vdi', 'write', 'sparse', '0', '1M'], patchC.subarray(0, MiB))
    await ok(['vdi', 'snapshot', 'sparse'])
    await ok(['vdi', 'clone', '-P', '-s', '1', 'sparse', 'full'])
    t.match((await ok(['vdi', 'list', '-r', 'full'])).stdout, /^c full 0 16777216 16777216 0 /, '-P: all four objects allocated')
    const expected = Buffer.alloc(16 * MiB)
    patchC.copy(expected, 0, 0, MiB)
    t.ok((await readVdi('full')).equals(expected))
  })

  await t.test('deleting the snapshots a clone uses keeps the clone data', async (t) => {
    const expectedCopy = Buffer.from(imageAB)
    patchC.copy(expectedCopy, MiB)
    await ok(['vdi', 'delete', '-s', 'two', 'data'])
    await ok(['vdi', 'delete', '-s', 'one', 'data'])
    t.notMatch((await ok(['vdi', 'list', 'data'])).stdout, /\b(one|two)\b/, 'the snapshots are gone')
    t.ok((await readVdi('copy')).equals(expectedCopy), 'the clone of two keeps its data')
    t.ok((await readVdi('solo')).equals(imageA), 'the -n clone of one too')
    t.ok((await readVdi('data')).equals(imageA), 'and the working VDI rolled back to one')
  })

  await t.test('setattr / getattr', async (t) => {
    await ok(['vdi', 'setattr', 'data', 'color', 'blue'])
    t.equal((await ok(['vdi', 'getattr', 'data', 'color'])).stdout, 'blue')
    await ok(['vdi', 'setattr', 'data', 'color', 'green'])
    t.equal((await ok(['vdi', 'getattr', 'data', 'color'])).stdout, 'green', 'overwritten')
    const exclusive = await run('vdi', 'setattr', '-x', 'data', 'color', 'red')
    t.equal(exclusive.status, 3)
    t.equal(exclusive.stderr, "The attribute 'color' already exists\n")
    t.equal((await ok(['vdi', 'getattr', 'data', 'color'])).stdout, 'green', '-x left it alone')
    await ok(['vdi', 'setattr', '-x', 'data', 'shape', 'round'])
    t.equal((await ok(['vdi', 'getattr', 'data', 'shape'])).stdout, 'round', '-x creates a new key')
    await ok(['vdi', 'setattr', 'data', 'note'], 'from stdin\nline two')
    t.equal((await ok(['vdi', 'getattr', 'data', 'note'])).stdout, 'from stdin\nline two', 'value from stdin')
    await ok(['vdi', 'setattr', '-d', 'data', 'color'])
    const deleted = await run('vdi', 'getattr', 'data', 'color')
    t.equal(deleted.status, 5)
    t.equal(deleted.stderr, "Attribute 'color' not found\n")
    const deleteMissing = await run('vdi', 'setattr', '-d', 'data', 'nothing')
    t.equal(deleteMissing.status, 5)
    t.equal(deleteMissing.stderr, "Attribute 'nothing' not found\n")
    const noVdi = await run('vdi', 'getattr', 'ghost', 'color')
    t.equal(noVdi.status, 5)
    t.equal(noVdi.stderr, 'VDI not found\n')
    const noKey = await run('vdi', 'getattr', 'data')
    t.equal(noKey.status, 64)
    t.match(noKey.stderr, /^Please specify the attribute key\n/)
  })

  await t.test('rollback also restores a working VDI that was deleted', async (t) => {
    await ok(['vdi', 'delete', 'sparse'])
    t.equal((await run('vdi', 'read', 'sparse')).status, 1, 'no working VDI')
    await ok(['vdi', 'rollback', '-f', '-s', '1', 'sparse'])
    const expected = Buffer.alloc(16 * MiB)
    patchC.copy(expected, 0, 0, MiB)
    t.ok((await readVdi('sparse')).equals(expected))
  })

  await t.test('hyper volumes: no snapshots, objects found through the B-tree', async (t) => {
    const created = await ok(['vdi', 'create', '-y', '-v', '-r', 'hyper', '64M'])
    const vid = created.stdout.trim()
    await ok(['vdi', 'write', 'hyper', '8M', '1M'], patchC.subarray(0, MiB))
    const snapshot = await run('vdi', 'snapshot', 'hyper')
    t.equal(snapshot.status, 1)
    t.equal(snapshot.stderr, 'creating a snapshot of hypervolume is not supported\n')
    t.equal((await ok(['vdi', 'object', 'map', 'hyper'])).stdout, `Index       VID\n00000002 ${vid.padStart(8)}\n`)
    t.equal((await ok(['vdi', 'object', 'map', '-i', '2', 'hyper'])).stdout, `Index       VID\n00000002 ${vid.padStart(8)}\n`)
  })

  await t.test('object map and dump-inode', async (t) => {
    const listed = (await ok(['vdi', 'list', '-r', 'solo'])).stdout
    const vid = listed.split(' ')[7] as string
    const map = await ok(['vdi', 'object', 'map', 'solo'])
    t.equal(map.stdout, 'Index       VID\n' + [0, 1, 2, 3, 4].map((i) => `0000000${i} ${vid.padStart(8)}\n`).join(''))
    t.equal((await ok(['vdi', 'object', 'map', '-i', '7', 'solo'])).stdout, 'Index       VID\n00000007        0\n')
    const dumped = await ok(['vdi', 'object', 'dump-inode', path.join(sheep.dir, 'obj', `80${vid}00000000`)])
    const lines = dumped.stdout.split('\n')
    t.same(lines.slice(0, 2), ['name: solo', 'tag: '])
    t.ok(lines.includes(`vdi_id: ${vid}`) && lines.includes('parent_vdi_id: 0') && lines.includes('vdi_size: 20971520'))
    t.same(
      lines.slice(lines.indexOf('data_vdi_id:') + 1, lines.indexOf('gref:')),
      [0, 1, 2, 3, 4].map((i) => `${i}: ${vid}`),
    )
    t.same(lines.slice(lines.indexOf('gref:') + 1), [...[0, 1, 2, 3, 4].map((i) => `${i}: ${vid}, 0, 0`), ''])
    const short = path.join(root, 'short')
    fs.writeFileSync(short, Buffer.alloc(100))
    const bad = await run('vdi', 'object', 'dump-inode', short)
    t.equal(bad.status, 1)
    t.match(bad.stderr, /^failed to read inode object file: /)
  })
})

t.test('dog vdi lock list / unlock on a cluster formatted with -l', async (t) => {
  const root = tempDir('dog-vdi-lock-')
  const sheep = await startSheep({ dir: path.join(root, 'sheep'), args: ['-c', `local:${path.join(root, 'shm')}`] })
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(root, { recursive: true, force: true })
  })
  const port = sheep.port
  const conn = new SheepConnection({ host: '127.0.0.1', port })
  t.teardown(() => conn.close())
  for (const args of [
    ['cluster', 'format', '-l', '-c', '1'],
    ['vdi', 'create', 'alpha', '16M'],
    ['vdi', 'create', 'shared', '16M'],
  ]) {
    const r = await dog(args, { port })
    t.equal(r.status, 0, r.stderr)
  }
  const alpha = await lockVdi(conn, 'alpha')
  const shared = await lockVdi(conn, 'shared', { shared: true })
  const node = `IPv4 ip:127.0.0.1 port:${port}`
  const listed = await dog(['vdi', 'lock', 'list'], { port })
  t.equal(listed.status, 0, listed.stderr)
  const row = (name: string, vid: number): string => `  ${name.padEnd(8)}      0  ${vid.toString(16).padStart(6)}  ${''.padEnd(13)} `
  t.equal(
    listed.stdout,
    '  Name         Id  VDI id  Tag            Owner node(s)\n' +
      [
        [`${row('shared', shared.vid)} ${node}(modified)\n`, shared.vid],
        [`${row('alpha', alpha.vid)} ${node}\n`, alpha.vid],
      ]
        .sort((a, b) => (a[1] as number) - (b[1] as number))
        .map((entry) => entry[0])
        .join(''),
  )

  const unlocked = await dog(['vdi', 'lock', 'unlock', 'alpha'], { port })
  t.equal(unlocked.status, 0, unlocked.stderr)
  const again = await dog(['vdi', 'lock', 'unlock', 'alpha'], { port })
  t.equal(again.status, 1)
  t.equal(again.stderr, `VDI alpha (vid=${alpha.vid.toString(16)}) is not locked\n`)
  t.equal((await dog(['vdi', 'lock', 'unlock', 'shared'], { port })).status, 0)
  const after = await dog(['vdi', 'lock', 'list'], { port })
  t.equal(after.stdout, '  Name         Id  VDI id  Tag            Owner node(s)\n', 'nothing locked any more')
  const ghost = await dog(['vdi', 'lock', 'unlock', 'ghost'], { port })
  t.equal(ghost.status, 1)
  t.equal(ghost.stderr, 'Failed to find VDI ghost: No VDI found\n')
})
