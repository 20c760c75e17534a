// Erasure-coded VDIs on real sheep (behaviour.md §14): a 4:2 VDI on 6 nodes is stored as one
// strip file `<oid>_<i>` of object_size/4 bytes per node and object (1.5 bytes on disk per byte
// written), its inode as full copies; everything reads back byte for byte, also with two nodes
// killed (before recovery: decoded from parity; after it: from the rebuilt strips) and after
// they come back; unaligned writes keep the bytes around them; snapshots and clones copy strip-wise
// on write, and roll back; 2:1 works on 3 nodes; a code with more data strips than nodes cannot
// be written, as in the original. `vdi object location` and `vdi track` find every strip, an
// incremental backup restores, a cluster snapshot saves and loads strip by strip, qemu-img and
// qemu-io read and write an EC VDI through the NBD server, and so does a sheepfs volume. Strips
// bigger than one request (128 MiB objects at 2:1) are written and rebuilt piece by piece.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { startCluster, waitForRecovery, type TestCluster } from '../../harness/cluster.js'
import { dog, freePort, runProgram, tempDir } from '../../harness/sheep.js'
import { mountSheepfs } from '../sheepfs/helpers.js'
import { erasureCoder } from '../../lib/ec/codec.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
const DATA_SIZE = 12 * MiB
const OBJECT_SIZE = 4 * MiB

/** Strip files of data object `idx` of `vid` on each node: node index → strip indexes. */
function stripsOf(cluster: TestCluster, vid: string, idx: number): Map<number, Array<{ index: number; size: number }>> {
  const oid = `00${vid}${idx.toString(16).padStart(8, '0')}`
  const found = new Map<number, Array<{ index: number; size: number }>>()
  cluster.nodes.forEach((node, i) => {
    if (!node) return
    const dir = path.join(node.dir, 'obj')
    for (const name of fs.readdirSync(dir)) {
      const m = new RegExp(`^${oid}_(\\d+)$`).exec(name)
      if (!m) continue
      const list = found.get(i) ?? []
      list.push({ index: Number(m[1]), size: fs.statSync(path.join(dir, name)).size })
      found.set(i, list)
    }
  })
  return found
}

async function readAll(port: number, name: string, extra: string[] = []): Promise<Buffer> {
  const r = await dog(['vdi', 'read', ...extra, name], { port })
  if (r.status !== 0) throw new Error(`vdi read ${name}: ${r.stderr}`)
  return r.stdoutBytes
}

/**
 * Data objects not stored as exactly six strips 0..5, one per node (4:2 on 6 nodes), and data
 * objects stored whole: empty when every data object of the cluster is striped as it should be.
 */
function badlyStriped(cluster: TestCluster): string[] {
  const strips = new Map<string, number[]>()
  const bad: string[] = []
  for (const node of cluster.nodes) {
    if (!node) continue
    const seen = new Set<string>()
    for (const name of fs.readdirSync(path.join(node.dir, 'obj'))) {
      const m = /^(00[0-9a-f]{14})(?:_(\d+))?$/.exec(name)
      if (!m?.[1]) continue
      if (m[2] === undefined) bad.push(`${m[1]} stored whole`)
      else if (seen.has(m[1])) bad.push(`${m[1]}: two strips on one node`)
      seen.add(m[1])
      strips.set(m[1], [...(strips.get(m[1]) ?? []), Number(m[2])])
    }
  }
  for (const [oid, list] of strips) if (list.sort().join() !== '0,1,2,3,4,5') bad.push(`${oid}: strips ${list.join()}`)
  return bad
}

async function createVdi(t: Test, port: number, name: string, copies: string, size = VDI_SIZE): Promise<string> {
  const r = await dog(['vdi', 'create', '-v', '-c', copies, name, String(size)], { port })
  t.equal(r.status, 0, r.stderr)
  return (/([0-9a-f]+)\s*$/.exec(r.stdout)?.[1] ?? '').padStart(6, '0')
}

