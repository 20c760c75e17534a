// Fixed virtual node counts (sheep -V, dog cluster format -V, dog node vnodes set) on a real
// local cluster, as the original's tests 110, 113, 115 and 118 drive them: format checks every
// node's strategy with the original's lines and exit 1; `cluster info -v` names the strategy;
// every node keeps the count it was started with, a gateway has none; `node vnodes set` is a new
// epoch on every member (also with the same count) and recovery puts every object where the
// new ring says; a restarted node must keep the strategy and its latest count.
import crypto from 'node:crypto'
import t from 'tap'
import { HashRing, autoVnodes } from '../../lib/ring.js'
import { getNodeList, getVnodes } from '../../lib/sheep-api.js'
import { type TestCluster, misplacedObjects, objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const COPIES = 2
const CAN_NOT_APPLY = "Can not apply the option of '-V', because there are vnode strategy of sheep is auto in the cluster\n"
const NEED_TO_SPECIFY = "Need to specify the option of '-V', because there are vnode strategy of sheep is fixed in the cluster\n"

/** `dog node list -r` on node `via`: port → vnodes. */
async function vnodesSeenBy(cluster: TestCluster, via: number): Promise<Map<number, number>> {
  const list = await dog(['node', 'list', '-r'], { port: cluster.ports[via] })
  const rows = list.stdout
    .trim()
    .split('\n')
    .map((line) => line.split(' '))
  return new Map(rows.map((r) => [Number(r[1]?.split(':')[1]), Number(r[2])]))
}

/** The ports that hold each stored object on the ring of node 0's current node list. */
async function placement(cluster: TestCluster): Promise<Map<string, string>> {
  const ring = new HashRing((await getNodeList(cluster.conn(0))).nodes)
  const holders = (name: string) =>
    ring
      .replicasFor(BigInt(`0x${name}`), COPIES)
      .map((n) => n.port)
      .sort()
      .join(',')
  return new Map([...objectCopies(cluster).keys()].map((name) => [name, holders(name)]))
}

async function epochOf(cluster: TestCluster, i: number): Promise<number> {
  return (await getNodeList(cluster.conn(i))).epoch
}

/** Every running node's `node list` gives `port` that many vnodes. */
async function everyoneSees(cluster: TestCluster, port: number, vnodes: number): Promise<boolean> {
  return waitFor(async () => {
    for (let i = 0; i < cluster.nodes.length; i++) {
      if (cluster.nodes[i] && (await vnodesSeenBy(cluster, i)).get(port) !== vnodes) return false
    }
    return true
  }, 15_000)
}

t.test('format checks the strategy of every node, formatted or not', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  await cluster.start(2, ['-V', '64'])
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 3), 'a -V node joins the unformatted cluster')
  const mixedFixed = await dog(['cluster', 'format', '-V', '-c', '2'], { port })
  t.same([mixedFixed.status, mixedFixed.stdout, mixedFixed.stderr], [1, '', CAN_NOT_APPLY], 'mixed strategies: -V refused')
  const mixedAuto = await dog(['cluster', 'format', '-c', '2'], { port })
  t.same([mixedAuto.status, mixedAuto.stdout, mixedAuto.stderr], [1, '', NEED_TO_SPECIFY], 'mixed strategies: no -V refused')
  await cluster.stop(2)
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2), 'the -V node leaves')

  const fixed = await dog(['cluster', 'format', '-V', '-c', '2'], { port })
  t.same([fixed.status, fixed.stderr], [1, CAN_NOT_APPLY], 'auto nodes: -V refused')
  const format = await dog(['cluster', 'format', '-c', '2'], { port })
  t.same([format.status, format.stdout, format.stderr], [0, 'using backend plain store\n', ''], 'auto nodes: formatted without -V')
  const info = await dog(['cluster', 'info', '-v'], { port })
  t.match(
    info.stdout,
    /^Cluster status: running, auto-recovery enabled\nCluster store: plain with 2 redundancy policy\nCluster vnodes strategy: auto\nCluster vnode mode: node\nCluster created at /,
    'cluster info -v: store, policy, auto strategy, node mode',
  )
  const raw = await dog(['cluster', 'info', '-v', '-r'], { port })
  t.match(raw.stdout, /^running, auto-recovery enabled\nplain with 2 redundancy policy\nauto\nnode\n\d+ 1 \[/, 'raw: the values alone')
  // Both announced the free space of one shared disk at start: about equal, so about 128 each.
  const spaces = (await getNodeList(cluster.conn(1))).nodes.map((n) => ({ space: n.space }))
  const seen = [...(await vnodesSeenBy(cluster, 1)).values()]
  t.same(seen, autoVnodes(spaces), 'vnodes follow the announced spaces')
  t.ok(
    seen.every((v) => Math.abs(v - 128) <= 8),
    `about equal capacities: about 128 vnodes each (${seen.join(', ')})`,
  )
  const again = await dog(['cluster', 'format', '-V', '-c', '2'], { port })
  t.same([again.status, again.stderr], [1, CAN_NOT_APPLY], 'formatted auto: -V still refused')
  const set = await dog(['node', 'vnodes', 'set', '10'], { port })
  t.same([set.status, set.stdout, set.stderr], [1, '', 'Failed to execute request\n'], 'vnodes set on an auto cluster fails')
  t.equal(await epochOf(cluster, 0), 1, 'and changes nothing')
})

