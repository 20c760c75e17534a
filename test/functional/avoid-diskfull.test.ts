// `dog cluster format -F` (avoid disk full), for real: a node whose store is a small tmpfs joins
// a cluster holding more than it could take. Its recovery is cancelled with the original's
// messages instead of filling the disk, nothing is lost (the stale copies stay), the data reads
// back through every node, and once the small node is gone the cluster recovers as usual.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { isDataObj } from '../../lib/oid.js'
import { SD_CLUSTER_FLAG_AVOID_DISKFULL } from '../../lib/proto.js'
import { getNodeList, makeFs } from '../../lib/sheep-api.js'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
/** The small node's disk: far less than its share of the VDI below. */
const SMALL_DISK_MIB = 16
/**
 * 24 data objects, 48 replicas: a third of them is 16 objects, and the small node's disk takes 4.
 * (With 48 MiB, a ring drawn from unlucky ports once gave it exactly 4, which fit: no cancel.)
 */
const VDI_MIB = 96
const COPIES = 2
/** Fixed vnodes (no auto flag): the small node takes an equal share of the ring whatever its size. */
const VNODES = ['-V', '128']

const canMount = process.getuid?.() === 0

t.test('a recovery that would fill a node is cancelled, and nothing is lost', { skip: canMount ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const cluster = await startCluster(3, { start: 2, extraArgs: VNODES })
  const smallDir = path.join(cluster.root, 'n2')
  fs.mkdirSync(smallDir, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${SMALL_DISK_MIB}m`, 'tmpfs', smallDir])
  t.teardown(async () => {
    await cluster.close({ keepFiles: true })
    execFileSync('umount', ['-l', smallDir])
    fs.rmSync(cluster.root, { recursive: true, force: true })
  })
  const port = (i: number) => cluster.ports[i] as number
  const members = (n: number) => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === n, 20_000)
  t.ok(await members(2), 'two nodes')
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: COPIES, flags: SD_CLUSTER_FLAG_AVOID_DISKFULL, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', `${VDI_MIB}M`], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(VDI_MIB * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')

  await cluster.start(2)
  t.ok(await members(3), 'the small node joins')
  const log = path.join(smallDir, 'sheep.log')
  t.ok(
    await waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('canceling recovery because of disk full'), 30_000),
    'the small node cancels its recovery because of disk full',
  )
  const text = fs.readFileSync(log, 'utf8')
  t.match(text, /will cause disk full, stopping whole cluster/, 'and names the node that would fill')
  t.match(text, /please add a new node ASAP/, 'and asks for a new node')
  const dataObjects = fs.readdirSync(path.join(smallDir, 'obj')).filter((name) => /^[0-9a-f]{16}$/.test(name) && isDataObj(BigInt(`0x${name}`)))
  t.same(dataObjects, [], 'no data object was copied to the small node')
  for (const i of [0, 1, 2]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data`)
  }

  await cluster.stop(2)
  t.ok(await members(2), 'the small node leaves')
  t.ok(await waitForRecovery(cluster), 'the two nodes recover')
  for (const i of [0, 1]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `node ${i} reads the data after the small node left`)
  }
})
