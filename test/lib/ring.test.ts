// Tests for lib/ring.ts and lib/addr.ts: vnodes, replica selection on rings A, B and C of
// wire-protocol.md §10.4, AUTO_VNODES (§10.2) and address helpers / default zone (§7.1, §7.2).
import t from 'tap'
import { addrFromIPv4, addrToString, defaultZone, parseAddr } from '../../lib/addr.js'
import { sdHashNext } from '../../lib/hash.js'
import { HashRing, autoVnodes, countZones, nodeIdHash, type RingNode } from '../../lib/ring.js'

function node(ip: string, port: number, zone?: number, nrVnodes = 128): RingNode {
  const addr = addrFromIPv4(ip)
  return { addr, port, nrVnodes, zone: zone ?? defaultZone(addr), space: 0n }
}

function ports(ring: HashRing, oid: bigint, copies: number): number[] {
  return ring.replicasFor(oid, copies).map((n) => n.port)
}

function hosts(ring: HashRing, oid: bigint, copies: number): string[] {
  return ring.replicasFor(oid, copies).map((n) => addrToString(n.addr))
}

t.test('node hash and first vnodes of 127.0.0.1:7000', async (t) => {
  const h0 = nodeIdHash(node('127.0.0.1', 7000))
  t.equal(h0, 0x9cb3d6dd0a4c0f9fn)
  const h1 = sdHashNext(h0)
  t.equal(h1, 0x3af2cba6e538cdf3n)
  t.equal(sdHashNext(h1), 0xfd38432fd111924bn)
  t.equal(sdHashNext(sdHashNext(h1)), 0x2ad2bef8f506e35dn)
})

t.test('ring A: 127.0.0.1:7000 zone 0, :7001 zone 1, 2 copies', async (t) => {
  const ring = new HashRing([node('127.0.0.1', 7000, 0), node('127.0.0.1', 7001, 1)])
  t.equal(ring.nrZones, 2)
  t.equal(ring.nrVnodes, 256)
  t.notOk(ring.isEmpty)
  const want: [bigint, number[]][] = [
    [0x807c2b2500000000n, [7001, 7000]],
    [0x007c2b2500000000n, [7001, 7000]],
    [0x007c2b2500000001n, [7000, 7001]],
    [0x007c2b2500000002n, [7000, 7001]],
    [0x007c2b2500000003n, [7001, 7000]],
    [0x007c2b2500000004n, [7000, 7001]],
    [0x007c2b2500000005n, [7001, 7000]],
  ]
  for (const [oid, replicas] of want) t.same(ports(ring, oid, 2), replicas, oid.toString(16))
  t.same(ports(ring, 0x807c2b2500000000n, 3), [7001, 7000], 'copies capped at nrZones')
  t.same(ports(ring, 0x807c2b2500000000n, 1), [7001])
})

t.test('ring B: 127.0.0.1:7000..7004 zones 0..4, 3 copies', async (t) => {
  const all = [0, 1, 2, 3, 4].map((i) => node('127.0.0.1', 7000 + i, i))
  const cases: [RingNode[], number[], number[]][] = [
    [all, [7002, 7004, 7001], [7000, 7001, 7003]],
    [all.slice(1), [7002, 7004, 7001], [7001, 7003, 7002]],
    [all.slice(1, 4), [7002, 7001, 7003], [7001, 7003, 7002]],
  ]
  for (const [members, inode, data1] of cases) {
    const ring = new HashRing(members)
    const label = members.map((n) => n.port).join(',')
    t.same(ports(ring, 0x807c2b2500000000n, 3), inode, `${label}: 807c2b2500000000`)
    t.same(ports(ring, 0x007c2b2500000001n, 3), data1, `${label}: 007c2b2500000001`)
  }
  // Node order in the list does not matter.
  const reversed = new HashRing([...all].reverse())
  t.same(ports(reversed, 0x807c2b2500000000n, 3), [7002, 7004, 7001])
})

t.test('ring C: 192.168.0.1..4:7000, default zones, 3 copies', async (t) => {
  const ring = new HashRing([1, 2, 3, 4].map((i) => node(`192.168.0.${i}`, 7000)))
  t.equal(ring.nrZones, 4)
  t.same(hosts(ring, 0x807c2b2500000000n, 3), ['192.168.0.3', '192.168.0.4', '192.168.0.1'])
  t.same(hosts(ring, 0x007c2b2500000000n, 3), ['192.168.0.1', '192.168.0.2', '192.168.0.3'])
  t.same(hosts(ring, 0x007c2b2500000001n, 3), ['192.168.0.2', '192.168.0.3', '192.168.0.4'])
  t.same(hosts(ring, 0x007c2b2500000002n, 3), ['192.168.0.3', '192.168.0.2', '192.168.0.4'])
})

