// Sheep on several "machines" with the corosync driver: three network namespaces of the test's
// own (test/helpers/netns.ts), each with its own corosync (knet over UDP on the bridge, one
// cluster of the three addresses) and one sheep on port 7000 (one advertising its corosync ring
// address, the others -y). A host cut off by its link going down is seen to leave by the other
// two, which recover to full redundancy (copies=2); on the cut-off host, the configuration
// change removes a majority of its members at once, so its sheep stops (the original's partition rule). When the link heals and that sheep is started
// again, it rejoins and recovery puts every object on exactly 2 of 3 hosts; every write
// acknowledged meanwhile reads back through every host.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { DOG_BIN, SHEEP_BIN, isAlive, tempDir, waitFor } from '../../harness/sheep.js'
import { COROSYNC_TOKEN_MS, type CorosyncInstance, corosyncUnavailable, startCorosync } from '../helpers/corosync.js'
import { type TestNet, createTestNet, netnsAvailable, startSheepIn } from '../helpers/netns.js'

const MiB = 1024 * 1024
const HOSTS = 3
const SHEEP_PORT = 7000
const COROSYNC_PORT = 5405
const VDI_BYTES = 16 * MiB
const CHUNK_BYTES = MiB
/** A cut-off host is seen to leave within corosync's token and consensus timeouts plus this. */
const LEAVE_TIMEOUT_MS = 5 * COROSYNC_TOKEN_MS + 10_000
const RECOVERY_TIMEOUT_MS = 120_000

const skip = corosyncUnavailable() || (!netnsAvailable() ? 'needs root and network namespaces' : false)