t.test('4:2 on 6 nodes: strips, decoding around dead nodes, recovery', async (t) => {
  const cluster = await startCluster(6)
  t.teardown(() => cluster.close({ keepFiles: !t.passing() }))
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '4:2'], { port })).status, 0, 'formatted 4:2')
  const vid = await createVdi(t, port, 'ec', '4:2')
  const list = await dog(['vdi', 'list', 'ec'], { port })
  t.match(list.stdout, /\s4:2\s/, 'vdi list shows the policy in the Copies column')

  const image = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(DATA_SIZE).copy(image)
  t.equal((await dog(['vdi', 'write', 'ec', '0', String(DATA_SIZE)], { port, input: image.subarray(0, DATA_SIZE) })).status, 0, 'written')
  // an unaligned write in the middle of a stripe keeps the bytes around it
  const patch = crypto.randomBytes(3000)
  patch.copy(image, 1000)
  t.equal((await dog(['vdi', 'write', 'ec', '1000', '3000'], { port, input: patch })).status, 0, 'unaligned write')
  t.ok((await readAll(port, 'ec')).equals(image), 'reads back byte for byte')

  let onDisk = 0
  for (let idx = 0; idx < DATA_SIZE / OBJECT_SIZE; idx++) {
    const strips = stripsOf(cluster, vid, idx)
    t.equal(strips.size, 6, `object ${idx}: strips on all 6 nodes`)
    const all = [...strips.values()].flat()
    t.same(
      [...strips.values()].map((l) => l.length),
      [1, 1, 1, 1, 1, 1],
      'exactly one strip per node',
    )
    t.same(all.map((s) => s.index).sort(), [0, 1, 2, 3, 4, 5], 'strips 0..5')
    t.ok(
      all.every((s) => s.size === OBJECT_SIZE / 4),
      'each object_size / 4 bytes',
    )
    onDisk += all.reduce((n, s) => n + s.size, 0)
  }
  t.equal(onDisk / DATA_SIZE, 1.5, '1.5 bytes on disk per byte written')
  const location = await dog(['vdi', 'object', 'location', '-i', '1', 'ec'], { port })
  t.equal(location.stdout.split('\n').filter((l) => l.endsWith('has the object')).length, 6, 'vdi object location: every node has its strip')
  const inode = `80${vid}00000000`
  t.equal(cluster.nodes.filter((n) => n && fs.existsSync(path.join(n.dir, 'obj', inode))).length, 6, 'the inode is a full copy on every node')

  await cluster.stop(4, 'SIGKILL')
  await cluster.stop(5, 'SIGKILL')
  t.ok((await readAll(port, 'ec')).equals(image), 'two nodes killed: still byte for byte')
  t.ok(await waitForRecovery(cluster), 'recovered')
  t.ok((await readAll(port, 'ec')).equals(image), 'after recovery: byte for byte')
  for (let idx = 0; idx < DATA_SIZE / OBJECT_SIZE; idx++) {
    const strips = [...stripsOf(cluster, vid, idx).values()].flat()
    t.same(strips.map((s) => s.index).sort(), [0, 1, 2, 3], `object ${idx}: 4 strips on the 4 nodes left`)
  }
  await cluster.start(4)
  await cluster.start(5)
  t.ok(await waitForRecovery(cluster), 'recovered with all 6')
  for (let idx = 0; idx < DATA_SIZE / OBJECT_SIZE; idx++) {
    const strips = stripsOf(cluster, vid, idx)
    t.same(
      [...strips.values()]
        .flat()
        .map((s) => s.index)
        .sort(),
      [0, 1, 2, 3, 4, 5],
      `object ${idx}: 6 strips again`,
    )
    t.equal(strips.size, 6, 'one per node')
  }
  t.ok((await readAll(port, 'ec')).equals(image), 'byte for byte with all nodes back')
  const otherGateway = cluster.ports[5] as number
  t.ok((await readAll(otherGateway, 'ec')).equals(image), 'and through another gateway')

  await t.test('snapshot, copy-on-write, rollback', async (t) => {
    t.equal((await dog(['vdi', 'snapshot', '-s', 'before', 'ec'], { port })).status, 0, 'snapshot')
    const changed = Buffer.from(image)
    const fresh = crypto.randomBytes(MiB + 700)
    fresh.copy(changed, 3 * MiB + 300)
    t.equal((await dog(['vdi', 'write', 'ec', String(3 * MiB + 300), String(fresh.length)], { port, input: fresh })).status, 0, 'written after the snapshot')
    t.ok((await readAll(port, 'ec')).equals(changed), 'the VDI has the new bytes')
    t.ok((await readAll(port, 'ec', ['-s', 'before'])).equals(image), 'the snapshot the old ones')
    // a clone inherits the policy (the original's clone has no -c) and copies strip-wise on write
    t.equal((await dog(['vdi', 'clone', '-s', 'before', 'ec', 'ecclone'], { port })).status, 0, 'clone')
    t.match((await dog(['vdi', 'list', 'ecclone'], { port })).stdout, /\s4:2\s/, 'the clone is 4:2')
    const cloneImage = Buffer.from(image)
    const cloneBytes = crypto.randomBytes(5000)
    cloneBytes.copy(cloneImage, 9 * MiB - 2000)
    t.equal((await dog(['vdi', 'write', 'ecclone', String(9 * MiB - 2000), '5000'], { port, input: cloneBytes })).status, 0, 'written into the clone')
    t.ok((await readAll(port, 'ecclone')).equals(cloneImage), 'the clone reads its bytes')
    t.ok((await readAll(port, 'ec', ['-s', 'before'])).equals(image), 'its source snapshot keeps its own')
    const rb = await dog(['vdi', 'rollback', '-f', '-s', 'before', 'ec'], { port })
    t.equal(rb.status, 0, `rolled back ${rb.stderr}`)
    t.ok((await readAll(port, 'ec')).equals(image), 'the old bytes are back')
  })

  await t.test('vdi check rebuilds a missing strip and rewrites a wrong one', async (t) => {
    const healthy = await dog(['vdi', 'check', 'ec'], { port })
    t.same([healthy.status, healthy.stdout], [0, 'finish check&repair ec\n'], 'a healthy EC VDI: only the closing line')
    // after the rollback the working VDI shares the snapshot's objects, owned by the first vid
    const oid = `00${vid}00000001`
    const files = cluster.nodes.flatMap((n) =>
      n
        ? fs
            .readdirSync(path.join(n.dir, 'obj'))
            .filter((f) => f.startsWith(`${oid}_`))
            .map((f) => path.join(n.dir, 'obj', f))
        : [],
    )
    t.equal(files.length, 6, 'six strips of the object')
    const before = new Map(files.map((f) => [f, fs.readFileSync(f)]))
    // one wrong strip is found with two strips of redundancy; a wrong and a missing one would need three
    const [wrongFile, goneFile] = files as [string, string]
    const fd = fs.openSync(wrongFile, 'r+')
    fs.writeSync(fd, Buffer.from('garbage in a strip'), 0, 18, 4096)
    fs.closeSync(fd)
    const fixedWrong = await dog(['vdi', 'check', 'ec'], { port })
    t.equal(fixedWrong.status, 0, fixedWrong.stderr)
    t.match(fixedWrong.stdout, new RegExp(`fixed strip ${oid}, copy index \\d`), 'the wrong strip is rewritten')
    fs.rmSync(goneFile)
    const fixedMissing = await dog(['vdi', 'check', 'ec'], { port })
    t.equal(fixedMissing.status, 0, fixedMissing.stderr)
    t.match(fixedMissing.stdout, new RegExp(`fixed missing ${oid}, copy index \\d`), 'the missing strip is rebuilt')
    for (const [f, bytes] of before) t.ok(fs.existsSync(f) && fs.readFileSync(f).equals(bytes), `${path.basename(f)} has its bytes again`)
    t.ok((await readAll(port, 'ec')).equals(image), 'the VDI reads back byte for byte')
  })

  await t.test('vdi track, backup and restore, cluster snapshot save and load of an EC VDI', async (t) => {
    const track = await dog(['vdi', 'track', '-i', '1', 'ec'], { port })
    t.equal(track.status, 0, track.stderr)
    const newest = track.stdout.split('\nobj ')[1] ?? ''
    t.match(newest, /locations at epoch \d+, copies = 6\n/, 'vdi track: D+P copies')
    t.equal((newest.match(/127\.0\.0\.1:\d+/g) ?? []).length, 6, 'six holders at the newest epoch')
    // an incremental backup between two snapshots holds only what changed, and restores it
    t.equal((await dog(['vdi', 'snapshot', '-s', 'b1', 'ec'], { port })).status, 0, 'snapshot b1')
    const changed = Buffer.from(image)
    const fresh = crypto.randomBytes(2 * MiB)
    fresh.copy(changed, 5 * MiB)
    t.equal((await dog(['vdi', 'write', 'ec', String(5 * MiB), String(fresh.length)], { port, input: fresh })).status, 0, 'written')
    t.equal((await dog(['vdi', 'snapshot', '-s', 'b2', 'ec'], { port })).status, 0, 'snapshot b2')
    const backup = await dog(['vdi', 'backup', '-F', 'b1', '-s', 'b2', 'ec'], { port })
    t.equal(backup.status, 0, backup.stderr)
    t.ok(backup.stdoutBytes.length < 3 * MiB, 'the backup stream holds the changed bytes only')
    const later = crypto.randomBytes(MiB)
    t.equal((await dog(['vdi', 'write', 'ec', '0', String(later.length)], { port, input: later })).status, 0, 'the VDI moves on')
    const restored = await dog(['vdi', 'restore', '-s', 'b1', 'ec'], { port, input: backup.stdoutBytes })
    t.equal(restored.status, 0, restored.stderr)
    t.ok((await readAll(port, 'ec')).equals(changed), 'restored: the bytes of b2')
    t.same(badlyStriped(cluster), [], 'what the restore wrote is stored as strips too')

    const farm = tempDir('ec-farm-')
    t.teardown(() => fs.rmSync(farm, { recursive: true, force: true }))
    const saved = await dog(['cluster', 'snapshot', 'save', 'ec', farm], { port })
    t.equal(saved.status, 0, saved.stderr)
    const loaded = await dog(['cluster', 'snapshot', 'load', 'ec', farm], { port, input: 'yes\n' })
    t.equal(loaded.status, 0, loaded.stderr)
    t.ok((await readAll(port, 'ec')).equals(changed), 'cluster snapshot load: the EC VDI reads back')
    t.ok((await readAll(port, 'ec', ['-s', 'b1'])).equals(image), 'and its snapshot')
    const list = await dog(['vdi', 'list', 'ec'], { port })
    t.match(list.stdout, /\s4:2\s/, 'still 4:2')
    t.same(badlyStriped(cluster), [], 'loaded as strips, one per node')
  })
})

