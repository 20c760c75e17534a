// Every node shows the whole epoch history (as the original, which reads the epoch log entries
// it lacks from a peer): a node that joined late, or was away during some epochs, prints the
// same `dog cluster info` as the nodes that were there — no `DATE N []` lines.
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { getNodeList, makeFs } from '../../lib/sheep-api.js'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, filterDates, waitFor } from '../../harness/sheep.js'

t.test('dog cluster info prints the same history on every node', async (t) => {
  const cluster = await startCluster(4, { start: 2 })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const members = (n: number) => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === n, 20_000)
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  await cluster.start(2)
  t.ok(await members(3), 'node 2 joins (epoch 2)')
  await cluster.stop(1, 'SIGKILL')
  t.ok(await members(2), 'node 1 dies (epoch 3)')
  await cluster.start(3)
  t.ok(await members(3), 'node 3 joins (epoch 4)')
  await cluster.start(1)
  t.ok(await members(4), 'node 1 comes back (epoch 5): it was away for epochs 3 and 4')
  t.ok(await waitForRecovery(cluster), 'recovery settles')

  const outputs: string[] = []
  for (const i of [0, 1, 2, 3]) {
    const r = await dog(['cluster', 'info'], { port: port(i) })
    t.equal(r.status, 0, `cluster info through node ${i}`)
    // each member stamps an epoch it lived through with its own clock (as the original does)
    outputs.push(filterDates(r.stdout))
    t.notMatch(r.stdout, /\[\]/, `node ${i} knows the members of every epoch`)
  }
  t.equal(outputs[0]?.split('\n').filter((line) => line.startsWith('YYYY-')).length, 5, 'five epochs')
  for (const i of [1, 2, 3]) t.equal(outputs[i], outputs[0], `node ${i} prints what node 0 prints`)
})
