// Sheep on several "machines" with the zookeeper driver: four network namespaces of the test's
// own (one sheep each, each with its own address, all on port 7000) and ZooKeeper in a fifth,
// on a bridge. A host cut off by a link going down is seen to leave, the others recover to full
// redundancy (copies=3 on 3 hosts), and when the link heals it rejoins and recovery spreads the
// data to exactly 3 of 4 hosts; a writer keeps writing through another host the whole time and
// every acknowledged write reads back through every host.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { createTestNet, netnsAvailable, startSheepIn, type TestNet } from '../helpers/netns.js'
import { DOG_BIN, SHEEP_BIN, isAlive, tempDir, waitFor } from '../../harness/sheep.js'
import { TEST_SESSION_TIMEOUT_MS, startZookeeper, zookeeperAvailable, type ZkServer } from '../helpers/zookeeper.js'

const MiB = 1024 * 1024
const HOSTS = 4
const SHEEP_PORT = 7000
const ZK_PORT = 2181
const VDI_BYTES = 32 * MiB
/** The writer rewrites chunks of this size, one at a time, each until it is acknowledged. */
const CHUNK_BYTES = MiB
/** Attempts for one chunk before the writer fails the test (each is one dog run). */
const CHUNK_ATTEMPTS = 60
const CHUNK_RETRY_PAUSE_MS = 500
/** A cut-off host is seen to leave within the session timeout plus this. */
const LEAVE_MARGIN_MS = 10_000
const RECOVERY_TIMEOUT_MS = 120_000

const skip = !zookeeperAvailable() ? 'Debian zookeeper package not installed' : !netnsAvailable() ? 'needs root and network namespaces' : false

