// Joins that must be refused are refused (the original's cluster_join_check): a node of another
// cluster (formatted separately: another creation time), a data node whose vnode strategy is not
// the formatted cluster's (-V or not) and a node whose epoch is newer than the running cluster's
// exit 1 with "failed to join Sheepdog: …", and the running cluster is untouched — same epoch,
// same members. A node whose epoch is not newer joins and recovers; a gateway joins either kind.
import crypto from 'node:crypto'
import path from 'node:path'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { forceRecover, getNodeList, makeFs } from '../../lib/sheep-api.js'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, startSheep, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const ctimeNow = (shiftSec = 0) => BigInt(Math.floor(Date.now() / 1000) + shiftSec) << 32n

t.test('a node formatted in another cluster is refused; the cluster is untouched', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  const other = await startCluster(1)
  t.teardown(() => other.close())
  await makeFs(other.conn(0), { ctime: ctimeNow(-100), copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  await other.stop(0)
  const before = await getNodeList(cluster.conn(0))
  await t.rejects(
    startSheep({ dir: path.join(other.root, 'n0'), args: ['-c', `local:${cluster.eventFile}`, '-z', '7'] }),
    /failed to join Sheepdog: joining node ctime doesn't match/,
    'the foreign node exits 1 with the reason',
  )
  const after = await getNodeList(cluster.conn(0))
  t.equal(after.epoch, before.epoch, 'the epoch is unchanged')
  t.equal(after.nodes.length, 2, 'the members are unchanged')
})

t.test('a data node of the other vnode strategy is refused; the cluster is untouched', async (t) => {
  for (const { clusterArgs, joinerArgs, format, line } of [
    { clusterArgs: [], joinerArgs: ['-V', '64'], format: [], line: 'cluster:fixed, joined:auto' },
    { clusterArgs: ['-V', '64'], joinerArgs: [], format: ['-V'], line: 'cluster:auto, joined:fixed' },
  ]) {
    const cluster = await startCluster(1, { extraArgs: clusterArgs })
    t.teardown(() => cluster.close())
    const port = cluster.ports[0] as number
    t.equal((await dog(['cluster', 'format', '-c', '1', ...format], { port })).status, 0, `formatted ${format.length ? 'fixed' : 'auto'}`)
    // the original's line, whose labels name the joiner's strategy first
    await t.rejects(
      cluster.start(1, joinerArgs),
      new RegExp(`failed to join Sheepdog: failed to join for vnodes strategy unmatch\\.  ${line}`),
      `a joiner ${joinerArgs.length ? 'with' : 'without'} -V exits 1 with the original's line`,
    )
    const after = await getNodeList(cluster.conn(0))
    t.same([after.epoch, after.nodes.length], [1, 1], 'the cluster is untouched')
    await cluster.start(2, ['-g'])
    t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2), 'a gateway joins')
  }
})

t.test('a node with a newer epoch than the running cluster is refused; an older one joins and recovers', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const members = (via: number, n: number) => waitFor(async () => (await getNodeList(cluster.conn(via))).nodes.length === n, 20_000)
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(16 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data on all three nodes (epoch 1)')

  await cluster.stop(0, 'SIGKILL')
  t.ok(await members(1, 2), 'node 0 dies: epoch 2 [1, 2]')
  await cluster.stop(2, 'SIGKILL')
  t.ok(await members(1, 1), 'node 2 dies: epoch 3 [1]')
  await cluster.stop(1, 'SIGKILL')

  await cluster.start(0)
  const forced = await forceRecover(cluster.conn(0))
  t.equal(forced.epoch, 2, 'node 0 alone, forced to run: epoch 2 [0]')
  await t.rejects(cluster.start(1), /failed to join Sheepdog: joining node has a newer epoch than the running cluster: 3 vs 2/, 'node 1 (epoch 3) is refused')
  const after = await getNodeList(cluster.conn(0))
  t.same([after.epoch, after.nodes.length], [2, 1], 'the running cluster is untouched')

  await cluster.start(2)
  t.ok(await members(0, 2), 'node 2 (epoch 2) joins')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  for (const i of [0, 2]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }
})