t.test('zones, gateways and empty rings', async (t) => {
  // Same IPv4 address and default zones: one zone, so one copy.
  const oneZone = new HashRing([node('127.0.0.1', 7000), node('127.0.0.1', 7001)])
  t.equal(oneZone.nrZones, 1)
  t.equal(oneZone.replicasFor(0x807c2b2500000000n, 3).length, 1)

  const withGateway = new HashRing([node('127.0.0.1', 7000, 0), node('127.0.0.1', 7001, 1), node('127.0.0.1', 7002, 2, 0)])
  t.equal(withGateway.nrZones, 2, 'a gateway has no zone on the ring')
  t.equal(withGateway.nrVnodes, 256)
  t.same(ports(withGateway, 0x807c2b2500000000n, 3), [7001, 7000])

  const empty = new HashRing([node('127.0.0.1', 7000, 0, 0)])
  t.ok(empty.isEmpty)
  t.equal(empty.nrZones, 0)
  t.same(empty.replicasFor(1n, 3), [])
  t.ok(new HashRing([]).isEmpty)

  const many = Array.from({ length: 40 }, (_, i) => node('10.0.0.1', 7000 + i, i, 4))
  t.equal(countZones(many), 31, 'zone counting stops at 31')
  const ring = new HashRing(many)
  const replicas = ring.replicasFor(0x007c2b2500000001n, 31)
  t.equal(replicas.length, 31)
  t.equal(new Set(replicas.map((n) => n.zone)).size, 31)
})

t.test("replicasFor returns the caller's node objects", async (t) => {
  const a = { ...node('127.0.0.1', 7000, 0), label: 'a' }
  const b = { ...node('127.0.0.1', 7001, 1), label: 'b' }
  const ring = new HashRing([a, b])
  const r = ring.replicasFor(0x807c2b2500000000n, 2)
  t.equal(r[0], b)
  t.equal(r[1]!.label, 'a')
})

t.test('AUTO_VNODES', async (t) => {
  const sp = (...s: bigint[]): { space: bigint }[] => s.map((space) => ({ space }))
  t.same(autoVnodes(sp(100n, 100n, 100n)), [128, 128, 128])
  t.same(autoVnodes(sp(0n, 100n, 300n)), [0, 64, 192], 'space 0 → 0, not in the average')
  t.same(autoVnodes(sp(1n, 2n)), [128, 256], 'avg is integer division (3 / 2 = 1)')
  t.same(autoVnodes(sp(1n, 3n, 5n, 1015n)), [0, 2, 2, 508], 'ties round to even')
  // float32 arithmetic: 207.49999 in double, 208 in float32 (computed with numpy.float32).
  t.same(autoVnodes(sp(44938684547n, 402279843344n, 525766772678n)), [18, 159, 208])
  t.same(autoVnodes(sp(380486823007n, 400106138789n, 240275840174n)), [143, 150, 90])
  t.same(autoVnodes(sp(0n, 0n)), [0, 0])
  t.same(autoVnodes([]), [])
})

t.test('addresses and default zone', async (t) => {
  const lo = addrFromIPv4('127.0.0.1')
  t.same([...lo], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 1])
  t.equal(addrToString(lo), '127.0.0.1')
  t.equal(defaultZone(lo), 16777343)
  t.equal(defaultZone(addrFromIPv4('192.168.0.1')), 0x0100a8c0)
  t.equal(defaultZone(addrFromIPv4('255.255.255.255')), 0xffffffff)
  t.throws(() => addrFromIPv4('1.2.3'))
  t.throws(() => addrFromIPv4('1.2.3.256'))

  t.same(parseAddr('10.1.2.3'), addrFromIPv4('10.1.2.3'))
  t.equal(parseAddr('nonsense'), undefined)
  t.equal(parseAddr('1:2:3'), undefined)
  t.equal(parseAddr('1::2::3'), undefined)
  const v6: [string, string][] = [
    ['::1', '::1'],
    ['::', '::'],
    ['fe80::1:2', 'fe80::1:2'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1::', '1::'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
  ]
  for (const [text, printed] of v6) {
    const a = parseAddr(text)
    t.ok(a, text)
    t.equal(addrToString(a!), printed, text)
  }
  // 0.x.x.x keeps bytes 0..12 zero: not printed as IPv4.
  const z = new Uint8Array(16)
  z[15] = 1
  t.equal(addrToString(z), '::1')
  z[13] = 2
  t.equal(addrToString(z), '::0.2.0.1')
})
