// `dog vdi delete` of hyper volumes (store_policy 1, wire-protocol.md §12.7) on one real sheep:
// no client clears a B-tree, so the sheep removes the data objects the volume owns — those a
// snapshot owns stay, and the snapshot still reads them — and its B-tree node objects, and
// empties the inode's index (a snapshot of a depth-2 tree has node objects of its own, which
// its writes change and its deletion removes, leaving the base's alone); once the snapshot is deleted too no data object is left. With
// VID recycling (-R) the inodes go as well and the vids are free again.
import t, { type Test } from 'tap'
import {
  BTREE_LEAF_DEPTH,
  BTREE_MAX_LEAF_ENTRIES,
  BTREE_ROOT_WRITE_AT,
  HYPER_VOLUME_STORE_POLICY,
  LeafEntries,
  encodeBtreeHeader,
} from '../../lib/inode-index.js'
import { oidToHex, vidToBtreeOid, vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import { getVdiInfo, newVdi, readObj, readVdis, writeObj } from '../../lib/sheep-api.js'
import { objectCopies, startCluster } from '../../harness/cluster.js'
import { type DogResult, dog } from '../../harness/sheep.js'

const PiB = 2n ** 50n
/** log2 of the 4 MiB objects: PiB offsets are data object indexes 2^28 apart. */
const OBJECT_SHIFT = 22n
const BLOCK_BYTES = 4096

t.test('deleting a hyper volume removes what it owns', async (t) => {
  const cluster = await startCluster(1)
  t.teardown(() => cluster.close())
  const ok = async (t: Test, args: string[], input?: Buffer): Promise<DogResult> => {
    const r = await dog(args, { port: cluster.ports[0], input })
    t.equal(r.status, 0, `dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  const stored = (oid: bigint) => objectCopies(cluster).has(oidToHex(oid))
  const dataObjectsOf = (vid: number) => [...objectCopies(cluster).keys()].filter((name) => BigInt(`0x${name}`) >> 32n === BigInt(vid))
  const idxAt = (offset: bigint) => Number(offset >> OBJECT_SHIFT)
  const block = (byte: number) => Buffer.alloc(BLOCK_BYTES, byte)
  /** dog refuses to snapshot a hyper volume (as the original); QEMU sends NEW_VDI with a snap id. */
  const snapshot = (name: string, working: number) =>
    newVdi(cluster.conn(0), { name, vdiSize: 16n * PiB, baseVdiId: working, storePolicy: HYPER_VOLUME_STORE_POLICY, snapid: 1, copies: 1 })

  await t.test('a flat root: the working volume, then its snapshot', async (t) => {
    await ok(t, ['cluster', 'format', '-c', '1', '-f'])
    await ok(t, ['vdi', 'create', 'hv', '16P', '-y'])
    for (const at of [0n, PiB, 2n * PiB]) await ok(t, ['vdi', 'write', 'hv', String(at), String(BLOCK_BYTES)], block(0x61))
    const first = (await getVdiInfo(cluster.conn(0), 'hv')).vid
    await snapshot('hv', first)
    const second = (await getVdiInfo(cluster.conn(0), 'hv')).vid
    // copy-on-write at 0, a new object at 3 PiB: the working volume owns these two
    for (const at of [0n, 3n * PiB]) await ok(t, ['vdi', 'write', 'hv', String(at), String(BLOCK_BYTES)], block(0x62))
    t.same(dataObjectsOf(second).length, 2, 'the working volume owns two objects')
    t.same(dataObjectsOf(first).length, 3, 'the snapshot owns three')

    await ok(t, ['vdi', 'delete', 'hv'])
    t.same(dataObjectsOf(second), [], "the working volume's objects are removed")
    t.same(dataObjectsOf(first).length, 3, "the snapshot's stay")
    const inode = await readObj(cluster.conn(0), vidToVdiOid(second), 0, 8)
    t.equal(inode.toString('latin1').replace(/\0+$/, ''), '', 'the inode keeps no name')
    for (const at of [0n, PiB, 2n * PiB]) {
      const r = await ok(t, ['vdi', 'read', 'hv', '-s', '1', String(at), String(BLOCK_BYTES)])
      t.ok(r.stdoutBytes.equals(block(0x61)), `the snapshot still reads its data at ${at}`)
    }
    await ok(t, ['vdi', 'delete', 'hv', '-s', '1'])
    t.same(dataObjectsOf(first), [], "the snapshot's objects are removed")
    t.same(objectCopies(cluster).size, 2, 'only the two (nameless) inodes are left')
    t.ok(stored(vidToVdiOid(first)) && !stored(vidToDataOid(first, idxAt(PiB))))
  })

  await t.test('a depth-2 tree: its node objects go too', async (t) => {
    await ok(t, ['vdi', 'create', 'deep', '16P', '-y'])
    const vid = (await getVdiInfo(cluster.conn(0), 'deep')).vid
    const inodeOid = vidToVdiOid(vid)
    // a full root of entries of vid 0 (recorded, unallocated): dog's next write splits it
    const filler = new LeafEntries(BTREE_MAX_LEAF_ENTRIES)
    for (let k = 0; k < BTREE_MAX_LEAF_ENTRIES; k++) filler.insert(k, 2 ** 31 + k, 0)
    const lead = await readObj(cluster.conn(0), inodeOid, BTREE_ROOT_WRITE_AT, 8)
    await writeObj(cluster.conn(0), inodeOid, BTREE_ROOT_WRITE_AT, Buffer.concat([lead, encodeBtreeHeader(BTREE_LEAF_DEPTH, filler.count), filler.encode()]), {
      copies: 1,
    })
    for (const at of [0n, 15n * PiB]) await ok(t, ['vdi', 'write', 'deep', String(at), String(BLOCK_BYTES)], block(0x63))
    const nodes = [vidToBtreeOid(vid, 0), vidToBtreeOid(vid, 1)]
    t.ok(nodes.every(stored), 'the root was split into two node objects')
    t.same(dataObjectsOf(vid).length, 2)

    await snapshot('deep', vid)
    const working = (await getVdiInfo(cluster.conn(0), 'deep')).vid
    const workingNodes = [vidToBtreeOid(working, 0), vidToBtreeOid(working, 1)]
    t.ok(workingNodes.every(stored), 'the new working volume gets node objects of its own')
    await ok(t, ['vdi', 'write', 'deep', String(15n * PiB), String(BLOCK_BYTES)], block(0x65))
    const readAt = async (args: string[], at: bigint) => (await ok(t, ['vdi', 'read', ...args, String(at), String(BLOCK_BYTES)])).stdoutBytes
    t.ok((await readAt(['deep'], 15n * PiB)).equals(block(0x65)), 'the working volume reads its write')
    t.ok((await readAt(['deep', '-s', '1'], 15n * PiB)).equals(block(0x63)), 'the snapshot keeps its data: its index did not change')

    await ok(t, ['vdi', 'delete', 'deep'])
    t.same(dataObjectsOf(working), [], "the working volume's object is removed")
    t.notOk(workingNodes.some(stored), 'and its node objects')
    t.ok(nodes.every(stored), "the snapshot's node objects stay")
    for (const at of [0n, 15n * PiB]) t.ok((await readAt(['deep', '-s', '1'], at)).equals(block(0x63)), `the snapshot reads at ${at}`)
    await ok(t, ['vdi', 'delete', 'deep', '-s', '1'])
    t.same(dataObjectsOf(vid), [], "the snapshot's data objects are removed")
    t.notOk(nodes.some(stored), 'and its node objects')
  })

  await t.test('with -R nothing of a deleted hyper volume is left', async (t) => {
    await ok(t, ['cluster', 'format', '-c', '1', '-R', '-f'])
    await ok(t, ['vdi', 'create', 'hv', '16P', '-y'])
    for (const at of [0n, 7n * PiB]) await ok(t, ['vdi', 'write', 'hv', String(at), String(BLOCK_BYTES)], block(0x64))
    t.equal(objectCopies(cluster).size, 3, 'an inode and two data objects')
    await ok(t, ['vdi', 'delete', 'hv'])
    t.equal(objectCopies(cluster).size, 0, 'no object is left')
    t.ok(
      (await readVdis(cluster.conn(0))).every((b) => b === 0),
      'and its vid is free',
    )
  })
})
