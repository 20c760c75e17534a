// The corosync driver's rules (sheep/cluster/corosync.ts) against an in-process stand-in for
// CPG (test/helpers/fake-cpg.ts), shared by several drivers, each with its own pid. Checks join through the members' ACCEPT (answered once per
// joiner, duplicates ignored), the same order of accepts, leaves and notifies everywhere, the
// cluster-wide block (one work at a time, its result delivered as a notify), a joiner refusing
// the cluster its accept describes (there is no refusal message, as in the original), UPDATE_NODE,
// and the partition rule.
import t from 'tap'
import type { SdNode } from '../../lib/structs.js'
import { CorosyncDriver } from '../../sheep/cluster/corosync.js'
import type { ClusterHandlers } from '../../sheep/cluster/driver.js'
import { Bus } from '../helpers/fake-cpg.js'
import { testNode } from '../helpers/nodes.js'

interface Seen {
  log: string[]
  members: number[]
}

function name(n: SdNode): string {
  return String(n.port)
}

/** A sheep stand-in: records what it sees; answers joins with its own view. */
function sheep(port: number, options: { refuseAccept?: (accept: string) => string | undefined } = {}): { handlers: ClusterHandlers; seen: Seen } {
  const seen: Seen = { log: [], members: [] }
  const handlers: ClusterHandlers = {
    // a member that must never be asked: the driver lets the joiner decide
    checkJoin: () => "checkJoin is not the corosync driver's",
    checkAccept: (accept) => options.refuseAccept?.(accept.toString()),
    decideJoin: (joiner) => Buffer.from(`welcome ${name(joiner)} from ${port}`),
    accepted: (joiner, members) => {
      seen.log.push(`accept ${name(joiner)} [${members.map(name).join(',')}]`)
      seen.members = members.map((m) => m.port)
    },
    left: (node, members) => {
      seen.log.push(`leave ${name(node)} [${members.map(name).join(',')}]`)
      seen.members = members.map((m) => m.port)
    },
    notified: (sender, message) => seen.log.push(`notify ${name(sender)} ${message.toString()}`),
    nodeUpdated: (node) => seen.log.push(`update ${name(node)} ${node.space}`),
  }
  return { handlers, seen }
}

function startDriver(bus: Bus, port: number, fatal: string[] = [], options?: Parameters<typeof sheep>[1]) {
  const s = sheep(port, options)
  const open = bus.open(port)
  const driver = new CorosyncDriver({ openCpg: open, pid: port, fatal: (reason) => fatal.push(reason) })
  return { driver, ...s, port }
}

const tick = () => new Promise((r) => setTimeout(r, 20))

t.test('join, notify order, block, leave', async (t) => {
  const bus = new Bus()
  const a = startDriver(bus, 7001)
  const b = startDriver(bus, 7002)
  const c = startDriver(bus, 7003)
  await a.driver.join(testNode(7001), a.handlers, Buffer.from('a'))
  t.same(a.seen.members, [7001], 'the first member accepts itself')
  await b.driver.join(testNode(7002), b.handlers, Buffer.from('b'))
  await c.driver.join(testNode(7003), c.handlers, Buffer.from('c'))
  await tick()
  for (const x of [a, b, c]) t.same(x.seen.members, [7001, 7002, 7003], `${x.port} sees every member`)
  t.same(a.seen.log, ['accept 7001 [7001]', 'accept 7002 [7001,7002]', 'accept 7003 [7001,7002,7003]'], 'each join accepted once (the members all answered)')
  t.same(c.seen.log, ['accept 7003 [7001,7002,7003]'], 'a joiner sees events from its own accept on')

  await Promise.all([b.driver.notify(Buffer.from('b1')), c.driver.notify(Buffer.from('c1')), b.driver.notify(Buffer.from('b2'))])
  await tick()
  const notifies = (x: typeof a) => x.seen.log.filter((l) => l.startsWith('notify'))
  t.equal(notifies(a).length, 3)
  t.same(notifies(b), notifies(a), 'the same notify order on every member')
  t.same(notifies(c), notifies(a))
  t.ok(notifies(a).indexOf('notify 7002 b1') < notifies(a).indexOf('notify 7002 b2'), "a sender's order is kept")

  let running = 0
  let overlapped = false
  const work = (label: string) => async () => {
    running++
    if (running > 1) overlapped = true
    await tick()
    running--
    return Buffer.from(label)
  }
  await Promise.all([a.driver.exclusive(work('xa')), c.driver.exclusive(work('xc')), a.driver.exclusive(work('xa2'))])
  t.notOk(overlapped, 'exclusive works never overlap')
  await tick()
  const results = (x: typeof a) => notifies(x).filter((l) => / x/.test(l))
  t.same(results(a).length, 3, 'each result is delivered as a notify')
  t.same(results(b), results(a))
  t.same(results(c), results(a))

  // a work that fails releases the block; nothing is notified for it
  await t.rejects(
    b.driver.exclusive(async () => Promise.reject(new Error('no'))),
    /no/,
  )
  await c.driver.exclusive(work('after'))
  await tick()
  t.same(notifies(a).slice(-1), ['notify 7003 after'])

  bus.crash([7002])
  await tick()
  t.same(a.seen.members, [7001, 7003], 'a dead member leaves')
  t.same(c.seen.log.slice(-1), ['leave 7002 [7001,7003]'])

  await c.driver.leave()
  await tick()
  t.same(a.seen.members, [7001], 'a leaving member leaves')
  await a.driver.leave()
})

