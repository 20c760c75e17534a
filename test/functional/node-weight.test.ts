// Node weights changed while running (behaviour.md §3.3, §17) on a real local cluster:
// `dog node vnodes set` on a fixed-vnode cluster, and `dog cluster reweight` after the free
// space changed. Every member applies the new weight in the same order — epoch + 1, the same
// ring everywhere (also on a node that joins later), recovery to the new placement — and no
// data is lost. A restarted node must be given the count of its latest epoch (-V).
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { getNodeList, makeFs, newVdi } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { type TestCluster, objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, tempDir, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n

/** `dog node list -r` as seen by node `i`: "ADDR:PORT VNODES" per member. */
async function ringView(cluster: TestCluster, i: number): Promise<string[]> {
  const list = await dog(['node', 'list', '-r'], { port: cluster.ports[i] })
  return list.stdout
    .trim()
    .split('\n')
    .map((line) => line.split(' ').slice(1, 3).join(' '))
}

/** Node `i`'s capacity as `dog node info -r` reports it (bytes). */
async function capacities(cluster: TestCluster): Promise<number[]> {
  const info = await dog(['node', 'info', '-r'], { port: cluster.ports[0] })
  return info.stdout
    .trim()
    .split('\n')
    .filter((line) => /^\d+ /.test(line))
    .map((line) => Number(line.split(' ')[1]))
}

async function epochOf(cluster: TestCluster, i: number): Promise<number> {
  return (await getNodeList(cluster.conn(i))).epoch
}

t.test('dog node vnodes set: every member, and a later joiner, uses the new count', async (t) => {
  const cluster = await startCluster(3, { extraArgs: ['-V', '64'] })
  t.teardown(() => cluster.close())
  const format = await dog(['cluster', 'format', '-c', '2', '-V'], { port: cluster.ports[0] })
  t.equal(format.status, 0, format.stderr)
  await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(64 * MiB) })
  const data = crypto.randomBytes(40 * MiB)
  await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)

  const set = await dog(['node', 'vnodes', 'set', '100'], { port: cluster.ports[1] })
  t.equal(set.status, 0, set.stderr)
  const changed = `127.0.0.1:${cluster.ports[1]} 100`
  t.ok(
    await waitFor(async () => {
      for (let i = 0; i < 3; i++) if (!(await ringView(cluster, i)).includes(changed)) return false
      return true
    }, 10_000),
    'every member sees 100 vnodes on node 1',
  )
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.same(await Promise.all([0, 1, 2].map((i) => epochOf(cluster, i))), [2, 2, 2], 'one new epoch everywhere')
  t.ok(
    [...objectCopies(cluster).values()].every((n) => n === 2),
    'every object has its 2 copies',
  )
  t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, data.length)).equals(data), 'the data reads back')

  await cluster.start(3, ['-V', '64'])
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(3))).nodes.length === 4, 10_000), 'a fourth node joins')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  const views = await Promise.all([0, 1, 2, 3].map((i) => ringView(cluster, i)))
  t.ok(
    views.every((v) => JSON.stringify(v) === JSON.stringify(views[0])),
    'all four members have the same ring',
  )
  t.ok(views[3]!.includes(changed), "the joiner took node 1's announced count")
  t.ok(
    [...objectCopies(cluster).values()].every((n) => n === 2),
    'every object has its 2 copies',
  )

  await cluster.stop(1)
  await t.rejects(
    cluster.start(1, ['-V', '64']),
    /mismatch specified vnodes is compared with the previous\. previous vnodes:100/,
    'node 1 restarts only with the count of its latest epoch',
  )
  await cluster.start(1, ['-V', '100'])
  t.ok(
    await waitFor(async () => {
      for (const i of [0, 2, 3]) if (!(await ringView(cluster, i)).includes(changed)) return false
      return true
    }, 15_000),
    'after a restart with -V 100 node 1 has 100 vnodes again',
  )
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.ok((await (await VdiHandle.open(cluster.conn(3), 'data')).read(0, data.length)).equals(data), 'the data reads back')
})

t.test('dog node vnodes set is refused on an auto-vnode cluster', async (t) => {
  const cluster = await startCluster(1)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  const set = await dog(['node', 'vnodes', 'set', '10'], { port: cluster.ports[0] })
  t.not(set.status, 0)
  t.match(set.stderr, /Failed to execute request/)
  t.equal(await epochOf(cluster, 0), 1, 'no new epoch')
})

t.test('dog cluster reweight announces capacities that changed', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
  const data = crypto.randomBytes(12 * MiB)
  await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
  const before = await capacities(cluster)
  t.equal(before.length, 3)

  // the nodes share one file system: take 3 % of its free space away from all of them
  const fillerDir = tempDir('sheep-reweight-')
  t.teardown(() => fs.rmSync(fillerDir, { recursive: true, force: true }))
  const filler = path.join(fillerDir, 'filler')
  const st = fs.statfsSync(fillerDir)
  const fillBytes = Math.floor(st.bavail * st.bsize * 0.03)
  const fa = spawnSync('fallocate', ['-l', String(fillBytes), filler], { encoding: 'utf8' })
  t.equal(fa.status, 0, fa.stderr)

  const epoch = await epochOf(cluster, 0)
  const reweight = await dog(['cluster', 'reweight'], { port: cluster.ports[0] })
  t.equal(reweight.status, 0, reweight.stderr)
  t.ok(await waitFor(async () => (await capacities(cluster)).every((c, i) => c < before[i]! * 0.985), 15_000), 'every node reports less capacity')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  const epochs = await Promise.all([0, 1, 2].map((i) => epochOf(cluster, i)))
  t.ok(
    epochs.every((e) => e === epochs[0] && e >= epoch + 3),
    `a new epoch per announcement, the same everywhere (${epochs.join(' ')})`,
  )

  fs.rmSync(filler)
  const again = await dog(['cluster', 'reweight'], { port: cluster.ports[1] })
  t.equal(again.status, 0, again.stderr)
  t.ok(await waitFor(async () => (await capacities(cluster)).every((c, i) => c > before[i]! * 0.985), 15_000), 'the capacity is back')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.ok(
    [...objectCopies(cluster).values()].every((n) => n === 3),
    'every object has its 3 copies',
  )
  t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, data.length)).equals(data), 'the data reads back')
})
