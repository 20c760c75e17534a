// Multi-disk (the original's md.c): `sheep DIR,DISK1,DISK2…` spreads objects over the disks;
// `dog node md info` prints each disk as the original's dog does; `dog node md plug` and
// `unplug` move objects between disks while a write goes on (nothing lost); a sheep restarted
// with fewer disks keeps what it still has and recovers the rest from the other replica.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, tempDir, waitFor } from '../../harness/sheep.js'
import { silentLogger } from '../../lib/log.js'
import { DiskSet } from '../../sheep/store/disks.js'

const MiB = 1024 * 1024
/**
 * 25 data objects and the inode: the disks' places on the ring follow their (random) paths, so
 * with 11 objects one of three disks got none in about one run in thirty; with 26, about one in
 * ten thousand.
 */
const VDI_MIB = 100
const OID_FILE = /^[0-9a-f]{16}$/

const objectsIn = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => OID_FILE.test(n)) : [])

t.test('objects over several disks: md info, plug and unplug under writes, restart with fewer disks', async (t) => {
  const root = tempDir('multi-disk-')
  const disk = (name: string) => path.join(root, name)
  const cluster = await startCluster(2, { root, disks: (i) => (i === 0 ? ['d0', 'd1', 'd2'].map(disk) : undefined) })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  t.equal((await dog(['cluster', 'format', '-c', '2'], { port: port(0) })).status, 0)
  t.equal((await dog(['vdi', 'create', 'v', `${VDI_MIB}M`], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(VDI_MIB * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')

  const onDisks = (names: string[]) => names.map((n) => objectsIn(disk(n)).length)
  const spread = onDisks(['d0', 'd1', 'd2'])
  t.equal(
    spread.reduce((a, b) => a + b, 0),
    VDI_MIB / 4 + 1,
    `every object on exactly one disk (${spread.join(', ')})`,
  )
  t.ok(
    spread.every((n) => n > 0),
    'every disk has some',
  )
  t.same(objectsIn(path.join(cluster.nodes[0]?.dir ?? '', 'obj')), [], 'none in DIR/obj')

  const info = await dog(['node', 'md', 'info'], { port: port(0) })
  t.equal(info.status, 0)
  const lines = info.stdout.trimEnd().split('\n')
  t.equal(lines[0], 'Id\tSize\tUsed\tAvail\tUse%\tPath', 'md info header')
  t.same(
    lines.slice(1).map((l) => l.split('\t')[5]),
    ['d0', 'd1', 'd2'].map(disk),
    'one row per disk, in path order',
  )
  for (const line of lines.slice(1))
    t.match(line, /^ ?\d+\t[\d.]+ [KMGTP]?B\t[\d.]+ [KMGTP]?B\t[\d.]+ [KMGTP]?B\t {0,2}\d+%\t\//, `row as the original prints it: ${JSON.stringify(line)}`)
  const raw = await dog(['node', 'md', 'info', '-r'], { port: port(0) })
  t.match(raw.stdout.split('\n')[0] ?? '', new RegExp(`^127\\.0\\.0\\.1:${port(0)} 0 \\d+ \\d+ \\d+ \\d+% ${disk('d0')}$`), 'raw rows carry the node')

  // plug a disk while a write goes on: the objects that now belong on it move there
  const more = crypto.randomBytes(16 * MiB)
  const writing = dog(['vdi', 'write', 'v', String(8 * MiB)], { port: port(0), input: more })
  const plug = await dog(['node', 'md', 'plug', '-f', disk('d3')], { port: port(0) })
  t.equal(plug.status, 0, 'md plug')
  t.equal((await writing).status, 0, 'the write during the plug succeeds')
  more.copy(data, 8 * MiB)
  // the ring of the disks plugged now (read from their user.md.size, as the sheep reads it)
  const ring = new DiskSet(silentLogger())
  for (const d of ['d0', 'd1', 'd2', 'd3']) ring.add(disk(d), { purge: false })
  const misplaced = () => ['d0', 'd1', 'd2', 'd3'].flatMap((d) => objectsIn(disk(d)).filter((name) => ring.diskFor(BigInt(`0x${name}`))?.path !== disk(d)))
  t.ok(await waitFor(() => misplaced().length === 0, 20_000), `every object moved to the disk the ring names (${objectsIn(disk('d3')).length} on the new one)`)
  t.equal(
    onDisks(['d0', 'd1', 'd2', 'd3']).reduce((a, b) => a + b, 0),
    VDI_MIB / 4 + 1,
    'still one copy of each object on the node',
  )

  // unplug one while another write goes on: its objects move to the disks left
  const again = crypto.randomBytes(16 * MiB)
  const writing2 = dog(['vdi', 'write', 'v', String(20 * MiB)], { port: port(0), input: again })
  const unplug = await dog(['node', 'md', 'unplug', '-f', disk('d1')], { port: port(0) })
  t.equal(unplug.status, 0, 'md unplug')
  t.equal((await writing2).status, 0, 'the write during the unplug succeeds')
  again.copy(data, 20 * MiB)
  t.ok(await waitFor(() => objectsIn(disk('d1')).length === 0, 20_000), 'no object left on the unplugged disk')
  t.equal(
    onDisks(['d0', 'd2', 'd3']).reduce((a, b) => a + b, 0),
    VDI_MIB / 4 + 1,
    'every object on the disks left',
  )
  const bad = await dog(['node', 'md', 'unplug', '-f', disk('nosuch')], { port: port(0) })
  t.equal(bad.status, 1, 'unplugging a disk that is not there fails')
  t.equal(bad.stderr, 'Failed to execute request, look for sheep.log for more information\n')

  await cluster.stop(1)
  const alone = await dog(['vdi', 'read', 'v'], { port: port(0) })
  t.ok(alone.status === 0 && alone.stdoutBytes.equals(data), 'node 0 alone reads every byte written before, during and after the moves')
  await cluster.start(1)
  t.ok(await waitForRecovery(cluster), 'node 1 back')

  // restart node 0 without d2: it keeps d0 and d3's objects and recovers the rest
  const kept = onDisks(['d0', 'd3']).reduce((a, b) => a + b, 0)
  await cluster.stop(0)
  await cluster.start(0, undefined, ['d0', 'd3'].map(disk))
  t.ok(await waitForRecovery(cluster), 'node 0 restarted with fewer disks; recovery settles')
  const now = onDisks(['d0', 'd3']).reduce((a, b) => a + b, 0)
  t.ok(kept < VDI_MIB / 4 + 1, `node 0 had lost some objects with the disk (${kept} kept)`)
  t.equal(now, VDI_MIB / 4 + 1, 'and has every object again')
  await cluster.stop(1)
  const back = await dog(['vdi', 'read', 'v'], { port: port(0) })
  t.ok(back.status === 0 && back.stdoutBytes.equals(data), 'node 0 alone reads every byte')
})

t.test('objects moved off an unplugged disk stay sparse', async (t) => {
  const root = tempDir('multi-disk-sparse-')
  const disk = (name: string) => path.join(root, name)
  const cluster = await startCluster(1, { root, disks: () => ['d0', 'd1'].map(disk) })
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '1'], { port })).status, 0)
  const objects = 8
  t.equal((await dog(['vdi', 'create', 's', `${objects * 4}M`], { port })).status, 0)
  const expected = Buffer.alloc(objects * 4 * MiB)
  for (let i = 0; i < objects; i++) {
    const piece = crypto.randomBytes(4096)
    piece.copy(expected, i * 4 * MiB)
    t.equal((await dog(['vdi', 'write', 's', String(i * 4 * MiB), '4096'], { port, input: piece })).status, 0)
  }
  const onD0 = objectsIn(disk('d0'))
  t.ok(onD0.length > 0, `d0 holds ${onD0.length} object(s)`)
  t.equal((await dog(['node', 'md', 'unplug', '-f', disk('d0')], { port })).status, 0, 'md unplug d0')
  t.ok(await waitFor(() => objectsIn(disk('d0')).length === 0, 20_000), 'every object left d0')
  for (const name of onD0) {
    const st = fs.statSync(path.join(disk('d1'), name))
    t.ok(st.blocks * 512 < 1 * MiB, `${name} moved and still sparse: ${st.blocks * 512} bytes allocated of ${st.size}`)
  }
  const r = await dog(['vdi', 'read', 's'], { port })
  t.ok(r.status === 0 && r.stdoutBytes.equals(expected), 'the data reads back')
})