t.test('a joiner that refuses the cluster of its accept fails to join; the members see it come and go', async (t) => {
  const bus = new Bus()
  const a = startDriver(bus, 7101)
  const b = startDriver(bus, 7102, [], { refuseAccept: (accept) => (accept === 'welcome 7102 from 7101' ? 'another cluster' : undefined) })
  await a.driver.join(testNode(7101), a.handlers, Buffer.from('a'))
  await t.rejects(b.driver.join(testNode(7102), b.handlers, Buffer.from('b')), /another cluster/)
  await tick()
  t.same(a.seen.log, ['accept 7101 [7101]', 'accept 7102 [7101,7102]', 'leave 7102 [7101]'])
  const c = startDriver(bus, 7103)
  await c.driver.join(testNode(7103), c.handlers, Buffer.from('c'))
  t.same(c.seen.members, [7101, 7103], 'the queue went on after the refusal')
  await c.driver.leave()
  await a.driver.leave()
})

t.test('UPDATE_NODE: every member applies a new sd_node in order; a later joiner gets it in the list', async (t) => {
  const bus = new Bus()
  const a = startDriver(bus, 7301)
  const b = startDriver(bus, 7302)
  await a.driver.join(testNode(7301), a.handlers, Buffer.from('a'))
  await b.driver.join(testNode(7302), b.handlers, Buffer.from('b'))
  await b.driver.updateNode({ ...testNode(7302), space: 4242n })
  await tick()
  for (const x of [a, b]) t.same(x.seen.log.slice(-1), ['update 7302 4242'], `${x.port} applied the update`)
  const c = startDriver(bus, 7303)
  let listed: SdNode[] = []
  const accepted = c.handlers.accepted
  c.handlers.accepted = (joiner, members, payload) => {
    listed = members
    accepted(joiner, members, payload)
  }
  await c.driver.join(testNode(7303), c.handlers, Buffer.from('c'))
  t.equal(listed.find((n) => n.port === 7302)?.space, 4242n, 'the accept lists the updated sd_node')
  for (const x of [c, b, a]) await x.driver.leave()
})

t.test('losing a majority at once stops the node', async (t) => {
  const bus = new Bus()
  const fatal: string[] = []
  const nodes = [7201, 7202, 7203].map((p) => startDriver(bus, p, p === 7201 ? fatal : []))
  for (const n of nodes) await n.driver.join(testNode(n.port), n.handlers, Buffer.from('x'))
  bus.crash([7202, 7203])
  await tick()
  t.match(fatal, [/larger than majority.*network partition/])
  t.same(nodes[0]!.seen.members, [7201, 7202, 7203], 'no leave was applied')
})
