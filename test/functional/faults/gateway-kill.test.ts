// kill -9 of the gateway itself under load (issue 16, fault suite): writers in this process write
// a VDI through lib's VdiHandle on node 0 of a 4-node, 3-copy cluster; the killer SIGKILLs the
// node most writers use, every few seconds, and starts it again a few seconds later. Each writer
// moves to the next node when its gateway dies and sends the write again (test/helpers/failover.ts),
// so every write is acknowledged in the end. Afterwards every node reads back exactly what was
// acknowledged, every object is on exactly 3 nodes where the ring puts it, and no stale copy is
// left. FAULT_SEED replays the writers' choices; FAULT_DURATION_MS makes a longer soak.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { misplacedObjects, startCluster, waitForRecovery } from '../../../harness/cluster.js'
import { dog, isAlive, untrackPid, waitFor } from '../../../harness/sheep.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../../lib/proto.js'
import { makeFs } from '../../../lib/sheep-api.js'
import { FailoverVdi } from '../../helpers/failover.js'
import { seededRandom } from '../../helpers/random.js'

const MiB = 1024 * 1024
const SEED = Number(process.env.FAULT_SEED ?? Math.floor(Math.random() * 0x7fffffff))
const DURATION_MS = Number(process.env.FAULT_DURATION_MS ?? 30_000)
const NODES = 4
const COPIES = 3
const VDI_MIB = 64
const OBJECT_BYTES = 4 * MiB
const WRITERS = 3
/** From one kill of the gateway to the next, and how long the victim stays down. */
const KILL_EVERY_MS = 7_000
const DOWN_FOR_MS = 3_000
const ALIGN_BYTES = 4096

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test(`the gateway killed under load, seed ${SEED} (FAULT_SEED=${SEED} replays)`, async (t) => {
  const cluster = await startCluster(NODES)
  let failed = false
  t.teardown(() => cluster.close({ keepFiles: failed }))
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: COPIES, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  const created = await dog(['vdi', 'create', 'load', `${VDI_MIB}M`, '-p', String(cluster.ports[0])])
  t.equal(created.status, 0, 'VDI created')

  const random = seededRandom(SEED)
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))
  const model = Buffer.alloc(VDI_MIB * MiB)
  const nodes = [...Array(NODES).keys()]
  const writers = Array.from({ length: WRITERS }, () => new FailoverVdi(cluster, 'load', nodes, 0))
  const end = Date.now() + DURATION_MS
  let acked = 0
  const errors: string[] = []

  // writer k owns the objects with index ≡ k (mod WRITERS): the model is exact
  const writer = async (k: number) => {
    const client = writers[k] as FailoverVdi
    const own = [...Array((VDI_MIB * MiB) / OBJECT_BYTES).keys()].filter((i) => i % WRITERS === k)
    while (Date.now() < end) {
      const idx = own[between(0, own.length - 1)] as number
      const length = ALIGN_BYTES * between(1, 256)
      const offset = idx * OBJECT_BYTES + ALIGN_BYTES * between(0, (OBJECT_BYTES - length) / ALIGN_BYTES)
      const data = crypto.randomBytes(length)
      try {
        await client.write(offset, data)
        data.copy(model, offset)
        acked++
      } catch (e) {
        errors.push(`writer ${k} at ${offset}: ${String(e)}`)
        return
      }
    }
  }

  let kills = 0
  const restarts: Array<Promise<unknown>> = []
  const killer = async () => {
    while (Date.now() + KILL_EVERY_MS < end) {
      await sleep(KILL_EVERY_MS)
      // the node most writers use now
      const counts = new Map<number, number>()
      for (const w of writers) counts.set(w.node, (counts.get(w.node) ?? 0) + 1)
      const victim = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] as number
      const s = cluster.nodes[victim]
      if (!s) continue
      untrackPid(s.pid)
      process.kill(s.pid, 'SIGKILL')
      await waitFor(() => !isAlive(s.pid), 10_000)
      cluster.nodes[victim] = undefined
      kills++
      t.comment(`killed gateway node ${victim} (${counts.get(victim)} writer(s) on it)`)
      restarts.push(sleep(DOWN_FOR_MS).then(() => cluster.start(victim)))
    }
    await Promise.all(restarts)
  }
  await Promise.all([...writers.map((_, k) => writer(k)), killer()])
  for (const w of writers) w.close()
  const switches = writers.reduce((n, w) => n + w.switches, 0)
  const retries = writers.reduce((n, w) => n + w.retries, 0)
  t.comment(`${acked} writes acknowledged, ${retries} sent again, ${switches} moves to another node, ${kills} kills`)
  t.same(errors, [], 'every write is acknowledged in the end (through another node)')
  t.ok(kills >= 2 && switches >= kills, 'the writers moved off each killed gateway')

  for (let i = 0; i < NODES; i++) if (!cluster.nodes[i]) await cluster.start(i)
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  for (let i = 0; i < NODES; i++) {
    const r = await dog(['vdi', 'read', 'load', '-p', String(cluster.ports[i])])
    t.ok(r.status === 0 && r.stdoutBytes.equals(model), `node ${i} reads back every acknowledged byte`)
  }
  t.same([...(await misplacedObjects(cluster, COPIES))], [], `every object on exactly ${COPIES} nodes, where the ring puts it`)
  for (let i = 0; i < NODES; i++) {
    const log = fs.readFileSync(path.join(cluster.root, `n${i}`, 'sheep.log'), 'utf8')
    t.notMatch(log, /exits unexpectedly/, `node ${i} logged no crash`)
  }
  failed = !t.passing()
  if (failed) t.comment(`kept for a post-mortem: ${cluster.root}`)
})
