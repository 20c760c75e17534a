// Eight sheep started at the same instant and formatted as soon as one answers (the original's
// test 036): the format is tried until it succeeds, while the others are still joining. Then
// every node shows the same status, the same node list and one epoch history, and a VDI written
// through one node reads back through every other.
import crypto from 'node:crypto'
import t from 'tap'
import { getNodeList, statCluster } from '../../lib/sheep-api.js'
import { type TestCluster, startCluster } from '../../harness/cluster.js'
import { dog, readOutcome, waitFor } from '../../harness/sheep.js'

const NODES = 8
const ALL = Array.from({ length: NODES }, (_, i) => i)
const FORMAT_DEADLINE_MS = 60_000

async function historyText(cluster: TestCluster, via: number): Promise<string> {
  const { logs } = await statCluster(cluster.conn(via), 64, 64)
  return logs.map((l) => `${l.epoch}:${l.nodes.map((n) => cluster.ports.indexOf(n.port)).sort((x, y) => x - y)}`).join(' ')
}

t.test('eight sheep started at once and formatted at once agree on the cluster', async (t) => {
  const cluster = await startCluster(NODES, { start: 0 })
  // a failure keeps the nodes' directories and logs for a post-mortem (it failed once in a full run)
  t.teardown(() => cluster.close({ keepFiles: !t.passing() }))
  const port = (i: number) => cluster.ports[i] as number
  const starting = Promise.all(ALL.map((i) => cluster.start(i)))
  // `dog cluster format` again and again until one sheep takes it, as the original's test does
  const formatted = waitFor(async () => (await dog(['cluster', 'format'], { port: port(0) })).status === 0, FORMAT_DEADLINE_MS, 200)
  await starting
  t.ok(await formatted, 'the format succeeds while the nodes start')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === NODES, 60_000), 'eight nodes')

  const status = await Promise.all(ALL.map(async (i) => (await dog(['cluster', 'info'], { port: port(i) })).stdout.split('\n')[0]))
  for (const i of ALL) t.equal(status[i], 'Cluster status: running, auto-recovery enabled', `node ${i} runs`)
  const lists = await Promise.all(ALL.map(async (i) => (await dog(['node', 'list'], { port: port(i) })).stdout))
  for (const i of ALL.slice(1)) t.equal(lists[i], lists[0], `node ${i} lists the same nodes`)
  t.ok(
    await waitFor(async () => {
      const histories = await Promise.all(ALL.map((i) => historyText(cluster, i)))
      return histories.every((h) => h === histories[0])
    }, 20_000),
    'every node shows the same epoch history',
  )

  t.equal((await dog(['vdi', 'create', 'v', '8M'], { port: port(3) })).status, 0)
  const data = crypto.randomBytes(8 * 1024 * 1024)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(3), input: data })).status, 0)
  for (const i of [0, 7]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    const ok = r.status === 0 && r.stdoutBytes.equals(data)
    // CI keeps only the failure's diagnostics: they say what each node thought of the cluster
    const histories = ok ? [] : await Promise.all(ALL.map((n) => historyText(cluster, n).catch((e) => String(e))))
    t.ok(ok, `node ${i} reads the data`, { found: readOutcome(r, data), histories })
  }
})
