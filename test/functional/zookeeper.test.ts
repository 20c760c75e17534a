// The zookeeper cluster driver against a real ZooKeeper (Debian's package) on loopback: option
// syntax; 3 nodes with copies=3 losing a node to kill -9 (seen to leave after the session
// timeout), its restart, a 4th node and recovery to exactly 3 byte-identical replicas; a node
// whose session expires (SIGSTOP) leaving and rejoining as a new member, and one restarted
// before its old session expired; a whole-cluster restart; old events deleted from ZooKeeper
// and a joiner starting from the snapshot; every session expiring at once; a ZooKeeper outage
// that refuses cluster operations with CLUSTER_ERROR while data I/O goes on, and resumes.
import crypto from 'node:crypto'
import t from 'tap'
import { SdError } from '../../lib/errors.js'
import { getNodeList, makeFs, newVdi, statClusterProbe } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES, SD_RES_CLUSTER_ERROR, SD_RES_SUCCESS } from '../../lib/proto.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { ZK_SNAPSHOT_EVERY_EVENTS, parseZookeeperOption } from '../../sheep/cluster/zookeeper.js'
import { parseSheepArgs } from '../../sheep/options.js'
import { objectCopies, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'
import { TEST_SESSION_TIMEOUT_MS, startZkCluster, startZookeeper, zkChildren, zookeeperAvailable } from '../helpers/zookeeper.js'

const MiB = 1024 * 1024
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n
/** A killed node is seen to leave within the session timeout plus this (expiry tick, watch, event). */
const LEAVE_MARGIN_MS = 7_000
/** How long after one survivor saw a member leave the other may take to see it too. */
const SURVIVOR_AGREES_MS = 5_000
/** Session timeout of the outage test (ZooKeeper restarts sessions with it when it returns). */
const OUTAGE_SESSION_TIMEOUT_MS = 6_000

async function memberCount(cluster: { conn(i: number): import('../../lib/client.js').SheepConnection }, via: number): Promise<number> {
  try {
    return (await getNodeList(cluster.conn(via))).nodes.length
  } catch {
    return -1
  }
}

t.test('-c zookeeper option syntax', async (t) => {
  t.same(parseZookeeperOption('10.0.0.1:2181,10.0.0.2:2181/prod,timeout=10000'), {
    servers: ['10.0.0.1:2181', '10.0.0.2:2181'],
    clusterId: '/prod',
    sessionTimeoutMs: 10000,
  })
  t.same(parseZookeeperOption('zk1'), { servers: ['zk1:2181'], clusterId: '/sheepdog', sessionTimeoutMs: 30000 })
  t.same(parseZookeeperOption('127.0.0.1:2181,timeout=3000'), { servers: ['127.0.0.1:2181'], clusterId: '/sheepdog', sessionTimeoutMs: 3000 })
  t.same(parseZookeeperOption('h:1/a/b'), { servers: ['h:1'], clusterId: '/a/b', sessionTimeoutMs: 30000 })
  for (const bad of ['', 'h:0', 'h:99999', 'h:1,timeout=5', 'h:1,timeout=x', 'h:1/', 'h:1//x', 'h:1/a/../b', '[::1]:2181', 'h:1/a,h:2/b', ',timeout=3000']) {
    t.type(parseZookeeperOption(bad), 'string', `'${bad}' is refused`)
  }
  const ok = parseSheepArgs(['-c', 'zookeeper:127.0.0.1:2181/x,timeout=3000', '/tmp/x'])
  t.equal(ok.kind === 'run' && ok.options.cluster.name, 'zookeeper', 'sheep takes -c zookeeper:...')
  const bad = parseSheepArgs(['-c', 'zookeeper:host:0', '/tmp/x'])
  t.match(bad, { kind: 'exit', code: 1, stderr: /Invalid zookeeper server port/ }, 'a bad zookeeper option exits 1 with the reason')
})

t.test('with a real ZooKeeper', { skip: zookeeperAvailable() ? false : 'Debian zookeeper package not installed' }, async (t) => {
  const zk = await startZookeeper()
  t.teardown(() => zk.close())

  t.test('3 nodes, copies=3: kill -9, restart, a 4th node, recovery to exactly 3 replicas', async (t) => {
    const cluster = await startZkCluster(zk, 3)
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    t.equal(await memberCount(cluster, 1), 3, 'three members')
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(64 * MiB) })
    const data = crypto.randomBytes(48 * MiB)
    const writer = await VdiHandle.open(cluster.conn(0), 'data')
    await writer.write(0, data)
    let copies = objectCopies(cluster)
    t.ok(copies.size > 0 && [...copies.values()].every((n) => n === 3), `every object on 3 nodes after the write (${copies.size} objects)`)

    const killedAt = Date.now()
    await cluster.stop(2, 'SIGKILL')
    t.ok(
      await waitFor(async () => (await memberCount(cluster, 0)) === 2, TEST_SESSION_TIMEOUT_MS + LEAVE_MARGIN_MS, 100),
      'a killed node is seen to leave after the session timeout',
    )
    t.comment(`leave seen ${Date.now() - killedAt} ms after kill -9 (session timeout ${TEST_SESSION_TIMEOUT_MS} ms)`)
    // each member learns it from its own ZooKeeper watch: the other may be a moment behind
    t.ok(await waitFor(async () => (await memberCount(cluster, 1)) === 2, SURVIVOR_AGREES_MS, 100), 'the other survivor agrees')
    const viaNode1 = await VdiHandle.open(cluster.conn(1), 'data')
    t.ok((await viaNode1.read(0, 48 * MiB)).equals(data), 'all data reads back after losing a node')

    await cluster.start(2)
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 3, 20_000), 'the restarted node joins again')
    t.ok(await waitForRecovery(cluster), 'recovery settles after the restart')
    await cluster.start(3)
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 4, 20_000), 'a 4th node joins')
    t.ok(await waitForRecovery(cluster), 'recovery settles after the 4th node joined')
    copies = objectCopies(cluster)
    t.same(
      [...copies].filter(([, n]) => n !== 3),
      [],
      `every object is on disk on exactly 3 nodes (${copies.size} objects)`,
    )
    const lists = await Promise.all([0, 1, 2, 3].map((i) => getNodeList(cluster.conn(i))))
    t.ok(
      lists.every((l) => l.epoch === lists[0]!.epoch && l.nodes.length === 4),
      `all 4 members agree on epoch ${lists[0]!.epoch}`,
    )
    for (let i = 0; i < 4; i++) {
      const h = await VdiHandle.open(cluster.conn(i), 'data')
      t.ok((await h.read(0, 48 * MiB)).equals(data), `data identical through node ${i}`)
    }
  })

  t.test('a node whose session expires leaves, then rejoins as a new member', async (t) => {
    const cluster = await startZkCluster(zk, 3)
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
    const data = crypto.randomBytes(8 * MiB)
    await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
    const { epoch } = await getNodeList(cluster.conn(0))

    const frozen = cluster.nodes[2]!
    process.kill(frozen.pid, 'SIGSTOP')
    t.ok(
      await waitFor(async () => (await memberCount(cluster, 0)) === 2, TEST_SESSION_TIMEOUT_MS + LEAVE_MARGIN_MS, 100),
      'a node without a live session is seen to leave',
    )
    const update = crypto.randomBytes(4 * MiB)
    await (await VdiHandle.open(cluster.conn(1), 'data')).write(2 * MiB, update)
    data.set(update, 2 * MiB)
    process.kill(frozen.pid, 'SIGCONT')
    t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 3 && (await memberCount(cluster, 2)) === 3, 30_000), 'the node comes back and rejoins')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    const after = await getNodeList(cluster.conn(2))
    t.ok(after.epoch >= epoch + 2, `the leave and the rejoin each made an epoch (${epoch} → ${after.epoch})`)
    const copies = objectCopies(cluster)
    t.same(
      [...copies].filter(([, n]) => n !== 3),
      [],
      'every object on 3 nodes',
    )
    const h = await VdiHandle.open(cluster.conn(2), 'data')
    t.ok((await h.read(0, 8 * MiB)).equals(data), 'the rejoined node serves the data written while it was away')

    // restarted before its old session expired: the join is answered once the old one is gone
    await cluster.stop(1, 'SIGKILL')
    const restartAt = Date.now()
    await cluster.start(1)
    t.comment(`restart before expiry: joined ${Date.now() - restartAt} ms after the kill`)
    t.ok(
      await waitFor(
        async () => {
          const lists = await Promise.all([0, 1, 2].map((i) => getNodeList(cluster.conn(i)).catch(() => undefined)))
          return lists.every((l) => l !== undefined && l.nodes.length === 3 && l.epoch === lists[0]!.epoch)
        },
        20_000,
        200,
      ),
      'all three agree on the members after a quick restart',
    )
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.ok((await (await VdiHandle.open(cluster.conn(1), 'data')).read(0, 8 * MiB)).equals(data), 'data identical through the restarted node')
  })

  t.test('whole-cluster restart: the nodes of the last epoch gather, then the cluster runs', async (t) => {
    const cluster = await startZkCluster(zk, 3)
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
    const data = crypto.randomBytes(8 * MiB)
    await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
    for (const i of [0, 1, 2]) await cluster.stop(i)
    await cluster.start(1)
    t.not((await statClusterProbe(cluster.conn(1)))?.result, SD_RES_SUCCESS, 'a lone node of a 3-node epoch waits for the others')
    await cluster.start(0)
    await cluster.start(2)
    t.ok(
      await waitFor(async () => (await statClusterProbe(cluster.conn(2)))?.result === SD_RES_SUCCESS, 10_000),
      'the cluster runs once the nodes of the last epoch are back',
    )
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 8 * MiB)).equals(data), 'data survived the restart')
  })

  t.test('old events are deleted from ZooKeeper; a later joiner starts from the snapshot', async (t) => {
    const cluster = await startZkCluster(zk, 2, { start: 2 })
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
    const data = crypto.randomBytes(4 * MiB)
    await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
    // each open is an exclusive op: two events (block, unblock)
    const opens = 2 * ZK_SNAPSHOT_EVERY_EVENTS
    const started = Date.now()
    for (let i = 0; i < opens; i++) await VdiHandle.open(cluster.conn(i % 2), 'data')
    t.comment(`${opens} exclusive ops in ${Date.now() - started} ms`)
    const queue = `${cluster.clusterId}/queue`
    t.ok(
      await waitFor(async () => (await zkChildren(zk, queue)).length < ZK_SNAPSHOT_EVERY_EVENTS + 64, 15_000, 250),
      `the queue is trimmed to fewer than ${ZK_SNAPSHOT_EVERY_EVENTS + 64} events after ${2 * opens} (${(await zkChildren(zk, queue)).length} left)`,
    )
    await cluster.start(2)
    t.ok(
      await waitFor(
        async () => {
          const lists = await Promise.all([0, 1, 2].map((i) => getNodeList(cluster.conn(i)).catch(() => undefined)))
          return lists.every((l) => l !== undefined && l.nodes.length === 3 && l.epoch === lists[0]!.epoch)
        },
        20_000,
        200,
      ),
      'a node joining after the compaction agrees with the others',
    )
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 4 * MiB)).equals(data), 'cluster ops and data work through the new node')
  })

  t.test('every session expires at once: the nodes of the last epoch gather again, same epoch, same data', async (t) => {
    const cluster = await startZkCluster(zk, 3)
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
    const data = crypto.randomBytes(8 * MiB)
    await (await VdiHandle.open(cluster.conn(0), 'data')).write(0, data)
    const before = await getNodeList(cluster.conn(0))
    const copiesBefore = objectCopies(cluster)
    const members = `${cluster.clusterId}/member`
    const sessionsBefore = await zkChildren(zk, members)
    for (const i of [0, 1, 2]) process.kill(cluster.nodes[i]!.pid, 'SIGSTOP')
    await new Promise((r) => setTimeout(r, TEST_SESSION_TIMEOUT_MS + 3_000))
    t.same(await zkChildren(zk, members), [], 'every session expired')
    for (const i of [0, 1, 2]) process.kill(cluster.nodes[i]!.pid, 'SIGCONT')
    t.ok(
      await waitFor(
        async () => {
          const now = await zkChildren(zk, members)
          return now.length === 3 && now.every((n) => !sessionsBefore.includes(n))
        },
        20_000,
        100,
      ),
      'each node registers a new session',
    )
    t.ok(
      await waitFor(
        async () => {
          const lists = await Promise.all([0, 1, 2].map((i) => getNodeList(cluster.conn(i)).catch(() => undefined)))
          const probes = await Promise.all([0, 1, 2].map((i) => statClusterProbe(cluster.conn(i)).catch(() => undefined)))
          return lists.every((l) => l?.nodes.length === 3) && probes.every((p) => p?.result === SD_RES_SUCCESS)
        },
        30_000,
        200,
      ),
      'all three rejoin and the cluster runs again',
    )
    const after = await getNodeList(cluster.conn(1))
    t.equal(after.epoch, before.epoch, 'the same nodes as the last epoch: no new epoch, nothing to recover')
    t.same(objectCopies(cluster), copiesBefore, 'no object moved')
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 8 * MiB)).equals(data), 'data intact')
  })

  t.test('a ZooKeeper outage refuses cluster ops, keeps data I/O, and resumes', async (t) => {
    // a longer session: clients must reconnect within it once the restarted server runs
    const cluster = await startZkCluster(zk, 3, { timeoutMs: OUTAGE_SESSION_TIMEOUT_MS })
    t.teardown(() => cluster.close())
    await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(16 * MiB) })
    const data = crypto.randomBytes(8 * MiB)
    const h = await VdiHandle.open(cluster.conn(1), 'data')
    await h.write(0, data)
    const before = await getNodeList(cluster.conn(0))

    await zk.stop('SIGKILL')
    const outageStart = Date.now()
    await t.rejects(
      newVdi(cluster.conn(0), { name: 'during', vdiSize: BigInt(4 * MiB) }),
      { name: 'SdError', code: SD_RES_CLUSTER_ERROR },
      'a cluster op is refused with CLUSTER_ERROR',
    )
    const created = await dog(['vdi', 'create', 'during', '4M'], { port: cluster.ports[2] })
    t.not(created.status, 0, 'dog vdi create fails during the outage')
    t.match(created.stderr, /[Cc]luster driver/, `and says why: ${created.stderr.trim()}`)
    const update = crypto.randomBytes(2 * MiB)
    await h.write(MiB, update)
    data.set(update, MiB)
    t.ok((await h.read(0, 8 * MiB)).equals(data), 'data I/O among the current members goes on')
    // outlast the session timeout: sessions survive because the server restarts them on its return
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_SESSION_TIMEOUT_MS + 1_000 - (Date.now() - outageStart))))
    t.equal(await memberCount(cluster, 0), 3, 'nobody is declared gone during the outage')
    t.equal((await statClusterProbe(cluster.conn(0)))?.result, SD_RES_SUCCESS, 'the cluster still runs')

    await zk.start()
    const restartedAt = Date.now()
    for (const i of [0, 1, 2]) {
      t.ok(
        await waitFor(
          async () => {
            try {
              await newVdi(cluster.conn(i), { name: `after${i}`, vdiSize: BigInt(4 * MiB) })
              return true
            } catch (e) {
              if (e instanceof SdError && e.code === SD_RES_CLUSTER_ERROR) return false
              throw e
            }
          },
          20_000,
          200,
        ),
        `cluster ops work again through node ${i} once ZooKeeper is back`,
      )
    }
    t.comment(`cluster ops through every node ${Date.now() - restartedAt} ms after ZooKeeper answered again`)
    const after = await getNodeList(cluster.conn(2))
    t.equal(after.nodes.length, 3, 'the same three members')
    t.equal(after.epoch, before.epoch, 'no membership change: the epoch did not move')
    t.ok((await (await VdiHandle.open(cluster.conn(2), 'data')).read(0, 8 * MiB)).equals(data), 'data intact')
  })
})
