// Functional tests of `dog vdi object location` and `dog vdi track` on a real 3-node cluster
// formatted with -c 2, like the capture's: which nodes answer that they have the inode and a data
// object (checked against the object files on disk), where the hash ring says they belong, and the
// placement history after a fourth node joins (a second epoch). The capture's ports differ from
// ours, so its lines are checked against the same templates rather than compared verbatim.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { HashRing } from '../../lib/ring.js'
import { getNodeList } from '../../lib/sheep-api.js'
import { nodeAddrText } from '../../lib/structs.js'
import { findCommand, loadFixture } from '../helpers/fixture.js'
import { startCluster, waitForRecovery, type TestCluster } from '../../harness/cluster.js'
import { dog, type DogResult } from '../../harness/sheep.js'

const fixture = loadFixture()
const MiB = 1024 * 1024
const COPIES = 2
const INODE_OID = '80ed202c00000000'
const DATA_OID = '00ed202b00000000'

/** The 6 MiB the capture wrote: byte i = i mod 251. */
function capturePattern(length: number): Buffer {
  const data = Buffer.alloc(length)
  for (let i = 0; i < length; i++) data[i] = i % 251
  return data
}

/** Node addresses in node-list order and the ones the ring picks for an oid, from the cluster itself. */
async function placement(cluster: TestCluster, oid: string): Promise<{ members: string[]; expected: string[] }> {
  const { nodes } = await getNodeList(cluster.conn(0))
  return {
    members: nodes.map(nodeAddrText),
    expected: new HashRing(nodes).replicasFor(BigInt(`0x${oid}`), COPIES).map(nodeAddrText),
  }
}

/** Addresses of the running nodes that store the object file. */
function holders(cluster: TestCluster, oid: string): string[] {
  return cluster.nodes.flatMap((node) => (node && fs.existsSync(path.join(node.dir, 'obj', oid)) ? [`127.0.0.1:${node.port}`] : []))
}

/** The body of `object location`: one line per member, then where the object belongs. */
function locationBody(members: string[], has: (address: string) => boolean, expected: string[]): string {
  return (
    members.map((address) => `${address} ${has(address) ? 'has' : "doesn't have"} the object\n`).join('') +
    `\nAccording to sheepdog algorithm, the object should be located at:\n${expected.join(' ')}\n`
  )
}

/** One epoch entry of `vdi track`. */
function trackEntry(oid: string, epoch: number, nodes: string[]): string {
  return `\nobj ${oid} locations at epoch ${epoch}, copies = ${COPIES}\n${'-'.repeat(51)}\n${nodes.map((n) => `${n}\n`).join('')}`
}