t.test('2:1 on 3 nodes, also through NBD; 16:1 cannot be written on 3', async (t) => {
  const nbdPort = await freePort()
  const work = tempDir('ec-nbd-')
  const cluster = await startCluster(3, { start: 0 })
  t.teardown(async () => {
    await cluster.close({ keepFiles: !t.passing() })
    fs.rmSync(work, { recursive: true, force: true })
  })
  await cluster.start(0, ['-N', `127.0.0.1:${nbdPort}`])
  await cluster.start(1)
  await cluster.start(2)
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '2:1'], { port })).status, 0, 'formatted 2:1')
  const vid = await createVdi(t, port, 'small', '2:1', 8 * MiB)
  const image = crypto.randomBytes(8 * MiB)
  t.equal((await dog(['vdi', 'write', 'small'], { port, input: image })).status, 0, 'written')
  const strips = [...stripsOf(cluster, vid, 1).values()].flat()
  t.same(strips.map((s) => s.index).sort(), [0, 1, 2], 'three strips')
  t.ok(
    strips.every((s) => s.size === OBJECT_SIZE / 2),
    'of object_size / 2',
  )
  const viaNbd = path.join(work, 'small.raw')
  const converted = await runProgram('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${nbdPort}/small`, viaNbd], { timeoutMs: 60_000 })
  t.equal(converted.status, 0, converted.stderr)
  t.ok(fs.readFileSync(viaNbd).equals(image), 'read through the NBD server: byte for byte')
  const nbdWrite = await runProgram('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 5000 70000', `nbd://127.0.0.1:${nbdPort}/small`], { timeoutMs: 60_000 })
  t.equal(nbdWrite.status, 0, nbdWrite.stderr)
  image.fill(0x5a, 5000, 75000)
  t.ok((await readAll(port, 'small')).equals(image), 'written through the NBD server: dog reads the new bytes')

  // a sheepfs volume of the EC VDI: reads the same bytes; an unaligned write lands strip-wise
  const mount = await mountSheepfs(t, port)
  fs.writeFileSync(path.join(mount.mountpoint, 'vdi/mount'), 'small\n')
  const volume = path.join(mount.mountpoint, 'volume/small')
  t.ok(fs.readFileSync(volume).equals(image), 'read through a sheepfs volume: byte for byte')
  const patch = crypto.randomBytes(10_000)
  const fd = fs.openSync(volume, 'r+')
  fs.writeSync(fd, patch, 0, patch.length, 3 * MiB + 77)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  patch.copy(image, 3 * MiB + 77)
  t.ok((await readAll(port, 'small')).equals(image), 'written through the volume: dog reads the new bytes')

  await cluster.stop(1, 'SIGKILL')
  t.ok((await readAll(port, 'small')).equals(image), 'one node killed: byte for byte')
  t.ok(fs.readFileSync(volume).equals(image), 'and through the volume')

  await createVdi(t, port, 'wide', '16:1', 8 * MiB)
  const w = await dog(['vdi', 'write', 'wide', '0', '512'], { port, input: Buffer.alloc(512, 1) })
  t.equal(w.status, 1, 'more data strips than nodes: the write fails')
  t.match(w.stderr, /Failed to write object [0-9a-f]{16}: System error/)
})

