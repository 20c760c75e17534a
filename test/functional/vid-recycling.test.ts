// VID recycling (`dog cluster format -R`, behaviour.md §15.2) on real sheep: new VDIs take the
// lowest free vid; a deleted VDI's vid comes back only once its whole family (snapshots, clones)
// is deleted, and then nothing of the old VDI is left — no inode, no data object, no ledger — so
// a VDI that gets the vid again reads zeros. The name of a working VDI deleted under live
// snapshots stays taken (the original's functional test 106). A whole-cluster restart keeps
// the rules (a family partly deleted before it is freed after it), and a node that joins later
// holds the same bitmaps and hands out the same vids. Without -R vids are never reused.
import t from 'tap'
import { sdHashVdi } from '../../lib/hash.js'
import { clusterInfo, getNodeList, readDelVdis, readVdis, statClusterProbe } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_RECYCLE_VID, SD_RES_SUCCESS } from '../../lib/proto.js'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'

const CLUSTER_NODES = 3
const VDI_SIZE = '16M'
const BLOCK_BYTES = 4096
/** The second data object of a 4 MiB-object VDI. */
const SECOND_OBJECT_AT = 8 * 1024 * 1024

t.test('vid recycling', async (t) => {
  const cluster = await startCluster(CLUSTER_NODES + 1, { start: CLUSTER_NODES })
  t.teardown(() => cluster.close())
  const run = (args: string[], opts: { node?: number; input?: Buffer } = {}) => dog(args, { port: cluster.ports[opts.node ?? 0], input: opts.input })
  /** `vdi list -r` as "type name snapid vid" rows, vid in hex as dog prints it. */
  const listed = async (node = 0): Promise<string[]> => {
    const r = await run(['vdi', 'list', '-r'], { node })
    t.equal(r.status, 0, r.stderr)
    return r.stdout
      .split('\n')
      .filter((row) => row !== '')
      .map((row) => row.split(' '))
      .map((f) => `${f[0]} ${f[1]} ${f[2]} ${f[7]}`)
  }
  const ok = async (args: string[], opts: { node?: number; input?: Buffer } = {}) => {
    const r = await run(args, opts)
    t.equal(r.status, 0, `dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  /** Object files of the running nodes whose vid space is one of `vids`, ledgers included. */
  const objectsOf = (vids: number[]) => [...objectCopies(cluster).keys()].filter((name) => vids.includes(Number((BigInt(`0x${name}`) >> 32n) & 0xffffffn)))
  const bitmapsOf = async (node: number) => Buffer.concat([await readVdis(cluster.conn(node)), await readDelVdis(cluster.conn(node))])

  await t.test('-R: vids of a wholly deleted family are reused, and nothing of it is left', async (t) => {
    await ok(['cluster', 'format', '-c', '2', '-R', '-f'])
    t.ok((await clusterInfo(cluster.conn(1))).flags & SD_CLUSTER_FLAG_RECYCLE_VID, 'every node keeps the flag')
    await ok(['vdi', 'create', 'test', VDI_SIZE])
    const pattern = Buffer.alloc(BLOCK_BYTES, 0x61)
    await ok(['vdi', 'write', 'test', '0', String(BLOCK_BYTES)], { input: pattern })
    await ok(['vdi', 'write', 'test', String(SECOND_OBJECT_AT), String(BLOCK_BYTES)], { input: pattern })
    await ok(['vdi', 'snapshot', 'test'])
    await ok(['vdi', 'snapshot', 'test'])
    t.same(await listed(), ['s test 1 1', 's test 2 2', '= test 0 3'], 'vids from 1 upwards, not from the hash of the name')
    t.ok(objectsOf([1]).length >= 2, 'the data objects are there')

    await ok(['vdi', 'delete', 'test'])
    t.same(await listed(), ['s test 1 1', 's test 2 2'], 'the working VDI is gone, its snapshots stay')
    const again = await run(['vdi', 'create', 'test', VDI_SIZE])
    t.equal(again.status, 1)
    t.equal(again.stderr, 'Failed to create VDI test: VDI exists already\n', 'the name stays taken while snapshots live (as the original)')
    await ok(['vdi', 'delete', 'test', '-s', '1'])
    t.same(await listed(), ['s test 2 2'])
    t.ok((await readVdis(cluster.conn(0)))[0] & 0b1110, 'vids 1-3 stay in use while one member lives')
    await ok(['vdi', 'delete', 'test', '-s', '2'])
    t.same(await listed(), [], 'the family is gone')
    t.same(objectsOf([1, 2, 3]), [], 'no inode, data object or ledger of the family is left on any node')
    for (let node = 0; node < CLUSTER_NODES; node++) {
      t.ok(
        (await bitmapsOf(node)).every((b) => b === 0),
        `node ${node}: no vid in use or deleted`,
      )
    }

    await ok(['vdi', 'create', 'test', VDI_SIZE])
    t.same(await listed(), ['= test 0 1'], 'a new VDI takes vid 1 again')
    for (const at of [0, SECOND_OBJECT_AT]) {
      const r = await ok(['vdi', 'read', 'test', String(at), String(BLOCK_BYTES)])
      t.ok(r.stdoutBytes.equals(Buffer.alloc(BLOCK_BYTES)), `reads zeros at ${at}: nothing of the old VDI shows through`)
    }
    await ok(['vdi', 'create', 'b', VDI_SIZE])
    await ok(['vdi', 'create', 'c', VDI_SIZE])
    await ok(['vdi', 'delete', 'b'])
    await ok(['vdi', 'create', 'd', VDI_SIZE])
    t.same(await listed(), ['= test 0 1', '= d 0 2', '= c 0 3'], 'd takes the vid b left')
  })

  await t.test('-R after a whole-cluster restart', async (t) => {
    await ok(['vdi', 'snapshot', 'c'])
    await ok(['vdi', 'delete', 'c'])
    t.same(await listed(), ['= test 0 1', '= d 0 2', 's c 1 3'], 'c: a snapshot at 3, its deleted working VDI holds 4')
    const before = await bitmapsOf(0)
    for (let node = CLUSTER_NODES - 1; node >= 0; node--) await cluster.stop(node)
    for (let node = 0; node < CLUSTER_NODES; node++) await cluster.start(node)
    t.ok(await waitFor(async () => (await statClusterProbe(cluster.conn(0)))?.result === SD_RES_SUCCESS, 30_000), 'the cluster runs again')
    t.ok((await bitmapsOf(0)).equals(before), 'the bitmaps come back from the inodes on disk')
    t.same(await listed(), ['= test 0 1', '= d 0 2', 's c 1 3'])
    await ok(['vdi', 'create', 'e', VDI_SIZE])
    t.same((await listed()).at(-1), '= e 0 5', 'the lowest free vid')
    await ok(['vdi', 'delete', 'c', '-s', '1'])
    t.same(objectsOf([3, 4]), [], 'the family deleted partly before the restart is collected after it')
    await ok(['vdi', 'create', 'f', VDI_SIZE])
    await ok(['vdi', 'create', 'g', VDI_SIZE])
    t.same(await listed(), ['= test 0 1', '= d 0 2', '= f 0 3', '= g 0 4', '= e 0 5'])
  })

  await t.test('-R: a node that joins later agrees on which vids are free', async (t) => {
    await ok(['vdi', 'delete', 'd'])
    await cluster.start(CLUSTER_NODES)
    t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === CLUSTER_NODES + 1, 30_000), 'the node joins')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.ok((await bitmapsOf(CLUSTER_NODES)).equals(await bitmapsOf(0)), 'it holds the bitmaps of the others')
    await ok(['vdi', 'create', 'h', VDI_SIZE], { node: CLUSTER_NODES })
    t.same(
      (await listed()).find((row) => row.includes(' h ')),
      '= h 0 2',
      'a create through it takes the vid d left',
    )
    await ok(['vdi', 'delete', 'f'], { node: CLUSTER_NODES })
    await ok(['vdi', 'create', 'i', VDI_SIZE])
    t.same(await listed(CLUSTER_NODES), ['= test 0 1', '= h 0 2', '= i 0 3', '= g 0 4', '= e 0 5'], 'a delete through it frees the vid on every node')
  })

  await t.test('default mode: deleted vids are never reused', async (t) => {
    await ok(['cluster', 'format', '-c', '2', '-f'])
    const hash = sdHashVdi('x')
    await ok(['vdi', 'create', 'x', VDI_SIZE])
    await ok(['vdi', 'delete', 'x'])
    await ok(['vdi', 'create', 'x', VDI_SIZE])
    t.same(await listed(), [`= x 0 ${(hash + 1).toString(16)}`], 'the hash slot stays taken: the next vid')
    await ok(['vdi', 'snapshot', 'x'])
    await ok(['vdi', 'delete', 'x'])
    await ok(['vdi', 'delete', 'x', '-s', '1'])
    t.same(await listed(), [])
    await ok(['vdi', 'create', 'x', VDI_SIZE])
    t.same(await listed(), [`= x 0 ${(hash + 3).toString(16)}`], 'a wholly deleted family keeps its vids')
    const deleted = await readDelVdis(cluster.conn(0))
    t.ok(
      [0, 1, 2].every((i) => deleted[(hash + i) >>> 3] & (1 << ((hash + i) & 7))),
      'and they stay marked deleted',
    )
  })
})
