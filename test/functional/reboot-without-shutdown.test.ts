// Three reboots in a row of eight nodes without `dog cluster shutdown` (the original's test 060):
// every sheep is killed at once and all are started again at once, three times. Afterwards every
// node shows the same epoch history and VDI list, and every VDI reads back the same bytes through
// every node.
import crypto from 'node:crypto'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { getNodeList, makeFs, statCluster } from '../../lib/sheep-api.js'
import { type TestCluster, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const NODES = 8
const COPIES = 6
const VDIS = 4
const VDI_MIB = 24
/** 512 bytes at the start of each object (the original writes 25 objects of 100 MiB VDIs). */
const WRITES_PER_VDI = 6
const MiB = 1024 * 1024
const ALL = Array.from({ length: NODES }, (_, i) => i)

async function historyText(cluster: TestCluster, via: number): Promise<string> {
  const { logs } = await statCluster(cluster.conn(via), 64, 64)
  return logs.map((l) => `${l.epoch}:${l.nodes.map((n) => cluster.ports.indexOf(n.port)).sort((x, y) => x - y)}`).join(' ')
}

t.test('eight nodes rebooted three times without shutdown keep one history and their data', async (t) => {
  const cluster = await startCluster(NODES)
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const allUp = () => waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === NODES, 60_000)
  t.ok(await allUp(), 'eight nodes')
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: COPIES, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })

  const images: Buffer[] = []
  await Promise.all(
    Array.from({ length: VDIS }, async (_, v) => {
      t.equal((await dog(['vdi', 'create', `test${v}`, `${VDI_MIB}M`], { port: port(v) })).status, 0)
      const image = Buffer.alloc(WRITES_PER_VDI * 4 * MiB)
      for (let j = 0; j < WRITES_PER_VDI; j++) {
        const piece = crypto.randomBytes(512)
        piece.copy(image, j * 4 * MiB)
        const w = await dog(['vdi', 'write', `test${v}`, String(j * 4 * MiB), '512'], { port: port((v + j) % NODES), input: piece })
        if (w.status !== 0) t.fail(`write ${j} of test${v}: ${w.stderr}`)
      }
      images[v] = image
    }),
  )

  for (let reboot = 1; reboot <= 3; reboot++) {
    await Promise.all(ALL.map((i) => cluster.stop(i, 'SIGKILL')))
    await Promise.all(ALL.map((i) => cluster.start(i)))
    t.ok(await allUp(), `reboot ${reboot}: all eight are back`)
  }
  t.ok(await waitForRecovery(cluster, 180_000), 'recovery settles')

  const histories = await Promise.all(ALL.map((i) => historyText(cluster, i)))
  for (const i of ALL.slice(1)) t.equal(histories[i], histories[0], `node ${i} shows node 0's history`)
  t.comment(`history: ${histories[0]}`)
  const lists = await Promise.all(ALL.map(async (i) => (await dog(['vdi', 'list', '-r'], { port: port(i) })).stdout))
  t.match(lists[0], /test3/, 'the VDIs are listed')
  for (const i of ALL.slice(1)) t.equal(lists[i], lists[0], `node ${i} lists the same VDIs`)
  for (const i of [0, 3, 7]) {
    for (let v = 0; v < VDIS; v++) {
      const r = await dog(['vdi', 'read', `test${v}`, '0', String(WRITES_PER_VDI * 4 * MiB)], { port: port(i) })
      t.ok(r.status === 0 && r.stdoutBytes.equals(images[v] as Buffer), `node ${i} reads test${v}`)
    }
  }
})
