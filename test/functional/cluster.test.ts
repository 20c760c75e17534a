// A replicated cluster of real sheep on the local driver: node loss, restart, growth, recovery
// to exactly min(copies, zones) replicas, degraded writes, strict mode, whole-cluster restart.
// Data is random and compared byte for byte through different gateways.
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { getNodeList, makeFs, newVdi, statClusterProbe } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES, SD_CLUSTER_FLAG_STRICT, SD_RES_HALT, SD_RES_SUCCESS, SD_RES_VDI_WRITE } from '../../lib/proto.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { SHEEP_BIN, programEnv, trackPid, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n

async function readAll(h: VdiHandle, length: number): Promise<Buffer> {
  return h.read(0, length)
}

t.test('3 nodes, copies=3: node loss, restart, a 4th node, recovery, degraded writes, whole restart', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  const { nodes } = await getNodeList(cluster.conn(1))
  t.equal(nodes.length, 3, 'three members')
  await newVdi(cluster.conn(0), { name: 'data', vdiSize: BigInt(128 * MiB) })
  const data = crypto.randomBytes(96 * MiB)
  const writer = await VdiHandle.open(cluster.conn(0), 'data')
  await writer.write(0, data)
  let copies = objectCopies(cluster)
  t.ok(
    [...copies.values()].every((n) => n === 3),
    `every object on 3 nodes after the write (${copies.size} objects)`,
  )

  await cluster.stop(2, 'SIGKILL')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2, 2000), 'a killed node is seen to leave within 2 s')
  const viaNode1 = await VdiHandle.open(cluster.conn(1), 'data')
  t.ok((await readAll(viaNode1, 96 * MiB)).equals(data), 'all data reads back after losing a node')

  await cluster.start(2)
  t.ok(await waitForRecovery(cluster), 'recovery settles after the restart')
  await cluster.start(3)
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 4, 5000), 'a 4th node joins')
  t.ok(await waitForRecovery(cluster), 'recovery settles after the 4th node joined')
  copies = objectCopies(cluster)
  const wrong = [...copies].filter(([, n]) => n !== 3)
  t.same(wrong, [], 'every object is on disk on exactly 3 nodes')
  for (let i = 0; i < 4; i++) {
    const h = await VdiHandle.open(cluster.conn(i), 'data')
    t.ok((await readAll(h, 96 * MiB)).equals(data), `data identical through node ${i}`)
  }

  // two nodes gone: fewer zones than copies, writes continue degraded
  await cluster.stop(3, 'SIGKILL')
  await cluster.stop(2, 'SIGKILL')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2, 5000), 'two nodes left')
  const extra = crypto.randomBytes(8 * MiB)
  const degraded = await VdiHandle.open(cluster.conn(1), 'data')
  await degraded.write(100 * MiB, extra)
  t.ok((await degraded.read(100 * MiB, 8 * MiB)).equals(extra), 'a degraded write reads back')
  t.ok(await waitForRecovery(cluster), 'recovery settles with two nodes')
  copies = objectCopies(cluster)
  t.ok(
    [...copies.values()].every((n) => n === 2),
    'with two zones every object has 2 replicas',
  )

  // whole-cluster restart: everything comes back
  await cluster.stop(0)
  await cluster.stop(1)
  await cluster.start(0)
  const probe = await statClusterProbe(cluster.conn(0))
  t.not(probe?.result, SD_RES_SUCCESS, 'a lone node of a 2-node epoch waits for the other')
  await cluster.start(1)
  t.ok(
    await waitFor(async () => (await statClusterProbe(cluster.conn(0)))?.result === SD_RES_SUCCESS, 10_000),
    'the cluster runs once the nodes of the last epoch are back',
  )
  const after = await VdiHandle.open(cluster.conn(0), 'data')
  t.ok((await after.read(0, 96 * MiB)).equals(data), 'the first 96 MiB survived the whole-cluster restart')
  t.ok((await after.read(100 * MiB, 8 * MiB)).equals(extra), 'the degraded write survived too')
})

t.test('a strict cluster answers HALT when zones are fewer than copies', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES | SD_CLUSTER_FLAG_STRICT, store: 'plain' })
  const isHalt = { name: 'SdError', code: SD_RES_HALT }
  // the inode write fails with HALT, which NEW_VDI reports as VDI_WRITE (the original's create_vdi)
  const isVdiWrite = { name: 'SdError', code: SD_RES_VDI_WRITE }
  await t.rejects(newVdi(cluster.conn(0), { name: 'three', vdiSize: BigInt(16 * MiB) }), isVdiWrite, 'a 3-copy VDI cannot be written on 2 zones')
  await newVdi(cluster.conn(0), { name: 'two', vdiSize: BigInt(16 * MiB), copies: 2 })
  const h = await VdiHandle.open(cluster.conn(0), 'two')
  await h.write(0, Buffer.alloc(4096, 1))
  t.pass('a 2-copy VDI is written on 2 zones')
  await cluster.stop(1, 'SIGKILL')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 1, 2000), 'one node left')
  await t.rejects(h.write(0, Buffer.alloc(4096, 2)), isHalt, 'then writes are refused with HALT')
})

t.test('nodes of the last epoch started all at once find each other', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  await makeFs(cluster.conn(0), { ctime: ctimeNow(), copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  for (let i = 0; i < 3; i++) await cluster.stop(i)
  // start the three daemons concurrently, as an init system would
  const launches = [0, 1, 2].map(
    (i) =>
      new Promise<number>((resolve) => {
        const child = spawn(
          SHEEP_BIN,
          ['-p', String(cluster.ports[i]), '-n', '-c', `local:${cluster.eventFile}`, '-z', String(i), path.join(cluster.root, `n${i}`)],
          { env: programEnv(), stdio: 'ignore' },
        )
        child.on('close', (code) => resolve(code ?? -1))
      }),
  )
  t.same(await Promise.all(launches), [0, 0, 0], 'every sheep started')
  for (let i = 0; i < 3; i++) {
    const dir = path.join(cluster.root, `n${i}`)
    const pid = Number(fs.readFileSync(path.join(dir, 'lock'), 'utf8').trim())
    trackPid(pid)
    cluster.nodes[i] = { port: cluster.ports[i], dir, pid, args: [] }
  }
  t.ok(await waitFor(async () => (await statClusterProbe(cluster.conn(2)))?.result === SD_RES_SUCCESS, 10_000), 'the cluster runs again')
  t.equal((await getNodeList(cluster.conn(1))).nodes.length, 3, 'with all three members')
})
