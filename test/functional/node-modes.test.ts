// Gateway-only nodes (-g) and fixed virtual node counts (-V) in a real local cluster: a gateway
// stores nothing but serves I/O; fixed counts show in `dog node list` and decide placement.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { getNodeList, makeFs, newVdi } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { autoVnodes } from '../../lib/ring.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { objectCopies, startCluster } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n

t.test('a gateway-only node stores nothing and serves I/O', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const gateway = await cluster.start(3, ['-g'])
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 4, 5000), 'the gateway joined')
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  const list = await dog(['node', 'list', '-r'], { port: cluster.ports[0] })
  const rows = list.stdout
    .trim()
    .split('\n')
    .map((line) => line.split(' '))
  const vnodesOf = (port: number) => rows.find((r) => r[1] === `127.0.0.1:${port}`)?.[2]
  // Each data node announced the free space of the shared disk when it started, so the counts
  // are 128 × space / average space: near 128 each, exact only when nothing else wrote meanwhile.
  const announced = (await getNodeList(cluster.conn(0))).nodes
  const spaceOf = (port: number) => announced.find((n) => n.port === port)?.space ?? 0n
  const expected = autoVnodes(cluster.ports.map((port) => ({ space: spaceOf(port) })))
  t.same(cluster.ports.map(vnodesOf), expected.map(String), 'vnodes follow the announced spaces')
  t.ok(
    expected.slice(0, 3).every((v) => Math.abs(v - 128) <= 8),
    `three data nodes with about 128 vnodes each (${expected.join(', ')})`,
  )
  t.equal(expected[3], 0, 'the gateway has 0 vnodes')
  const gatewayIndex = rows.findIndex((r) => r[1] === `127.0.0.1:${gateway.port}`)
  await newVdi(cluster.conn(3), { name: 'viagw', vdiSize: BigInt(32 * MiB) })
  const data = crypto.randomBytes(20 * MiB)
  const h = await VdiHandle.open(cluster.conn(3), 'viagw')
  await h.write(0, data)
  t.ok((await h.read(0, data.length)).equals(data), 'data written and read through the gateway')
  const stored = fs.readdirSync(path.join(gateway.dir, 'obj')).filter((n) => /^[0-9a-f]{16}$/.test(n))
  t.same(stored, [], 'the gateway holds no object')
  t.ok(
    [...objectCopies(cluster).values()].every((n) => n === 3),
    'every object on the 3 data nodes',
  )
  const info = await dog(['node', 'info', '-r'], { port: cluster.ports[0] })
  t.match(info.stdout, new RegExp(`^${gatewayIndex} 0 0 0 0%$`, 'm'), 'the gateway reports no capacity')
})

t.test('fixed vnode counts (-V) are used as announced', async (t) => {
  const cluster = await startCluster(3, { extraArgs: ['-V', '64'] })
  t.teardown(() => cluster.close())
  const format = await dog(['cluster', 'format', '-c', '2', '-V'], { port: cluster.ports[0] })
  t.equal(format.status, 0, format.stderr)
  const list = await dog(['node', 'list', '-r'], { port: cluster.ports[1] })
  t.same(
    list.stdout
      .trim()
      .split('\n')
      .map((line) => line.split(' ')[2]),
    ['64', '64', '64'],
    'every node has 64 vnodes',
  )
  const info = await dog(['cluster', 'info', '-v'], { port: cluster.ports[2] })
  t.match(info.stdout, /Cluster vnodes strategy: fixed/, 'cluster info shows the fixed strategy')
})
