// Gateway-only nodes (-g) and fixed virtual node counts (-V) in a real local cluster: a gateway
// stores nothing but serves I/O; fixed counts show in `dog node list` and decide placement.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { getNodeList, makeFs, newVdi } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
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
  t.same(cluster.ports.map(vnodesOf), ['128', '128', '128', '0'], 'three data nodes with 128 vnodes, the gateway with 0')
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
