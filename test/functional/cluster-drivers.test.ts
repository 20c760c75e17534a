// One conformance sequence run in-process against every cluster driver (the original has the
// same idea in its unit test of the cluster drivers): members join one by one, notify, take the
// cluster-wide block (one whose work fails, one whose work succeeds), leave, and a new member
// joins; every member must see the same handler calls in the same order from its own accept on,
// and the deciding member's answer must reach them all. The local driver runs on a temp event
// file; the ZooKeeper driver against a real ZooKeeper on loopback; the corosync driver on an
// in-process stand-in for CPG (a real corosync takes one member per process: its real runs are
// test/functional/corosync*.test.ts).
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { SdNode } from '../../lib/structs.js'
import { nodeDescription } from '../../lib/structs.js'
import type { ClusterDriver, ClusterHandlers } from '../../sheep/cluster/driver.js'
import { CorosyncDriver } from '../../sheep/cluster/corosync.js'
import { LocalDriver } from '../../sheep/cluster/local.js'
import { ZookeeperDriver } from '../../sheep/cluster/zookeeper.js'
import { tempDir, waitFor } from '../../harness/sheep.js'
import { Bus } from '../helpers/fake-cpg.js'
import { testNode } from '../helpers/nodes.js'
import { TEST_SESSION_TIMEOUT_MS, startZookeeper, zookeeperAvailable } from '../helpers/zookeeper.js'

/** How long every member may take to see an event another member caused. */
const SEEN_WITHIN_MS = 10_000

const nodeAt = (port: number) => testNode(port)
const nameOf = (node: SdNode) => `n${node.port - 7000}`

/** One in-process member: its driver and the handler calls it saw, as text. */
interface Probe {
  name: string
  driver: ClusterDriver
  seen: string[]
}

function handlersFor(seen: string[]): ClusterHandlers {
  return {
    // the corosync driver sends a join at the original's length: the payload, then zeros
    decideJoin: (joiner, joinPayload) => Buffer.from(`answer to ${nameOf(joiner)} (${joinPayload.toString().replace(/\0+$/, '')})`),
    accepted: (joiner, members, acceptPayload) => seen.push(`accepted ${nameOf(joiner)} [${members.map(nameOf).join(' ')}] ${acceptPayload.toString()}`),
    left: (node, members) => seen.push(`left ${nameOf(node)} [${members.map(nameOf).join(' ')}]`),
    notified: (sender, message) => seen.push(`notified ${nameOf(sender)} ${message.toString()}`),
  }
}

async function joinProbe(makeDriver: () => ClusterDriver, port: number): Promise<Probe> {
  const node = nodeAt(port)
  const probe: Probe = { name: nameOf(node), driver: makeDriver(), seen: [] }
  await probe.driver.join(node, handlersFor(probe.seen), Buffer.from(`join of ${probe.name}`))
  return probe
}

async function allSee(t: Test, probes: readonly Probe[], line: string): Promise<void> {
  const ok = await waitFor(async () => probes.every((p) => p.seen.includes(line)), SEEN_WITHIN_MS, 20)
  t.ok(ok, `${probes.map((p) => p.name).join(', ')} saw: ${line}`)
}

async function conformance(t: Test, makeDriver: () => ClusterDriver): Promise<void> {
  const probes: Probe[] = []
  t.teardown(async () => {
    for (const p of probes) await p.driver.leave()
  })
  for (const port of [7001, 7002, 7003]) {
    probes.push(await joinProbe(makeDriver, port))
    const name = `n${port - 7000}`
    await allSee(t, probes, `accepted ${name} [${probes.map((p) => p.name).join(' ')}] answer to ${name} (join of ${name})`)
  }
  const [n1, n2, n3] = probes as [Probe, Probe, Probe]

  await n2.driver.notify(Buffer.from('hello'))
  t.ok(n2.seen.includes('notified n2 hello'), 'notify resolves once the sender applied it')
  await allSee(t, probes, 'notified n2 hello')

  let ran = 0
  await t.rejects(
    n1.driver.exclusive(async () => {
      ran++
      throw new Error('work failed')
    }),
    /work failed/,
    'a failing work rejects its caller',
  )
  await n3.driver.exclusive(async () => {
    ran++
    return Buffer.from('result of n3')
  })
  t.equal(ran, 2, 'each work ran once, on its sender')
  await allSee(t, probes, 'notified n3 result of n3')

  // the block is one at a time: the second work starts only after the first was applied
  const order: string[] = []
  await Promise.all(
    [n1, n2].map((p) =>
      p.driver.exclusive(async () => {
        order.push(`start ${p.name}`)
        await new Promise((r) => setTimeout(r, 100))
        order.push(`end ${p.name}`)
        return Buffer.from(`exclusive of ${p.name}`)
      }),
    ),
  )
  t.ok(order[0]?.startsWith('start') && order[1]?.startsWith('end') && order[2]?.startsWith('start'), `works did not overlap: ${order.join(', ')}`)

  await n2.driver.leave()
  probes.splice(probes.indexOf(n2), 1)
  await allSee(t, probes, 'left n2 [n1 n3]')

  const n4 = await joinProbe(makeDriver, 7004)
  probes.push(n4)
  await allSee(t, probes, 'accepted n4 [n1 n3 n4] answer to n4 (join of n4)')
  await n1.driver.notify(Buffer.from('bye'))
  await allSee(t, probes, 'notified n1 bye')

  // from n4's accept on, every member saw the same calls in the same order
  const from = (p: Probe) => p.seen.slice(p.seen.indexOf('accepted n4 [n1 n3 n4] answer to n4 (join of n4)'))
  t.same(from(n1), from(n4), 'n1 and n4 agree')
  t.same(from(n3), from(n4), 'n3 and n4 agree')
  t.same(n1.seen.slice(n1.seen.indexOf('accepted n3 [n1 n2 n3] answer to n3 (join of n3)')), n3.seen, 'n1 and n3 agree from n3 on')
  t.comment(`${nodeDescription(nodeAt(7001))} saw ${n1.seen.length} calls`)
}

t.test('local driver', async (t) => {
  const dir = tempDir('cluster-drivers-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  await conformance(t, () => new LocalDriver(path.join(dir, 'events')))
})

t.test('zookeeper driver', { skip: zookeeperAvailable() ? false : 'Debian zookeeper package not installed' }, async (t) => {
  const zk = await startZookeeper()
  t.teardown(() => zk.close())
  await conformance(t, () => new ZookeeperDriver({ servers: [zk.connect], clusterId: '/conformance', sessionTimeoutMs: TEST_SESSION_TIMEOUT_MS }))
})

t.test('corosync driver (in-process CPG stand-in)', async (t) => {
  const bus = new Bus()
  let pid = 1000
  await conformance(t, () => {
    const me = ++pid
    return new CorosyncDriver({ openCpg: bus.open(me), pid: me, fatal: (reason) => t.fail(reason) })
  })
})
