// sheep -i (a dedicated I/O NIC, issue 12 item 13): three sheep in a network namespace of the
// test's own, each on 127.0.0.1 (its main address: dog, the cluster) with an I/O address of
// its own (127.0.0.2, .3, .4). The node records announce the I/O addresses and dog prints the
// main ones, as the original's dog; object traffic between sheep goes to the I/O addresses
// (seen with ss: no sheep talks to another's main port). When one I/O address is deleted,
// writes and reads (copies=3, and copies=1 so that reads must cross to that node) still
// succeed on the first try, through the fallback to that node's main address, and the data
// reads back byte for byte; when the address comes back, the traffic goes back to it.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { DOG_BIN, SHEEP_BIN, tempDir, waitFor } from '../../harness/sheep.js'
import { addrToText, decodeEpochFile } from '../../lib/structs.js'
import { type LoopbackNet, createLoopbackNet, netnsAvailable, startSheepIn } from '../helpers/netns.js'

const KiB = 1024
const MiB = 1024 * KiB
const NODES = 3
const MAIN_ADDR = '127.0.0.1'
const MAIN_PORTS = [7000, 7001, 7002]
const IO_ADDRS = ['127.0.0.2', '127.0.0.3', '127.0.0.4']
const IO_PORT = 7010
/** VDI `full`: copies=3, every node holds every object (writes reach all three). */
const FULL_BYTES = 8 * MiB
/** VDI `single`: copies=1 in 1 MiB objects, so reads through node 0 must fetch from the others. */
const SINGLE_BYTES = 16 * MiB
const SINGLE_BLOCK_SHIFT = 20
/** The node whose I/O address is deleted. */
const CUT = 2
/** The original's monitor interval is 5 s: the way back takes one or two of them. */
const BACK_TIMEOUT_MS = 20_000
const DOG_TIMEOUT_MS = 60_000

const skip = netnsAvailable() ? false : 'needs root and network namespaces'

interface Conn {
  local: string
  peer: string
  pid: number
}