t.test('2:1 with 128 MiB objects: 64 MiB strips written, rebuilt piece by piece after a node loss', async (t) => {
  const cluster = await startCluster(4)
  t.teardown(() => cluster.close({ keepFiles: !t.passing() }))
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '2:1'], { port })).status, 0, 'formatted 2:1')
  const created = await dog(['vdi', 'create', '-v', '-z', '27', 'big', '256M'], { port })
  t.equal(created.status, 0, created.stderr)
  const vid = (/([0-9a-f]+)\s*$/.exec(created.stdout)?.[1] ?? '').padStart(6, '0')
  const image = crypto.randomBytes(128 * MiB)
  t.equal((await dog(['vdi', 'write', 'big', '0', String(image.length)], { port, input: image })).status, 0, 'one whole 128 MiB object written')
  const expected = erasureCoder({ d: 2, p: 1 }).encode(image)
  /** Node index → [strip index, whether its bytes are what the encoder makes]. */
  const strips = () => {
    const found: Array<[number, number, boolean]> = []
    for (const [node, list] of stripsOf(cluster, vid, 0)) {
      for (const { index } of list) {
        const file = path.join(cluster.nodes[node]?.dir ?? '', 'obj', `00${vid}00000000_${index}`)
        found.push([node, index, fs.readFileSync(file).equals(expected[index] as Uint8Array)])
      }
    }
    return found
  }
  const before = strips()
  t.same(
    before.map(([, i, ok]) => [i, ok]).sort(),
    [
      [0, true],
      [1, true],
      [2, true],
    ],
    'three strips of 64 MiB, as encoded',
  )
  // kill a holder other than the gateway: its strip is rebuilt on the node that takes its place
  const victim = before.map(([n]) => n).find((n) => n !== 0) as number
  await cluster.stop(victim, 'SIGKILL')
  t.ok(await waitForRecovery(cluster), 'recovered')
  const after = strips()
  t.same(
    after.map(([, i, ok]) => [i, ok]).sort(),
    [
      [0, true],
      [1, true],
      [2, true],
    ],
    'all three strips again, byte for byte as encoded',
  )
  t.notOk(
    after.some(([n]) => n === victim),
    'none on the dead node',
  )
  const read = await dog(['vdi', 'read', 'big', '0', String(image.length)], { port })
  t.ok(read.stdoutBytes.equals(image), 'reads back byte for byte')
})
