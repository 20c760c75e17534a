// A node's stale copy of an object counts only for exactly the epoch it is named with
// (docs/recovery.md, rule 3). The sequence builds, deterministically, the case that lost
// acknowledged writes under churn: node 3 is killed, every object is rewritten (v2) without it,
// recovery is disabled and node 3 comes back — it moves its old copies (v1) to its stale area
// and, as a holder of the new epoch, recovers nothing yet. Then another node dies: node 3 must
// now fetch v2 from the other holders of the epoch before, not take its own v1 as that epoch's
// copy. Before the fix it served v1 for every object it held.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { disableRecover, enableRecover, getNodeList, getVdiInfo, makeFs, readVdis } from '../../lib/sheep-api.js'
import { vidToVdiOid } from '../../lib/oid.js'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_MIB = 64

t.test('a stale copy of an older epoch is never taken for a newer one', async (t) => {
  const cluster = await startCluster(4)
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i]
  const members = async (n: number) => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === n, 20_000)
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', `${VDI_MIB}M`], { port: port(0) })).status, 0, 'VDI created')
  const v1 = crypto.randomBytes(VDI_MIB * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: v1 })).status, 0, 'v1 written on all four nodes')

  await cluster.stop(3, 'SIGKILL')
  t.ok(await members(3), 'node 3 is gone')
  const v2 = crypto.randomBytes(VDI_MIB * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: v2 })).status, 0, 'v2 written without node 3 (acknowledged)')
  t.ok(await waitForRecovery(cluster), 'the three nodes settle')

  await disableRecover(cluster.conn(0))
  await cluster.start(3)
  t.ok(await members(4), 'node 3 is back, with recovery disabled: it holds objects it has not fetched')
  await cluster.stop(2, 'SIGKILL')
  t.ok(await members(3), 'node 2 is gone')
  await enableRecover(cluster.conn(0))
  t.ok(await waitForRecovery(cluster), 'recovery settles')

  for (const i of [0, 1, 3]) {
    const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
    t.equal(r.status, 0, `read through node ${i}`)
    t.ok(r.stdoutBytes.equals(v2), `node ${i} reads v2, the acknowledged data`)
  }
  const copies = objectCopies(cluster)
  t.same(
    [...copies].filter(([, n]) => n !== 3),
    [],
    'every object on all three nodes',
  )
})

// An inode whose only copy is stale when the sheep start (its holder was killed while a newcomer
// fetched it, then the whole cluster restarted: the original's 005 with unlucky placement) still
// registers its VDI: recovery brings the inode back later, and the VDI must be known by then.
t.test('a VDI whose inode is only in a stale area at start is in every member bitmap', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'v', '4M'], { port: cluster.ports[0] })).status, 0, 'VDI created')
  const { vid } = await getVdiInfo(cluster.conn(0), 'v')
  const { epoch } = await getNodeList(cluster.conn(0))
  const inodeName = vidToVdiOid(vid).toString(16).padStart(16, '0')
  t.equal((await dog(['cluster', 'shutdown'], { port: cluster.ports[0] })).status, 0, 'cluster shut down')
  for (const i of [0, 1]) await cluster.stop(i)
  const holder = [0, 1].find((i) => fs.existsSync(path.join(cluster.root, `n${i}`, 'obj', inodeName)))
  if (holder === undefined) return t.fail('no node holds the inode')
  // the inode becomes the holder's stale copy of the epoch it held it at
  const obj = path.join(cluster.root, `n${holder}`, 'obj')
  fs.mkdirSync(path.join(obj, '.stale'), { recursive: true })
  fs.renameSync(path.join(obj, inodeName), path.join(obj, '.stale', `${inodeName}.${epoch}`))
  for (const i of [0, 1]) await cluster.start(i)
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2, 20_000), 'both back')
  for (const i of [0, 1]) {
    const bitmap = await readVdis(cluster.conn(i))
    t.ok(((bitmap[vid >> 3] as number) >> (vid & 7)) & 1, `node ${i} has the VDI in its bitmap`)
  }
})
