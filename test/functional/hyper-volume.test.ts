// Functional tests of hyper volumes (store_policy 1, wire-protocol.md §12.10) on three real sheep
// with 2 copies, through the real dog: a 16 PiB volume written at every PiB (offsets past 2^53,
// which a number cannot hold) and read back byte for byte, its B-tree root checked byte for byte,
// `vdi list` and `vdi object map`; a second volume whose root is filled (with entries of vid 0,
// written straight into the inode: 524 287 commits would take hours) so that dog's next write
// turns it into a depth-2 tree of two node objects, written past and inside them; then a node
// killed and restarted (recovery of data, inode and B-tree node objects) and a whole-cluster
// restart, after each of which every byte reads back. The node splits that need a full node
// object are tested in test/lib/inode-index.test.ts.
import crypto from 'node:crypto'
import t, { type Test } from 'tap'
import {
  BTREE_HEADER_SIZE,
  BTREE_INDIRECT_DEPTH,
  BTREE_LEAF_DEPTH,
  BTREE_MAGIC,
  BTREE_MAX_LEAF_ENTRIES,
  BTREE_ROOT_AT,
  BTREE_ROOT_WRITE_AT,
  LeafEntries,
  decodeBtreeHeader,
  decodeIndirectEntries,
  encodeBtreeHeader,
} from '../../lib/inode-index.js'
import { decodeInodeHeader, SD_INODE_HEADER_SIZE } from '../../lib/inode.js'
import { oidToHex, vidToBtreeOid, vidToVdiOid } from '../../lib/oid.js'
import { SD_RES_SUCCESS } from '../../lib/proto.js'
import { getNodeList, getVdiInfo, readObj, statClusterProbe, writeObj } from '../../lib/sheep-api.js'
import { objectCopies, startCluster, type TestCluster, waitForRecovery } from '../../harness/cluster.js'
import { type DogResult, dog, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const PiB = 2n ** 50n
const OBJECT_SIZE = 4n * BigInt(MiB)
const COPIES = 2

/** What has been written where: offset → bytes, and the data object indexes that hold it. */
class Written {
  readonly ranges = new Map<bigint, Buffer>()
  readonly objects = new Set<number>()

  add(offset: bigint, data: Buffer): void {
    this.ranges.set(offset, data)
    for (let idx = offset / OBJECT_SIZE; idx <= (offset + BigInt(data.length) - 1n) / OBJECT_SIZE; idx++) this.objects.add(Number(idx))
  }

  sortedObjects(): number[] {
    return [...this.objects].sort((a, b) => a - b)
  }
}

// a long test (about 40 dog runs against a 3-node cluster): more than the default file timeout under load
t.setTimeout(600_000)

t.test('hyper volumes: 16 PiB written at every PiB, depth 2, recovery, whole-cluster restart', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const ok = async (t: Test, args: string[], opts: { input?: Buffer; via?: number } = {}): Promise<DogResult> => {
    const r = await dog(args, { port: cluster.ports[opts.via ?? 0], input: opts.input })
    t.equal(r.status, 0, `dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  await ok(t, ['cluster', 'format', '-c', String(COPIES)])

  const test = new Written()
  const deep = new Written()
  const write = async (t: Test, vdi: string, record: Written, offset: bigint, data: Buffer): Promise<void> => {
    await ok(t, ['vdi', 'write', vdi, offset.toString(), String(data.length)], { input: data })
    record.add(offset, data)
  }
  /**
   * Every range written (or every `step`-th, after a restart: a dog run each costs) reads back
   * through node `via`.
   */
  const readBack = async (t: Test, vdi: string, record: Written, via: number, step = 1): Promise<void> => {
    let same = 0
    const ranges = [...record.ranges].filter((_, i) => i % step === 0)
    for (const [offset, data] of ranges) {
      const r = await dog(['vdi', 'read', vdi, offset.toString(), String(data.length)], { port: cluster.ports[via] })
      if (r.status === 0 && r.stdoutBytes.equals(data)) same++
      else t.fail(`${vdi} @${offset}: status ${r.status} ${r.stderr}`)
    }
    t.equal(same, ranges.length, `${step === 1 ? 'every range' : `every ${step}th range`} of ${vdi} reads back through node ${via}`)
  }

  await t.test('create 16P -y, write 2 MiB at every PiB, read back', async (t) => {
    await ok(t, ['vdi', 'create', 'test', '16P', '-y'])
    const vid = (await getVdiInfo(cluster.conn(0), 'test')).vid
    const header = decodeInodeHeader(await readObj(cluster.conn(0), vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE))
    t.same([header.vdiSize, header.storePolicy, header.blockSizeShift, header.btreeCounter], [16n * PiB, 1, 22, 0])
    const fresh = await readObj(cluster.conn(0), vidToVdiOid(vid), BTREE_ROOT_AT, BTREE_HEADER_SIZE)
    t.equal(fresh.toString('hex'), encodeBtreeHeader(BTREE_LEAF_DEPTH, 0).toString('hex'), 'the sheep initialised an empty root (sd_inode_init)')

    for (let i = 0n; i < 16n; i++) await write(t, 'test', test, i * PiB, crypto.randomBytes(2 * MiB))
    // past 2^53 (not a safe integer; dog parses sizes through a double, as the original's strtod
    // does, so this is as fine as its offsets get there), inside an object already there
    const unsafe = 2n ** 53n + 3n * BigInt(MiB) + 2n
    await write(t, 'test', test, unsafe, Buffer.from('hyper'))
    const around = await ok(t, ['vdi', 'read', 'test', (unsafe - 2n).toString(), '9'])
    t.equal(around.stdoutBytes.toString('hex'), Buffer.from('\0\0hyper\0\0').toString('hex'), 'exactly at 2^53 + 3 MiB + 2')
    // a write across an object boundary, and one ending at the very end of the volume
    await write(t, 'test', test, 15n * PiB + 3n * BigInt(MiB), crypto.randomBytes(3 * MiB))
    await write(t, 'test', test, 16n * PiB - 1024n, crypto.randomBytes(1024))
    await readBack(t, 'test', test, 0)

    const zerosAfter = await ok(t, ['vdi', 'read', 'test', `${5n * PiB + 2n * BigInt(MiB)}`, '2M'])
    t.ok(zerosAfter.stdoutBytes.equals(Buffer.alloc(2 * MiB)), 'the rest of a written object reads as zeros')
    const unallocated = await ok(t, ['vdi', 'read', 'test', `${3n * PiB + 64n * BigInt(MiB)}`, '1M'])
    t.ok(unallocated.stdoutBytes.equals(Buffer.alloc(MiB)), 'an unallocated object reads as zeros')
    const past = await dog(['vdi', 'write', 'test', `${16n * PiB + 4n}`], { port: cluster.ports[0], input: Buffer.alloc(1) })
    t.same([past.status, past.stderr], [1, 'Write offset is beyond the end of the VDI\n'])

    // the root: the original's bytes (header, then (idx, vid) sorted by idx), zeros after them
    const objects = test.sortedObjects()
    const root = await readObj(cluster.conn(0), vidToVdiOid(vid), BTREE_ROOT_WRITE_AT, 8 + BTREE_HEADER_SIZE + (objects.length + 1) * 8)
    const expected = new LeafEntries()
    for (const idx of objects) expected.insert(expected.count, idx, vid)
    t.equal(
      root.toString('hex'),
      Buffer.concat([Buffer.alloc(8), encodeBtreeHeader(BTREE_LEAF_DEPTH, objects.length), expected.encode(), Buffer.alloc(8)]).toString('hex'),
      'the B-tree root holds one entry per object written, sorted',
    )
    const after = decodeInodeHeader(await readObj(cluster.conn(0), vidToVdiOid(vid), 0, SD_INODE_HEADER_SIZE))
    t.same(after, header, 'the inode header is unchanged')

    const list = await ok(t, ['vdi', 'list', '-r', 'test'])
    t.match(list.stdout, new RegExp(`^= test 0 ${16n * PiB} ${BigInt(objects.length) * OBJECT_SIZE} 0 \\d+ ${vid.toString(16)} ${COPIES}  22\n$`))
    const map = await ok(t, ['vdi', 'object', 'map', 'test'])
    t.equal(map.stdout, `Index       VID\n${objects.map((idx) => `${String(idx).padStart(8, '0')} ${vid.toString(16).padStart(8)}\n`).join('')}`)
    const one = await ok(t, ['vdi', 'object', 'map', 'test', '-i', String(objects[3])])
    t.equal(one.stdout, `Index       VID\n${String(objects[3]).padStart(8, '0')} ${vid.toString(16).padStart(8)}\n`)
  })

  await t.test('a full root becomes a depth-2 tree of two node objects', async (t) => {
    await ok(t, ['vdi', 'create', 'deep', '16P', '-y'])
    const vid = (await getVdiInfo(cluster.conn(0), 'deep')).vid
    const inodeOid = vidToVdiOid(vid)
    // a full root of entries of vid 0 (recorded, unallocated) at idx 2^31 + k
    const filler = new LeafEntries(BTREE_MAX_LEAF_ENTRIES)
    for (let k = 0; k < BTREE_MAX_LEAF_ENTRIES; k++) filler.insert(k, 2 ** 31 + k, 0)
    const lead = await readObj(cluster.conn(0), inodeOid, BTREE_ROOT_WRITE_AT, 8)
    await writeObj(cluster.conn(0), inodeOid, BTREE_ROOT_WRITE_AT, Buffer.concat([lead, encodeBtreeHeader(BTREE_LEAF_DEPTH, filler.count), filler.encode()]), {
      copies: COPIES,
    })

    await write(t, 'deep', deep, 0n, crypto.randomBytes(2 * MiB))
    const half = Math.floor(BTREE_MAX_LEAF_ENTRIES / 2)
    const lowerOid = vidToBtreeOid(vid, 0)
    const upperOid = vidToBtreeOid(vid, 1)
    const rootHead = decodeBtreeHeader(await readObj(cluster.conn(0), inodeOid, BTREE_ROOT_AT, BTREE_HEADER_SIZE))
    t.same(rootHead, { magic: BTREE_MAGIC, depth: BTREE_INDIRECT_DEPTH, entries: 2 }, 'the root points at two nodes')
    const pointers = decodeIndirectEntries(await readObj(cluster.conn(0), inodeOid, BTREE_ROOT_AT + BTREE_HEADER_SIZE, 32))
    t.same(pointers, [
      { maxIdx: 2 ** 31 + half - 1, oid: lowerOid },
      { maxIdx: 2 ** 31 + BTREE_MAX_LEAF_ENTRIES - 1, oid: upperOid },
    ])
    t.equal(decodeInodeHeader(await readObj(cluster.conn(0), inodeOid, 0, SD_INODE_HEADER_SIZE)).btreeCounter, 2, 'btree_counter counts them')
    const lower = await readObj(cluster.conn(0), lowerOid, 0, BTREE_HEADER_SIZE + 16)
    const lowerStart = new LeafEntries()
    lowerStart.insert(0, 0, vid)
    lowerStart.insert(1, 2 ** 31, 0)
    t.equal(
      lower.toString('hex'),
      Buffer.concat([encodeBtreeHeader(BTREE_LEAF_DEPTH, half + 1), lowerStart.encode()]).toString('hex'),
      'the lower node: the first half, with idx 0 inserted in front',
    )
    const upper = decodeBtreeHeader(await readObj(cluster.conn(0), upperOid, 0, BTREE_HEADER_SIZE))
    t.same(upper, { magic: BTREE_MAGIC, depth: BTREE_LEAF_DEPTH, entries: BTREE_MAX_LEAF_ENTRIES - half })

    // inside the lower node's range, and past the last node (whose max then moves up)
    for (const i of [1n, 6n, 11n, 15n]) await write(t, 'deep', deep, i * PiB + BigInt(i) * OBJECT_SIZE, crypto.randomBytes(MiB))
    await readBack(t, 'deep', deep, 1)
    const moved = decodeIndirectEntries(await readObj(cluster.conn(0), inodeOid, BTREE_ROOT_AT + BTREE_HEADER_SIZE, 32))
    t.equal(moved[1].maxIdx, deep.sortedObjects().at(-1), "the last node's max moved up")
    const map = await ok(t, ['vdi', 'object', 'map', 'deep'])
    t.equal(map.stdout.split('\n').length - 2, deep.objects.size, 'object map: the objects written, not the entries of vid 0')
    const list = await ok(t, ['vdi', 'list', '-r', 'deep'])
    t.match(list.stdout, new RegExp(`^= deep 0 ${16n * PiB} ${BigInt(deep.objects.size) * OBJECT_SIZE} 0 `))
  })

  await t.test('a node killed and restarted: recovery brings every object back, B-tree nodes included', async (t) => {
    await cluster.stop(2, 'SIGKILL')
    t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 2, 5000), 'the node is seen to leave')
    await readBack(t, 'test', test, 1, 3)
    await readBack(t, 'deep', deep, 1)
    t.ok(await waitForRecovery(cluster), 'recovery settles on two nodes')
    expectCopies(t, cluster, 2)
    await cluster.start(2)
    t.ok(await waitForRecovery(cluster), 'recovery settles after the restart')
    expectCopies(t, cluster, 3)
    await readBack(t, 'test', test, 2, 3)
    await readBack(t, 'deep', deep, 2)
  })

  await t.test('a whole-cluster restart keeps every byte', async (t) => {
    for (let i = 0; i < 3; i++) await cluster.stop(i)
    for (let i = 0; i < 3; i++) await cluster.start(i)
    t.ok(await waitFor(async () => (await statClusterProbe(cluster.conn(0)))?.result === SD_RES_SUCCESS, 20_000), 'the cluster runs again')
    await readBack(t, 'test', test, 0, 3)
    await readBack(t, 'deep', deep, 1)
    await write(t, 'deep', deep, 7n * PiB + 64n * OBJECT_SIZE, crypto.randomBytes(MiB))
    await write(t, 'test', test, 9n * PiB + 64n * OBJECT_SIZE, crypto.randomBytes(MiB))
    await readBack(t, 'deep', deep, 2)
    await readBack(t, 'test', test, 2, 3)
    const list = await ok(t, ['vdi', 'list', '-r'])
    t.match(list.stdout, new RegExp(`^= deep 0 ${16n * PiB} ${BigInt(deep.objects.size) * OBJECT_SIZE} 0 `, 'm'))
    t.match(list.stdout, new RegExp(`^= test 0 ${16n * PiB} ${BigInt(test.objects.size) * OBJECT_SIZE} 0 `, 'm'))
  })
})

/** Every object on disk on `nodes` nodes at most `COPIES`: the B-tree node objects too. */
function expectCopies(t: Test, cluster: TestCluster, members: number): void {
  const copies = objectCopies(cluster)
  const want = Math.min(COPIES, members)
  const wrong = [...copies].filter(([, n]) => n !== want)
  t.same(wrong, [], `every object on ${want} nodes`)
  const nodes = [...copies.keys()].filter((name) => name.startsWith('1'))
  t.equal(nodes.length, 2, `the two B-tree node objects are among them (${nodes.map((n) => oidToHex(BigInt(`0x${n}`))).join(', ')})`)
}
