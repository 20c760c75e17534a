// `sheep --admin-from` (issue 16, "Access"): a cluster whose admin networks leave out 127.0.0.1
// refuses dog's format, vdi delete, shutdown and node kill from there with the original dog's
// lines for SD_RES_NO_SUPPORT, leaves the VDI whole (our dog asks before it clears the index),
// and keeps serving reads, replicated writes (peer traffic between the sheep is not refused)
// and vdi list; its unix socket is always accepted. A sheep whose admin networks include
// 127.0.0.1 accepts them all.
import crypto from 'node:crypto'
import path from 'node:path'
import t from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { getNodeList, makeFs } from '../../lib/sheep-api.js'
import { startCluster } from '../../harness/cluster.js'
import { dog, isAlive } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const NO_SUPPORT = 'Operation is not supported'

const formatOptions = (copies: number) => ({ ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })

t.test('admin requests from outside --admin-from are refused; everything else is served', async (t) => {
  const cluster = await startCluster(2, { extraArgs: ['--admin-from', '10.255.255.0/24'] })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number

  const format = await dog(['cluster', 'format', '-c', '2'], { port: port(0) })
  t.not(format.status, 0, 'dog cluster format fails')
  t.match(format.stderr, `Format failed: ${NO_SUPPORT}`, `with the original's line: ${format.stderr.trim()}`)

  // the unix socket is always accepted: the administrator formats through it
  const local = new SheepConnection({ path: path.join(cluster.nodes[0]?.dir ?? '', 'sock') })
  t.teardown(() => local.close())
  await makeFs(local, formatOptions(2))
  t.pass('MAKE_FS through the unix socket is accepted')

  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: port(0) })).status, 0, 'vdi create is not an admin request')
  const data = crypto.randomBytes(16 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'a write replicated to both nodes')
  const fromOther = await dog(['vdi', 'read', 'v'], { port: port(1) })
  t.ok(fromOther.status === 0 && fromOther.stdoutBytes.equals(data), 'the other node reads it back')

  const del = await dog(['vdi', 'delete', 'v'], { port: port(1) })
  t.equal(del.status, 1, 'dog vdi delete fails')
  t.match(del.stderr, `Failed to delete v: ${NO_SUPPORT}`, `with the original's line: ${del.stderr.trim()}`)
  const after = await dog(['vdi', 'read', 'v'], { port: port(0) })
  t.ok(after.status === 0 && after.stdoutBytes.equals(data), 'the VDI is whole after the refused delete')
  const list = await dog(['vdi', 'list', '-r'], { port: port(1) })
  t.ok(list.status === 0 && /^= v 0 /m.test(list.stdout), `vdi list still shows it: ${list.stdout.trim()}`)

  const kill = await dog(['node', 'kill', '1'], { port: port(0) })
  t.not(kill.status, 0, `dog node kill fails: ${kill.stderr.trim()}`)
  const shutdown = await dog(['cluster', 'shutdown'], { port: port(0) })
  t.not(shutdown.status, 0, 'dog cluster shutdown fails')
  t.match(shutdown.stderr, NO_SUPPORT, `saying why: ${shutdown.stderr.trim()}`)
  t.ok(
    cluster.nodes.every((n) => n !== undefined && isAlive(n.pid)),
    'both sheep run on',
  )
  t.equal((await getNodeList(cluster.conn(1))).nodes.length, 2, 'both still members')
  const more = crypto.randomBytes(4 * MiB)
  t.equal((await dog(['vdi', 'write', 'v', String(4 * MiB)], { port: port(1), input: more })).status, 0, 'writes go on')
})

t.test('admin requests from inside --admin-from are accepted', async (t) => {
  const cluster = await startCluster(1, { extraArgs: ['--admin-from', '10.0.0.0/24,127.0.0.0/8'] })
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '1'], { port })).status, 0, 'dog cluster format')
  t.equal((await dog(['vdi', 'create', 'v', '8M'], { port })).status, 0)
  t.equal((await dog(['vdi', 'write', 'v'], { port, input: crypto.randomBytes(8 * MiB) })).status, 0)
  const del = await dog(['vdi', 'delete', 'v'], { port })
  t.equal(del.status, 0, `dog vdi delete ${del.stderr.trim()}`)
  t.equal((await dog(['vdi', 'list', '-r'], { port })).stdout, '', 'the VDI is gone')
})