t.test('a fixed cluster: counts as given, vnodes set moves objects, a restart keeps the count', async (t) => {
  const cluster = await startCluster(3, { start: 0 })
  t.teardown(() => cluster.close())
  await cluster.start(0, ['-V', '64'])
  await cluster.start(1, ['-V', '100'])
  await cluster.start(3, ['-g'])
  const port = (i: number) => cluster.ports[i] as number
  const members = (n: number) => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === n, 20_000)
  t.ok(await members(3), 'two -V nodes and a gateway')
  const auto = await dog(['cluster', 'format', '-c', '2'], { port: port(0) })
  t.same([auto.status, auto.stdout, auto.stderr], [1, '', NEED_TO_SPECIFY], 'fixed nodes: format without -V refused')
  const format = await dog(['cluster', 'format', '-V', '-c', '2'], { port: port(0) })
  t.same([format.status, format.stderr], [0, ''], 'formatted with -V')
  const info = await dog(['cluster', 'info', '-v'], { port: port(1) })
  t.match(info.stdout, /\nCluster store: plain with 2 redundancy policy\nCluster vnodes strategy: fixed\nCluster vnode mode: node\n/, 'cluster info -v: fixed')
  const byPort = [0, 1, 3].sort((a, b) => port(a) - port(b))
  const counts: Record<number, number> = { 0: 64, 1: 100, 3: 0 }
  t.match(info.stdout, `1 [${byPort.map((i) => `127.0.0.1:${port(i)}:${counts[i]}`).join(', ')}]`, 'epoch 1 lists the counts given')
  t.same(
    Object.fromEntries(await vnodesSeenBy(cluster, 3)),
    { [port(0)]: 64, [port(1)]: 100, [port(3)]: 0 },
    'the gateway, there before the format, has the counts given too',
  )

  t.equal((await dog(['vdi', 'create', 'v', '40M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(40 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')

  await cluster.start(2, ['-V', '32'])
  t.ok(await members(4), 'a -V 32 node joins')
  t.same(
    Object.fromEntries(await vnodesSeenBy(cluster, 3)),
    { [port(0)]: 64, [port(1)]: 100, [port(2)]: 32, [port(3)]: 0 },
    'node list: every node with the count it was started with, the gateway with 0',
  )
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.same([...(await misplacedObjects(cluster, COPIES))], [], 'every object where the ring says')

  const epoch = await epochOf(cluster, 0)
  const before = await placement(cluster)
  const set = await dog(['node', 'vnodes', 'set', '200'], { port: port(2) })
  t.same([set.status, set.stdout, set.stderr], [0, '', ''], 'vnodes set 200 on node 2')
  t.ok(await everyoneSees(cluster, port(2), 200), 'every member gives node 2 200 vnodes')
  t.equal(await getVnodes(cluster.conn(2)), 200, 'GET_VNODES on node 2: 200')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.equal(await epochOf(cluster, 0), epoch + 1, 'one new epoch')
  t.same([...(await misplacedObjects(cluster, COPIES))], [], 'every object where the new ring says')
  const after = await placement(cluster)
  const moved = [...before].filter(([name, holders]) => after.get(name) !== holders).length
  t.ok(moved > 0, `${moved} of ${before.size} objects changed holders`)
  const read = await dog(['vdi', 'read', 'v'], { port: port(3) })
  t.ok(read.status === 0 && read.stdoutBytes.equals(data), 'the data reads back byte for byte')
  const same = await dog(['node', 'vnodes', 'set', '200'], { port: port(2) })
  t.equal(same.status, 0)
  t.ok(await waitFor(async () => (await epochOf(cluster, 1)) === epoch + 2), 'the same count again is a new epoch too, as the original')
  const gateway = await dog(['node', 'vnodes', 'set', '10'], { port: port(3) })
  t.same([gateway.status, gateway.stderr], [1, 'Failed to execute request\n'], 'a gateway has no vnodes to set')

  await cluster.stop(2)
  t.ok(await members(3), 'node 2 stops')
  await t.rejects(
    cluster.start(2, ['-V', '32']),
    /mismatch specified vnodes is compared with the previous\. previous vnodes:200/,
    'restart with its old -V: refused',
  )
  await t.rejects(cluster.start(2, []), /Designation of before a restart and a vnodes option is different\./, 'restart without -V: refused')
  await cluster.start(2, ['-V', '200'])
  t.ok(await members(4), 'restart with -V 200: joins')
  t.ok(await everyoneSees(cluster, port(2), 200), 'with 200 vnodes')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.same([...(await misplacedObjects(cluster, COPIES))], [], 'every object where the ring says')
  for (const i of [0, 2]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }
})