t.test('corosync driver across hosts: a cut-off host leaves, the rest recover, it rejoins, no acked write lost', { skip }, async (t) => {
  const net: TestNet = await createTestNet(HOSTS)
  const root = tempDir('sheep-coro-netns-')
  const corosyncs: CorosyncInstance[] = []
  const sheepPids: number[] = []
  t.teardown(async () => {
    for (const pid of sheepPids) if (isAlive(pid)) process.kill(pid, 'SIGTERM')
    await waitFor(() => sheepPids.every((pid) => !isAlive(pid)), 10_000)
    for (const c of corosyncs) await c.close()
    await net.close()
    const keep = process.env.SHEEP_TEST_KEEP_LOGS
    if (keep) {
      for (let i = 0; i < HOSTS; i++) {
        fs.cpSync(path.join(root, `n${i}`, 'sheep.log'), path.join(keep, `sheep${i}.log`), { force: true })
        fs.cpSync(path.join(root, `c${i}`, 'corosync.log'), path.join(keep, `corosync${i}.log`), { force: true })
      }
    }
    fs.rmSync(root, { recursive: true, force: true })
  })
  const timings: string[] = []
  const started = Date.now()
  const mark = (what: string) => timings.push(`${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`)

  const nodes = net.hosts.map((h, i) => ({ nodeid: i + 1, addr: h.addr }))
  for (let i = 0; i < HOSTS; i++) {
    const c = await startCorosync({ dir: path.join(root, `c${i}`), port: COROSYNC_PORT, nodes, netns: net.hosts[i]!.ns })
    net.track(c.pid!)
    corosyncs.push(c)
  }
  mark('3 corosync up')
  const startNode = async (i: number) => {
    const a = net.hosts[i]!.addr
    // host 1 names no address: it advertises its corosync ring address
    const addrArgs = i === 1 ? [] : ['-b', a, '-y', a]
    const pid = await startSheepIn(net, net.hosts[i]!, path.join(root, `n${i}`), ['-p', String(SHEEP_PORT), '-n', '-c', 'corosync', ...addrArgs], SHEEP_BIN)
    sheepPids.push(pid)
    return pid
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
  const settled = async (hosts: number[], copies: number): Promise<boolean> => {
    const counts = new Map<string, number>()
    for (const i of hosts) for (const oid of objectsOn(i)) counts.set(oid, (counts.get(oid) ?? 0) + 1)
    if (counts.size === 0 || [...counts.values()].some((n) => n !== copies)) return false
    if (hosts.some((i) => staleOn(i) > 0)) return false
    const r = await dogIn(hosts[0]!, ['node', 'recovery', '-r'])
    return r.status === 0 && r.stdout.toString().trim() === ''
  }

  const pids = await Promise.all(net.hosts.map((_, i) => startNode(i)))
  mark('3 sheep up')
  t.ok(await waitFor(async () => (await nodeAddrs(0)).length === HOSTS, 20_000, 250), 'three members')
  t.same(
    (await nodeAddrs(2)).sort(),
    net.hosts.map((h) => `${h.addr}:${SHEEP_PORT}`).sort(),
    'each node advertises its own host address (-y, or the corosync ring address)',
  )
  const format = await dogIn(0, ['cluster', 'format', '-c', '2'])
  t.equal(format.status, 0, `cluster format -c 2 ${format.stderr}`)
  t.equal((await dogIn(1, ['vdi', 'create', 'data', String(VDI_BYTES)])).status, 0, 'vdi create')
  const expected = crypto.randomBytes(VDI_BYTES)
  t.equal((await dogIn(2, ['vdi', 'write', 'data', '0', String(VDI_BYTES)], expected)).status, 0, 'initial data written')
  t.ok(await settled([0, 1, 2], 2), 'every object on 2 of 3 hosts')
  mark('data written')

  const victim = 2
  net.cut(victim)
  const cutAt = Date.now()
  mark('host 2 cut off')
  t.ok(await waitFor(async () => (await nodeAddrs(0)).length === HOSTS - 1, LEAVE_TIMEOUT_MS, 250), 'the cut-off host is seen to leave')
  mark(`leave seen (${Date.now() - cutAt} ms after the cut)`)
  t.same((await nodeAddrs(1)).sort(), (await nodeAddrs(0)).sort(), 'the remaining hosts agree on the members')
  t.ok(await waitFor(() => !isAlive(pids[victim]!), LEAVE_TIMEOUT_MS, 250), "the cut-off host's sheep stops: it lost a majority at once")
  const log = fs.readFileSync(path.join(root, `n${victim}`, 'sheep.log'), 'utf8')
  t.match(log, /larger than majority.*network partition/, 'and says so in its log')

  // writes through the remaining hosts while the third is away
  for (let n = 0; n < 4; n++) {
    const offset = n * 3 * CHUNK_BYTES
    const chunk = crypto.randomBytes(CHUNK_BYTES)
    const r = await dogIn(n % 2, ['vdi', 'write', 'data', String(offset), String(CHUNK_BYTES)], chunk)
    t.equal(r.status, 0, `write at ${offset} acknowledged with a host away`)
    if (r.status === 0) chunk.copy(expected, offset)
  }
  t.ok(await waitFor(() => settled([0, 1], 2), RECOVERY_TIMEOUT_MS, 1_000), 'the remaining hosts recover to full redundancy (every object on both)')
  mark('recovered on 2 hosts')

  net.heal(victim)
  mark('link healed')
  // corosync merges the memberships again; the sheep that stopped is started again (as systemd would)
  await new Promise((res) => setTimeout(res, 3 * COROSYNC_TOKEN_MS))
  await startNode(victim)
  t.ok(
    await waitFor(async () => (await nodeAddrs(0)).length === HOSTS && (await nodeAddrs(victim)).length === HOSTS, 60_000, 1_000),
    'the host rejoins once its link is back',
  )
  mark('rejoined')
  t.ok(await waitFor(() => settled([0, 1, 2], 2), RECOVERY_TIMEOUT_MS, 1_000), 'recovery settles with every object on exactly 2 of 3 hosts')
  mark('recovered on 3 hosts')
  for (let i = 0; i < HOSTS; i++) {
    const r = await dogIn(i, ['vdi', 'read', 'data', '0', String(VDI_BYTES)])
    t.ok(r.status === 0 && r.stdout.equals(expected), `every acknowledged write reads back through host ${i}`)
  }
  t.comment(timings.join('; '))
})
