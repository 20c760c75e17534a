// Kills during the recovery of a large VDI, and a flapping node (issue 16, fault suite): a 4-node,
// 2-copy cluster holds a 256 MiB VDI. (1) Node 3 loses every object (a replaced disk) and
// recovers its share; while it does, it is SIGKILLed and started again, then a node it copies
// from is. (2) A fifth node joins — another large recovery — while node 1 is killed and started
// again every 2 s. After each, the cluster converges: every node reads the VDI byte for byte,
// every object is on exactly 2 nodes where the ring puts them with identical bytes, no stale copy
// is left, no daemon crashed (the ones never killed still run; no log shows a crash).
// FAULT_VDI_MIB and FAULT_FLAP_MS make a longer soak.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { type TestCluster, misplacedObjects, startCluster, waitForRecovery } from '../../../harness/cluster.js'
import { dog, isAlive, untrackPid, waitFor } from '../../../harness/sheep.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../../lib/proto.js'
import { makeFs, statRecovery } from '../../../lib/sheep-api.js'

const MiB = 1024 * 1024
const VDI_MIB = Number(process.env.FAULT_VDI_MIB ?? 256)
/** How long node 1 flaps: killed, started 2 s later, killed 2 s after it is up … */
const FLAP_MS = Number(process.env.FAULT_FLAP_MS ?? 20_000)
const FLAP_PERIOD_MS = Number(process.env.FAULT_FLAP_PERIOD_MS ?? 2_000)
const COPIES = 2
const SETTLE_TIMEOUT_MS = 150_000
const OID_FILE = /^[0-9a-f]{16}$/

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** SIGKILLs node i of the cluster (no clean leave). */
async function kill(cluster: TestCluster, i: number): Promise<void> {
  const s = cluster.nodes[i]
  if (!s) return
  untrackPid(s.pid)
  process.kill(s.pid, 'SIGKILL')
  await waitFor(() => !isAlive(s.pid), 10_000)
  cluster.nodes[i] = undefined
}

/** Objects whose replicas differ in content: oid file name → the ports that hold it. */
function differingReplicas(cluster: TestCluster): string[] {
  const sums = new Map<string, Set<string>>()
  for (const node of cluster.nodes) {
    if (!node) continue
    const dir = path.join(node.dir, 'obj')
    for (const name of fs.readdirSync(dir).filter((n) => OID_FILE.test(n))) {
      const sum = crypto
        .createHash('sha1')
        .update(fs.readFileSync(path.join(dir, name)))
        .digest('hex')
      sums.set(name, (sums.get(name) ?? new Set()).add(sum))
    }
  }
  return [...sums].filter(([, s]) => s.size > 1).map(([name]) => name)
}

/** Everything a converged cluster must show, as assertions. */
async function converged(t: Test, cluster: TestCluster, data: Buffer, readers: number[], what: string): Promise<void> {
  t.ok(await waitForRecovery(cluster, SETTLE_TIMEOUT_MS), `${what}: recovery settles, no stale copy left`)
  for (const i of readers) {
    const r = await dog(['vdi', 'read', 'big', '-p', String(cluster.ports[i])])
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), `${what}: node ${i} reads every byte`)
  }
  t.same([...(await misplacedObjects(cluster, COPIES))].slice(0, 5), [], `${what}: every object on exactly ${COPIES} nodes, where the ring puts it`)
  t.same(differingReplicas(cluster).slice(0, 5), [], `${what}: replicas identical`)
  t.same(leftovers(cluster), [], `${what}: no temporary file left in any store`)
}

/** Temporary files (creates and recovery pieces never renamed) left in the nodes' stores. */
function leftovers(cluster: TestCluster): string[] {
  const found: string[] = []
  for (const node of cluster.nodes) {
    if (!node) continue
    for (const dir of [path.join(node.dir, 'obj'), path.join(node.dir, 'obj', '.stale')]) {
      if (!fs.existsSync(dir)) continue
      for (const name of fs.readdirSync(dir)) if (name.endsWith('.tmp')) found.push(`${node.port}: ${name}`)
    }
  }
  return found
}

/** True once node i reports a recovery running. */
async function recovering(cluster: TestCluster, i: number): Promise<boolean> {
  try {
    return (await statRecovery(cluster.conn(i))).inRecovery !== 0
  } catch {
    return false
  }
}

t.test(`kills during the recovery of a ${VDI_MIB} MiB VDI, and a flapping node`, async (t) => {
  const cluster = await startCluster(4)
  let failed = false
  t.teardown(() => cluster.close({ keepFiles: failed }))
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: COPIES, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  t.equal((await dog(['vdi', 'create', 'big', `${VDI_MIB}M`, '-p', String(cluster.ports[0])])).status, 0, 'VDI created')
  const data = crypto.randomBytes(VDI_MIB * MiB)
  t.equal((await dog(['vdi', 'write', 'big', '-p', String(cluster.ports[0])], { input: data })).status, 0, `${VDI_MIB} MiB written`)
  const neverKilled = [cluster.nodes[0]?.pid as number, cluster.nodes[2]?.pid as number]

  await t.test('the recovering node and a source killed mid-recovery', async (t) => {
    await cluster.stop(3)
    const obj = path.join(cluster.root, 'n3', 'obj')
    const lost = fs.readdirSync(obj).filter((n) => OID_FILE.test(n))
    for (const name of lost) fs.rmSync(path.join(obj, name))
    t.comment(`node 3 lost ${lost.length} objects`)
    await cluster.start(3)
    t.ok(await waitFor(() => recovering(cluster, 3), 20_000, 20), 'node 3 recovers')
    await sleep(1_000)
    await kill(cluster, 3)
    await cluster.start(3)
    t.ok(await waitFor(() => recovering(cluster, 3), 20_000, 20), 'node 3, killed and started again, recovers again')
    await sleep(1_000)
    await kill(cluster, 1)
    await sleep(FLAP_PERIOD_MS)
    await cluster.start(1)
    await converged(t, cluster, data, [0, 3], 'after the kills')
  })

  await t.test('a node joins while another flaps every 2 s', async (t) => {
    await cluster.start(4)
    t.ok(await waitFor(() => recovering(cluster, 4), 20_000, 20), 'the new node recovers')
    let flaps = 0
    const end = Date.now() + FLAP_MS
    while (Date.now() < end) {
      await kill(cluster, 1)
      await sleep(FLAP_PERIOD_MS)
      await cluster.start(1)
      flaps++
      await sleep(FLAP_PERIOD_MS)
    }
    t.comment(`node 1 killed and started again ${flaps} times`)
    await converged(t, cluster, data, [1, 4], 'after the flapping')
  })

  t.ok(neverKilled.every(isAlive), 'the nodes never killed still run')
  for (let i = 0; i < 5; i++) {
    const log = fs.readFileSync(path.join(cluster.root, `n${i}`, 'sheep.log'), 'utf8')
    t.notMatch(log, /exits unexpectedly/, `node ${i} logged no crash`)
  }
  failed = !t.passing()
  if (failed) t.comment(`kept for a post-mortem: ${cluster.root}`)
})