t.test('dog vdi object location and vdi track on a 3-node cluster', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const ok = async (args: string[], input?: Buffer): Promise<DogResult> => {
    const r = await dog(args, { port, input })
    t.equal(r.status, 0, `dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  await ok(['cluster', 'format', '-c', String(COPIES)])
  await ok(['vdi', 'create', 'alpha', '16M'])
  await ok(['vdi', 'write', 'alpha', '0', '6M'], capturePattern(6 * MiB))
  await ok(['vdi', 'snapshot', '-s', 'snap1', 'alpha'])

  await t.test('object location of the inode', async (t) => {
    const original = findCommand(fixture, 'vdi', 'object', 'location').stdout ?? ''
    const { members, expected } = await placement(cluster, INODE_OID)
    const stored = holders(cluster, INODE_OID)
    t.same([...stored].sort(), [...expected].sort(), 'the inode is stored where the ring puts it')
    const r = await ok(['vdi', 'object', 'location', 'alpha'])
    const header = 'Looking for the inode object 0xed202c with 3 nodes\n\n'
    t.equal(r.stdout, header + locationBody(members, (a) => stored.includes(a), expected))
    // the capture's cluster: ports 7000..7002, the inode on 7001 and 7002
    const captured = ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002']
    t.equal(original, header + locationBody(captured, (a) => a !== '127.0.0.1:7000', captured.slice(1)), 'the capture follows the same template')
  })

  await t.test('object location of data objects', async (t) => {
    const { members, expected } = await placement(cluster, DATA_OID)
    const stored = holders(cluster, DATA_OID)
    t.same([...stored].sort(), [...expected].sort())
    const r = await ok(['vdi', 'object', 'location', '-i', '0', 'alpha'])
    t.equal(
      r.stdout,
      `Looking for the object ${DATA_OID} (vid 0xed202c idx 0, 2 copies) with 3 nodes\n\n` + locationBody(members, (a) => stored.includes(a), expected),
    )
    const unallocated = await ok(['vdi', 'object', 'location', '-i', '3', 'alpha'])
    t.equal(unallocated.stdout, 'The inode object 0xed202c idx 3 is not allocated\n')
    const tooLarge = await dog(['vdi', 'object', 'location', '-i', '0x100000000', 'alpha'], { port })
    t.equal(tooLarge.status, 1)
    t.equal(tooLarge.stdout, 'The offset is too large!\n')
    const snapshot = await ok(['vdi', 'object', 'location', '-s', 'snap1', 'alpha'])
    t.match(snapshot.stdout, /^Looking for the inode object 0xed202b with 3 nodes\n/, '-s: the snapshot inode')
    const missing = await dog(['vdi', 'object', 'location', 'ghost'], { port })
    t.equal(missing.status, 1)
    t.equal(missing.stderr, 'Failed to open VDI ghost (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: no inode objects\n')
  })

  await t.test('track at one epoch', async (t) => {
    const { expected } = await placement(cluster, DATA_OID)
    const r = await ok(['vdi', 'track', '-i', '0', 'alpha'])
    const header = `Tracking the object ${DATA_OID} (the inode vid 0xed202c idx 0) with 3 nodes\n`
    t.equal(r.stdout, header + trackEntry(DATA_OID, 1, expected))
    t.equal(
      findCommand(fixture, 'vdi', 'track').stdout,
      header + trackEntry(DATA_OID, 1, ['127.0.0.1:7001', '127.0.0.1:7000']),
      'the capture follows the same template',
    )
  })

  await t.test('track after a fourth node joined: newest epoch first', async (t) => {
    const before = await placement(cluster, DATA_OID)
    const inodeBefore = await placement(cluster, INODE_OID)
    await cluster.start(3)
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    const after = await placement(cluster, DATA_OID)
    t.equal(after.members.length, 4)
    const data = await ok(['vdi', 'track', '-i', '0', 'alpha'])
    t.equal(
      data.stdout,
      `Tracking the object ${DATA_OID} (the inode vid 0xed202c idx 0) with 4 nodes\n` +
        trackEntry(DATA_OID, 2, after.expected) +
        trackEntry(DATA_OID, 1, before.expected),
    )
    const inode = await ok(['vdi', 'track', 'alpha'])
    const inodeAfter = await placement(cluster, INODE_OID)
    t.equal(
      inode.stdout,
      'Tracking the inode object 0xed202c with 4 nodes\n' + trackEntry(INODE_OID, 2, inodeAfter.expected) + trackEntry(INODE_OID, 1, inodeBefore.expected),
    )
    const byOid = await ok(['vdi', 'track', '-o', DATA_OID, 'alpha'])
    t.match(byOid.stdout, new RegExp(`^Tracking the object ${DATA_OID} \\(the inode vid 0xed202c\\) with 4 nodes\n\nobj ${DATA_OID} locations at epoch 2`))
    // after recovery the objects are where the new ring puts them
    const stored = holders(cluster, DATA_OID)
    t.same([...stored].sort(), [...after.expected].sort(), 'recovery moved the object to its new place')
    const location = await ok(['vdi', 'object', 'location', '-i', '0', 'alpha'])
    t.equal(
      location.stdout,
      `Looking for the object ${DATA_OID} (vid 0xed202c idx 0, 2 copies) with 4 nodes\n\n` +
        locationBody(after.members, (a) => stored.includes(a), after.expected),
    )
  })
})
