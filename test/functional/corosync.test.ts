// The corosync cluster driver against a real corosync (Debian's package, one instance on
// loopback with a configuration of its own): sheep -c corosync, and sheep without -c (the
// default driver), failing clearly without corosync; 3 nodes joining the CPG group, format, a
// VDI written and read; kill -9 of a node (seen to leave at once: CPG sees the process go),
// reads through the survivors and recovery;
// the node restarted and rejoining, recovery to exactly 3 replicas; `dog cluster shutdown`
// stopping every node, and the whole cluster started again gathering the last epoch's nodes;
// corosync killed: every sheep stops. And the ring address a sheep without -y advertises.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { SheepConnection } from '../../lib/client.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES, SD_RES_SUCCESS } from '../../lib/proto.js'
import { getNodeList, makeFs, newVdi, statClusterProbe } from '../../lib/sheep-api.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { SHEEP_BIN, dog, isAlive, programEnv, runProgram, startSheep, tempDir, waitFor } from '../../harness/sheep.js'
import { corosyncRingAddress } from '../../sheep/cluster/corosync-addr.js'
import { corosyncUnavailable, startCorosync } from '../helpers/corosync.js'

const MiB = 1024 * 1024
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n
/** The sheep of these tests: the corosync driver, on loopback. */
const DRIVER_ARGS = ['-c', 'corosync', '-b', '127.0.0.1', '-y', '127.0.0.1']
/** A killed sheep leaves the CPG group as soon as corosync sees its connection close. */
const LEAVE_TIMEOUT_MS = 10_000

async function memberCount(cluster: { conn(i: number): SheepConnection }, via: number): Promise<number> {
  try {
    return (await getNodeList(cluster.conn(via))).nodes.length
  } catch {
    return -1
  }
}

t.test('with a real corosync', { skip: corosyncUnavailable() }, async (t) => {
  // before this test's corosync starts
  await t.test('without a running corosync, sheep -c corosync fails and says why', async (t) => {
    await t.rejects(startSheep({ dir: tempDir('sheep-nocoro-'), args: DRIVER_ARGS }), /is corosync running\?/)
  })

  t.test('without -c a sheep uses corosync, the default, and without corosync fails and says why', async (t) => {
    // a network namespace of its own: no corosync of any other test is reachable from it
    const dir = tempDir('sheep-nocoro-')
    const r = await runProgram('unshare', ['-n', SHEEP_BIN, '-p', '7000', '-n', dir], { timeoutMs: 60_000, env: programEnv() })
    t.equal(r.status, 1)
    t.match(r.stderr, /failed to initialize cpg \(CS_ERR_LIBRARY\) - is corosync running\?/)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const corosync = await startCorosync()
  t.teardown(() => corosync.close())

  t.test("a sheep without -y advertises this host's ring address", async (t) => {
    // this corosync's node list has 127.0.0.1 only; the machine's own address would be another
    t.equal(corosyncRingAddress(), '127.0.0.1')
  })

  t.test('3 nodes: join, I/O, kill -9 and recovery, rejoin, cluster shutdown, restart', async (t) => {
    const cluster = await startCluster(3, { driverArgs: DRIVER_ARGS })
    // SHEEP_TEST_KEEP_LOGS keeps the nodes' directories (their sheep.log) for a post-mortem
    t.teardown(() => cluster.close({ keepFiles: !!process.env.SHEEP_TEST_KEEP_LOGS }))
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 3, 10_000), 'three members')
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    // the format is applied by every member in the same order, each at its own pace
    const agree = async () => {
      const lists = await Promise.all([0, 1, 2].map((i) => getNodeList(cluster.conn(i))))
      return lists.every((l) => l.epoch === lists[0]!.epoch && l.epoch > 0 && l.nodes.length === 3)
    }
    t.ok(await waitFor(agree, 10_000), 'every node sees the same 3 members and epoch')
    await newVdi(cluster.conn(1), { name: 'data', vdiSize: BigInt(32 * MiB) })
    const data = crypto.randomBytes(16 * MiB)
    await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 16 * MiB)).equals(data), 'written through node 0, read through node 2')
    const listed = await dog(['vdi', 'list', '-r'], { port: cluster.ports[1] })
    t.match(listed.stdout, /data/, 'dog vdi list through another node shows the VDI')

    const killedAt = Date.now()
    await cluster.stop(2, 'SIGKILL')
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 2, LEAVE_TIMEOUT_MS, 50), 'a killed node leaves')
    t.comment(`leave seen ${Date.now() - killedAt} ms after kill -9`)
    t.equal(await memberCount(cluster, 1), 2, 'the other survivor agrees')
    t.ok((await (await VdiHandle.open(cluster.conn(1), 'data')).read(0, 16 * MiB)).equals(data), 'all data reads back after losing a node')
    const update = crypto.randomBytes(2 * MiB)
    await (await VdiHandle.open(cluster.conn(1), 'data')).write(4 * MiB, update)
    data.set(update, 4 * MiB)

    await cluster.start(2)
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 3 && (await memberCount(cluster, 2)) === 3, 20_000), 'the restarted node joins again')
    t.ok(await waitForRecovery(cluster), 'recovery settles after the rejoin')
    const copies = objectCopies(cluster)
    t.same(
      [...copies].filter(([, n]) => n !== 3),
      [],
      `every object on exactly 3 nodes (${copies.size} objects)`,
    )
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 16 * MiB)).equals(data), 'the rejoined node serves the data written while it was away')

    const { epoch } = await getNodeList(cluster.conn(0))
    const shutdown = await dog(['cluster', 'shutdown'], { port: cluster.ports[0] })
    t.equal(shutdown.status, 0, 'dog cluster shutdown')
    const pids = cluster.nodes.map((n) => n!.pid)
    t.ok(await waitFor(() => pids.every((p) => !isAlive(p)), 20_000), 'every node stopped')
    for (const i of [0, 1, 2]) await cluster.stop(i)

    await cluster.start(1)
    t.not((await statClusterProbe(cluster.conn(1)))?.result, SD_RES_SUCCESS, 'a lone node of a 3-node epoch waits for the others')
    await cluster.start(0)
    await cluster.start(2)
    t.ok(
      await waitFor(async () => (await statClusterProbe(cluster.conn(2)))?.result === SD_RES_SUCCESS, 20_000),
      'the cluster runs once the nodes of the last epoch are back',
    )
    t.equal((await getNodeList(cluster.conn(0))).epoch, epoch, 'no new epoch: the same nodes came back')
    t.ok((await (await VdiHandle.open(cluster.conn(0), 'data')).read(0, 16 * MiB)).equals(data), 'data survived the restart')

    // corosync itself dies: every sheep stops (the original exits when its CPG connection breaks)
    const running = cluster.nodes.map((n) => n!.pid)
    await corosync.stop('SIGKILL')
    t.ok(await waitFor(() => running.every((p) => !isAlive(p)), 20_000), 'every sheep stops when corosync dies')
    t.match(fs.readFileSync(path.join(cluster.root, 'n0', 'sheep.log'), 'utf8'), /lost the connection to corosync/, 'and says why')
  })
})
