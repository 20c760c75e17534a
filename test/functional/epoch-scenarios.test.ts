// The original's membership scenarios, with its epoch histories (its tests 005 and 006):
// five nodes killed and joined one after another, then shut down and started one at a time;
// and nine sheep started at the same instant into a running cluster. Every node must show the
// same history, and the data written before reads back through every node: with one copy, the
// objects of the node killed first live only on its disk until it comes back at epoch 8, so a
// member that takes a newer epoch from a joiner must treat what it stores as that old.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { getNodeList, makeFs, statCluster } from '../../lib/sheep-api.js'
import { type TestCluster, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, isAlive, readOutcome, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024

/** The epoch history node `via` prints, newest first, as `epoch:members` with members by index. */
async function history(cluster: TestCluster, via: number): Promise<string[]> {
  const { logs } = await statCluster(cluster.conn(via), 32, 32)
  return logs.map(
    (l) =>
      `${l.epoch}:${l.nodes
        .map((n) => cluster.ports.indexOf(n.port))
        .sort((x, y) => x - y)
        .join(',')}`,
  )
}

/** The objects in a node's store, live and stale (`.stale/NAME.EPOCH`), with their sizes. */
function listObjects(dir: string): string[] {
  const list = (sub: string) => {
    try {
      return fs.readdirSync(path.join(dir, 'obj', sub)).filter((n) => /^[0-9a-f]{16}/.test(n))
    } catch {
      return []
    }
  }
  return [...list(''), ...list('.stale').map((n) => `stale/${n}`)]
}

function sees(cluster: TestCluster, via: number, n: number): Promise<boolean> {
  return waitFor(async () => (await getNodeList(cluster.conn(via))).nodes.length === n, 30_000)
}

t.test('five nodes killed and joined in turn, shut down, started one at a time (the original 005)', async (t) => {
  const cluster = await startCluster(5, { start: 2 })
  t.teardown(() => cluster.close({ keepFiles: !t.passing() }))
  const port = (i: number) => cluster.ports[i] as number
  t.ok(await sees(cluster, 0, 2), 'two nodes')
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '8M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(8 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0)

  for (const i of [2, 3, 4]) {
    t.ok(await sees(cluster, i - 1, 2), `node ${i - 1} sees two nodes`)
    await cluster.stop(i - 2, 'SIGKILL')
    t.ok(await sees(cluster, i - 1, 1), `node ${i - 2} killed: node ${i - 1} alone`)
    await cluster.start(i)
  }
  t.ok(await sees(cluster, 4, 2), 'nodes 3 and 4')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.equal((await dog(['cluster', 'shutdown'], { port: port(4) })).status, 0, 'cluster shutdown')
  for (const i of [3, 4]) t.ok(await waitFor(() => !isAlive(cluster.nodes[i]?.pid ?? 0), 30_000), `node ${i} stopped`)
  for (const i of [3, 4]) await cluster.stop(i)

  for (const i of [0, 1, 2, 3, 4]) await cluster.start(i)
  t.ok(await sees(cluster, 0, 5), 'all five are back')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).epoch === 8, 20_000), 'epoch 8')
  const expected = ['8:0,1,2,3,4', '7:3,4', '6:3', '5:2,3', '4:2', '3:1,2', '2:1', '1:0,1']
  for (const i of [0, 1, 2, 3, 4]) t.same(await history(cluster, i), expected, `node ${i} shows the original's history`)
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  for (const i of [0, 4]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    const ok = r.status === 0 && r.stdoutBytes.equals(data)
    // CI keeps only the failure's diagnostics: which node holds which object (live or stale)
    const objects = ok ? [] : cluster.nodes.map((n, k) => `n${k}: ${n ? listObjects(n.dir).join(' ') : 'down'}`)
    t.ok(ok, `node ${i} reads the data`, { found: readOutcome(r, data), objects })
  }
})

t.test('nine sheep started at the same instant join one running node (the original 006)', async (t) => {
  const cluster = await startCluster(10, { start: 1 })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(16 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0)

  await Promise.all([1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => cluster.start(i)))
  t.ok(await sees(cluster, 0, 10), 'ten nodes')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  const first = await history(cluster, 0)
  t.equal(first[0]?.split(':')[1], '0,1,2,3,4,5,6,7,8,9', 'the newest epoch has all ten')
  for (let i = 1; i < 10; i++) t.same(await history(cluster, i), first, `node ${i} shows node 0's history`)
  for (const i of [0, 9]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }
})