t.test('zookeeper driver across hosts: a cut-off host leaves, the rest recover, it rejoins, no acked write lost', { skip }, async (t) => {
  const net: TestNet = await createTestNet(HOSTS)
  const root = tempDir('sheep-netns-')
  let zk: ZkServer | undefined
  const sheepPids: number[] = []
  t.teardown(async () => {
    // sheep first (they leave cleanly while ZooKeeper is up), then ZooKeeper, then the network
    for (const pid of sheepPids) if (isAlive(pid)) process.kill(pid, 'SIGTERM')
    await waitFor(() => sheepPids.every((pid) => !isAlive(pid)), 10_000)
    await zk?.close()
    await net.close()
    // SHEEP_TEST_KEEP_LOGS=DIR keeps the sheep and ZooKeeper logs of this run there
    const keep = process.env.SHEEP_TEST_KEEP_LOGS
    if (keep) {
      for (let i = 0; i < HOSTS; i++) fs.cpSync(path.join(root, `n${i}`, 'sheep.log'), path.join(keep, `sheep${i}.log`), { force: true })
      fs.cpSync(path.join(root, 'zk', 'zookeeper.log'), path.join(keep, 'zookeeper.log'), { force: true })
    }
    fs.rmSync(root, { recursive: true, force: true })
  })
  const timings: string[] = []
  const started = Date.now()
  const mark = (what: string) => timings.push(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`)

  zk = await startZookeeper({ host: net.hubAddr, port: ZK_PORT, netns: net.hub, dir: path.join(root, 'zk') })
  net.track(zk.pid!)
  const driver = `zookeeper:${net.hubAddr}:${ZK_PORT}/netns-test,timeout=${TEST_SESSION_TIMEOUT_MS}`
  // address selection as on real machines: -y, -b, or nothing (the host's first non-loopback IPv4)
  const addrArgs = (i: number): string[] => {
    const a = net.hosts[i]!.addr
    return [['-b', a, '-y', a], ['-b', a], [], ['-y', a]][i % 4]!
  }
  const startNode = async (i: number) => {
    sheepPids.push(await startSheepIn(net, net.hosts[i]!, path.join(root, `n${i}`), ['-p', String(SHEEP_PORT), '-n', '-c', driver, ...addrArgs(i)], SHEEP_BIN))
  }
  const dogIn = (i: number, args: string[], input?: Buffer) =>
    net.exec(net.hosts[i]!.ns, [DOG_BIN, ...args, '-a', net.hosts[i]!.addr, '-p', String(SHEEP_PORT)], { input, timeoutMs: 60_000 })
  const nodeAddrs = async (via: number): Promise<string[]> => {
    const r = await dogIn(via, ['node', 'list', '-r'])
    return r.status === 0
      ? r.stdout
          .toString()
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split(' ')[1]!)
      : []
  }
  const objectsOn = (i: number): string[] => {
    const dir = path.join(root, `n${i}`, 'obj')
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /^[0-9a-f]{16}$/.test(n)) : []
  }
  const staleOn = (i: number): number => {
    const dir = path.join(root, `n${i}`, 'obj', '.stale')
    return fs.existsSync(dir) ? fs.readdirSync(dir).length : 0
  }
  /** Every object on exactly `copies` of `hosts`, nothing stale left, and no host recovering. */
  const settled = async (hosts: number[], copies: number): Promise<boolean> => {
    const counts = new Map<string, number>()
    for (const i of hosts) for (const oid of objectsOn(i)) counts.set(oid, (counts.get(oid) ?? 0) + 1)
    if (counts.size === 0 || [...counts.values()].some((n) => n !== copies)) return false
    if (hosts.some((i) => staleOn(i) > 0)) return false
    const r = await dogIn(hosts[0]!, ['node', 'recovery', '-r'])
    return r.status === 0 && r.stdout.toString().trim() === ''
  }

  // all at once: concurrent joins into an empty cluster
  await Promise.all(net.hosts.map((_, i) => startNode(i)))
  mark('4 sheep up')
  t.ok(await waitFor(async () => (await nodeAddrs(0)).length === HOSTS, 20_000, 250), 'four members')
  t.same(
    (await nodeAddrs(3)).sort(),
    net.hosts.map((h) => `${h.addr}:${SHEEP_PORT}`).sort(),
    'each node advertises its own host address (-y, -b, or the host address)',
  )
  const format = await dogIn(0, ['cluster', 'format', '-c', '3'])
  t.equal(format.status, 0, `cluster format -c 3 ${format.stderr}`)
  t.equal((await dogIn(1, ['vdi', 'create', 'data', String(VDI_BYTES)])).status, 0, 'vdi create')
  const expected = crypto.randomBytes(VDI_BYTES)
  t.equal((await dogIn(2, ['vdi', 'write', 'data', '0', String(VDI_BYTES)], expected)).status, 0, 'initial data written')
  t.ok(await settled([0, 1, 2, 3], 3), 'every object on 3 of 4 hosts')
  mark('data written')

  // the writer: through host 0, chunk after chunk, each retried until acknowledged
  let writing = true
  let acked = 0
  let retried = 0
  /** start:duration of each write (! = failed), for the log */
  const writes: string[] = []
  const writer = (async () => {
    for (let n = 0; writing; n++) {
      const offset = (n % (VDI_BYTES / CHUNK_BYTES)) * CHUNK_BYTES
      const chunk = crypto.randomBytes(CHUNK_BYTES)
      for (let attempt = 1; ; attempt++) {
        const writeStart = Date.now()
        const r = await dogIn(0, ['vdi', 'write', 'data', String(offset), String(CHUNK_BYTES)], chunk)
        writes.push(`${((writeStart - started) / 1000).toFixed(1)}s:${Date.now() - writeStart}ms${r.status === 0 ? '' : '!'}`)
        if (r.status === 0) break
        retried++
        if (attempt >= CHUNK_ATTEMPTS) throw new Error(`a write at ${offset} failed ${attempt} times: ${r.stderr}`)
        await new Promise((res) => setTimeout(res, CHUNK_RETRY_PAUSE_MS))
      }
      chunk.copy(expected, offset)
      acked++
    }
  })()
  const writerFailed = writer.then(
    () => false,
    (e: unknown) => {
      t.fail(String(e))
      return true
    },
  )

  const victim = 3
  net.cut(victim)
  mark('host 3 cut off')
  const cutAt = Date.now()
  t.ok(
    await waitFor(async () => (await nodeAddrs(0)).length === HOSTS - 1, TEST_SESSION_TIMEOUT_MS + LEAVE_MARGIN_MS, 250),
    'the cut-off host is seen to leave',
  )
  mark(`leave seen (${Date.now() - cutAt} ms after the cut)`)
  t.same((await nodeAddrs(1)).sort(), (await nodeAddrs(2)).sort(), 'the remaining hosts agree on the members')
  t.ok(await waitFor(() => settled([0, 1, 2], 3), RECOVERY_TIMEOUT_MS, 1_000), 'the remaining hosts recover to full redundancy (every object on all 3)')
  mark('recovered on 3 hosts')

  net.heal(victim)
  mark('link healed')
  t.ok(
    await waitFor(async () => (await nodeAddrs(0)).length === HOSTS && (await nodeAddrs(victim)).length === HOSTS, 60_000, 1_000),
    'the host rejoins once its link is back',
  )
  mark('rejoined')
  await new Promise((res) => setTimeout(res, 2_000)) // a few more writes with four members
  writing = false
  t.notOk(await writerFailed, `the writer never gave up (${acked} writes acknowledged, ${retried} retried)`)
  t.ok(await waitFor(() => settled([0, 1, 2, 3], 3), RECOVERY_TIMEOUT_MS, 1_000), 'recovery settles with every object on exactly 3 of 4 hosts')
  mark('recovered on 4 hosts')
  for (let i = 0; i < HOSTS; i++) {
    const r = await dogIn(i, ['vdi', 'read', 'data', '0', String(VDI_BYTES)])
    t.ok(r.status === 0 && r.stdout.equals(expected), `every acknowledged write reads back through host ${i}`)
  }
  mark('verified')
  t.comment(timings.join('; '))
  t.comment(`writes: ${writes.join(' ')}`)
})
