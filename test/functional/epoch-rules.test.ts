// Crash and restart follow the original's epoch rules. Two nodes; kill the first; a third joins;
// kill the remaining two one after the other, each once it sees itself alone; start all three
// again. The last survivor recorded epoch 4 with itself alone before it died (a membership
// change is in the epoch log on disk before a client can see it), so the restarted cluster
// waits for it, and records epoch 5 with all three once it is back.
import crypto from 'node:crypto'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES, SD_RES_SUCCESS } from '../../lib/proto.js'
import { getNodeList, makeFs, statCluster } from '../../lib/sheep-api.js'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024

t.test('the last survivor records its epoch before it dies; the restart waits for it', async (t) => {
  const cluster = await startCluster(3, { start: 2 })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const sees = (via: number, n: number) => waitFor(async () => (await getNodeList(cluster.conn(via))).nodes.length === n, 20_000)
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(16 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0)

  await cluster.stop(0, 'SIGKILL')
  t.ok(await sees(1, 1), 'node 0 killed: epoch 2 [1]')
  await cluster.start(2)
  t.ok(await sees(1, 2), 'node 2 joins: epoch 3 [1, 2]')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  await cluster.stop(1, 'SIGKILL')
  t.ok(await sees(2, 1), 'node 1 killed: node 2 sees itself alone')
  await cluster.stop(2, 'SIGKILL')

  await cluster.start(0)
  await cluster.start(1)
  const waiting = await statCluster(cluster.conn(0), 0, 0)
  t.not(waiting.result, SD_RES_SUCCESS, 'without the last survivor the cluster waits')
  await cluster.start(2)
  t.ok(await sees(0, 3), 'all three are back')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).epoch === 5, 20_000), 'epoch 5 once the survivor is back')
  const { logs } = await statCluster(cluster.conn(0), 16, 16)
  const history = logs.map(
    (l) =>
      `${l.epoch}:${l.nodes
        .map((n) => cluster.ports.indexOf(n.port))
        .sort((x, y) => x - y)
        .join(',')}`,
  )
  t.same(history, ['5:0,1,2', '4:2', '3:1,2', '2:1', '1:0,1'], `history ${history.join(' ')}`)
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  for (const i of [0, 1, 2]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }
})