t.test('peer object traffic goes to the I/O addresses and falls back to the main ones', { skip }, async (t) => {
  const root = tempDir('sheep-ionic-')
  let net: LoopbackNet | undefined
  t.teardown(async () => {
    // net.close stops the sheep it tracks (by pid), then deletes the namespace and its addresses
    await net?.close()
    const keep = process.env.SHEEP_TEST_KEEP_LOGS
    if (keep) for (let i = 0; i < NODES; i++) fs.cpSync(path.join(root, `n${i}`, 'sheep.log'), path.join(keep, `ionic-sheep${i}.log`), { force: true })
    fs.rmSync(root, { recursive: true, force: true })
  })
  net = await createLoopbackNet(IO_ADDRS)
  const ns = net
  const sheepPids: number[] = []
  const dog = (i: number, args: string[], input?: Buffer) =>
    ns.exec(ns.ns, [DOG_BIN, ...args, '-a', MAIN_ADDR, '-p', String(MAIN_PORTS[i])], { input, timeoutMs: DOG_TIMEOUT_MS })
  const log = (i: number) => fs.readFileSync(path.join(root, `n${i}`, 'sheep.log'), 'utf8')
  /** Established TCP connections whose client end a sheep of this test holds. */
  const sheepClientConns = async (): Promise<Conn[]> => {
    const r = await ns.exec(ns.ns, ['ss', '-Htnp', 'state', 'established'])
    const conns: Conn[] = []
    for (const line of r.stdout.toString().split('\n')) {
      const m = /^\s*\d+\s+\d+\s+(\S+)\s+(\S+)\s+.*pid=(\d+),/.exec(line)
      if (m && sheepPids.includes(Number(m[3]))) conns.push({ local: m[1]!, peer: m[2]!, pid: Number(m[3]) })
    }
    return conns
  }
  const to = (conns: Conn[], addr: string, port: number) => conns.filter((c) => c.peer === `${addr}:${port}`).length
  const toMainPorts = (conns: Conn[]) => MAIN_PORTS.reduce((n, port) => n + to(conns, MAIN_ADDR, port), 0)
  const writeAndCheck = async (vdi: string, bytes: number, what: string) => {
    const data = crypto.randomBytes(bytes)
    const started = Date.now()
    const w = await dog(0, ['vdi', 'write', vdi, '0', String(bytes)], data)
    t.equal(w.status, 0, `${what}: ${vdi} written through node 0 in ${Date.now() - started} ms ${w.stderr}`)
    for (const i of [0, 1]) {
      const r = await dog(i, ['vdi', 'read', vdi, '0', String(bytes)])
      t.equal(r.status, 0, `${what}: ${vdi} read through node ${i} ${r.stderr}`)
      t.ok(r.stdout.equals(data), `${what}: ${vdi} through node ${i} reads back byte for byte`)
    }
  }

  for (let i = 0; i < NODES; i++) {
    const args = ['-n', '-b', MAIN_ADDR, '-p', String(MAIN_PORTS[i]), '-z', String(i), '-c', `local:${path.join(root, 'shm')}`]
    sheepPids.push(await startSheepIn(ns, ns, path.join(root, `n${i}`), [...args, '-i', `host=${IO_ADDRS[i]},port=${IO_PORT}`], SHEEP_BIN))
  }
  const format = await dog(0, ['cluster', 'format', '-c', '3'])
  t.equal(format.status, 0, `cluster format ${format.stderr}`)

  // the node records carry the I/O NICs; dog shows the main addresses only, as the original's
  const epochDir = path.join(root, 'n0', 'epoch')
  const latest = fs.readdirSync(epochDir).sort().pop()!
  const nodes = decodeEpochFile(fs.readFileSync(path.join(epochDir, latest)))?.nodes ?? []
  t.same(
    nodes.map((n) => [`${addrToText(n.addr)}:${n.port}`, `${addrToText(n.ioAddr)}:${n.ioPort}`]),
    MAIN_PORTS.map((port, i) => [`${MAIN_ADDR}:${port}`, `${IO_ADDRS[i]}:${IO_PORT}`]),
    'the epoch log records each node with its I/O address and port',
  )
  const list = await dog(1, ['node', 'list'])
  t.equal(list.status, 0)
  const listText = list.stdout.toString()
  t.match(listText, /^\s+Id\s+Host:Port\s+V-Nodes\s+Zone\n/)
  for (const port of MAIN_PORTS) t.match(listText, `${MAIN_ADDR}:${port}`, `node list: ${MAIN_ADDR}:${port}`)
  t.notMatch(listText, /127\.0\.0\.[234]/, 'node list: main addresses, no I/O address')
  for (const args of [
    ['node', 'info'],
    ['cluster', 'info'],
  ]) {
    const r = await dog(2, args)
    t.equal(r.status, 0, `dog ${args.join(' ')}`)
    if (args[0] === 'cluster')
      t.match(r.stdout.toString(), `[${MAIN_PORTS.map((p) => `${MAIN_ADDR}:${p}:128`).join(', ')}]`, 'cluster info: the main addresses')
    t.notMatch(r.stdout.toString(), /127\.0\.0\.[234]/, `dog ${args.join(' ')}: no I/O address`)
  }

  t.equal((await dog(0, ['vdi', 'create', 'full', String(FULL_BYTES)])).status, 0, 'vdi create full (copies 3)')
  const single = await dog(0, ['vdi', 'create', '-c', '1', '-z', String(SINGLE_BLOCK_SHIFT), 'single', String(SINGLE_BYTES)])
  t.equal(single.status, 0, `vdi create single (copies 1) ${single.stderr}`)
  await writeAndCheck('full', FULL_BYTES, 'I/O NICs up')
  await writeAndCheck('single', SINGLE_BYTES, 'I/O NICs up')
  const objects = (i: number) => new Set(fs.readdirSync(path.join(root, `n${i}`, 'obj')).filter((n) => /^[0-9a-f]{16}$/.test(n)))
  const onlyOnCut = [...objects(CUT)].filter((oid) => !objects(0).has(oid) && !objects(1).has(oid))
  t.ok(onlyOnCut.length > 0, `${onlyOnCut.length} objects of single are only on node ${CUT}: node 0 reads them from there`)

  const before = await sheepClientConns()
  for (let i = 0; i < NODES; i++) t.ok(to(before, IO_ADDRS[i]!, IO_PORT) > 0, `sheep connect to node ${i}'s I/O address ${IO_ADDRS[i]}:${IO_PORT}`)
  t.equal(toMainPorts(before), 0, 'no sheep connects to another sheep on its main port')

  // the cut: node 2's I/O address goes away under the connections open to it
  ns.delAddr(IO_ADDRS[CUT]!)
  await writeAndCheck('full', FULL_BYTES, `node ${CUT}'s I/O address gone`)
  await writeAndCheck('single', SINGLE_BYTES, `node ${CUT}'s I/O address gone`)
  t.match(log(0), `fallback to non-io connection: IPv4 ip:${MAIN_ADDR} port:${MAIN_PORTS[CUT]}`, 'node 0 logs the fallback')
  const during = await sheepClientConns()
  t.ok(to(during, MAIN_ADDR, MAIN_PORTS[CUT]!) > 0, `sheep reach node ${CUT} on its main port`)
  t.equal(toMainPorts(during), to(during, MAIN_ADDR, MAIN_PORTS[CUT]!), `only node ${CUT} is reached on its main port`)
  t.ok(
    await waitFor(async () => to(await sheepClientConns(), IO_ADDRS[CUT]!, IO_PORT) === 0, 15_000, 500),
    `no connection to node ${CUT}'s I/O address stays open`,
  )

  // the address comes back: so does the traffic
  ns.addAddr(IO_ADDRS[CUT]!)
  const back = `I/O channel of IPv4 ip:${MAIN_ADDR} port:${MAIN_PORTS[CUT]} is back: ${IO_ADDRS[CUT]}:${IO_PORT}`
  t.ok(await waitFor(() => log(0).includes(back), BACK_TIMEOUT_MS, 250), 'node 0 goes back to the I/O address')
  await writeAndCheck('single', SINGLE_BYTES, `node ${CUT}'s I/O address back`)
  t.ok(to(await sheepClientConns(), IO_ADDRS[CUT]!, IO_PORT) > 0, `sheep connect to node ${CUT}'s I/O address again`)
})
