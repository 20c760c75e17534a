// Manual recovery (`dog cluster recover disable`, add nodes, `recover enable`): once it settles
// every object is on exactly the nodes the ring of the members says, and the data reads back.
import crypto from 'node:crypto'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { getNodeList, makeFs } from '../../lib/sheep-api.js'
import { misplacedObjects, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const COPIES = 2

t.test('recover disable, two nodes join, recover enable: every object where the ring says', async (t) => {
  const cluster = await startCluster(5, { start: 3 })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const members = (n: number) => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === n, 20_000)
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: COPIES, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '64M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(64 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')
  t.same([...(await misplacedObjects(cluster, COPIES))], [], 'every object in place before')

  t.equal((await dog(['cluster', 'recover', 'disable'], { port: port(0) })).status, 0, 'recovery disabled')
  await cluster.start(3)
  t.ok(await members(4), 'node 3 joins')
  await cluster.start(4)
  t.ok(await members(5), 'node 4 joins')
  const more = crypto.randomBytes(8 * MiB)
  t.equal((await dog(['vdi', 'write', 'v', String(8 * MiB)], { port: port(1), input: more })).status, 0, 'a write while recovery is disabled')
  more.copy(data, 8 * MiB)
  t.equal((await dog(['cluster', 'recover', 'enable'], { port: port(0) })).status, 0, 'recovery enabled')
  t.ok(await waitForRecovery(cluster), 'recovery settles')

  t.same([...(await misplacedObjects(cluster, COPIES))], [], 'every object on exactly the nodes the ring says')
  for (const i of [0, 3, 4]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }
})
