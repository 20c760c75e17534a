// Inode coherence of shared VDI locks over the wire (behaviour.md §10, wire-protocol.md §11.6),
// as multipath tgt uses it: two gateway nodes hold a shared lock on one VDI; an index update
// through one invalidates the other, whose I/O flagged CMD_TGT then answers INODE_INVALIDATED
// until it re-reads the whole inode (header and index). Clients without CMD_TGT are unaffected.
import t from 'tap'
import type { SheepConnection } from '../../lib/client.js'
import { REQ_OBJ } from '../../lib/codec.js'
import { OLD_SD_INODE_SIZE, SD_INODE_HEADER_SIZE, vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import {
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_CLUSTER_FLAG_USE_LOCK,
  SD_FLAG_CMD_DIRECT,
  SD_FLAG_CMD_TGT,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_READ_OBJ,
  SD_OP_WRITE_OBJ,
  SD_RES_INODE_INVALIDATED,
  SD_RES_SUCCESS,
} from '../../lib/proto.js'
import { getVdiCopies, lockVdi, makeFs, newVdi, releaseVdi } from '../../lib/sheep-api.js'
import { startCluster } from '../../harness/cluster.js'
import { waitFor } from '../../harness/sheep.js'

const MODIFIED = 1
const SHARED = 2
const INVALIDATED = 3
const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n

t.test('shared locks keep the inode coherent between tgt gateways', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  const [gw0, gw1] = [cluster.conn(0), cluster.conn(1)]
  await makeFs(gw0, { ctime: ctimeNow(), copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES | SD_CLUSTER_FLAG_USE_LOCK, store: 'plain' })
  const { vid } = await newVdi(gw0, { name: 'mp', vdiSize: 16n << 20n })
  const inodeOid = vidToVdiOid(vid)

  /** The participants' states of `mp`, once both nodes have applied the same broadcasts. */
  const states = async (): Promise<number[]> => {
    const of = async (c: SheepConnection) => (await getVdiCopies(c)).find((s) => s.vid === vid)?.participantStates ?? []
    let seen: number[] = []
    await waitFor(async () => {
      const [a, b] = await Promise.all([of(gw0), of(gw1)])
      seen = a
      return JSON.stringify(a) === JSON.stringify(b)
    }, 2000)
    return seen
  }
  const tgtRead = (c: SheepConnection, offset: number, length: number, flags = SD_FLAG_CMD_TGT) =>
    c.request({ opcode: SD_OP_READ_OBJ, flags, variant: REQ_OBJ, fields: { oid: inodeOid, offset }, readLength: length })
  const refresh = (c: SheepConnection) => tgtRead(c, 0, OLD_SD_INODE_SIZE)
  /** What tgt does for a new object: create it, then write its index entry. */
  const tgtAllocate = async (c: SheepConnection, idx: number) => {
    const create = await c.request({
      opcode: SD_OP_CREATE_AND_WRITE_OBJ,
      flags: SD_FLAG_CMD_TGT | SD_FLAG_CMD_DIRECT,
      variant: REQ_OBJ,
      fields: { oid: vidToDataOid(vid, idx), offset: 0 },
      data: Buffer.alloc(512, idx),
    })
    if (create.rsp.result !== SD_RES_SUCCESS) return create.rsp.result
    const entry = Buffer.alloc(4)
    entry.writeUInt32LE(vid)
    const index = await c.request({
      opcode: SD_OP_WRITE_OBJ,
      flags: SD_FLAG_CMD_TGT | SD_FLAG_CMD_DIRECT,
      variant: REQ_OBJ,
      fields: { oid: inodeOid, offset: SD_INODE_HEADER_SIZE + 4 * idx },
      data: entry,
    })
    return index.rsp.result
  }

  await lockVdi(gw0, 'mp', { shared: true })
  await lockVdi(gw1, 'mp', { shared: true })
  t.same(await states(), [MODIFIED, INVALIDATED], 'the first gateway starts as the modifier, the second invalidated')
  t.equal((await tgtRead(gw1, 0, 1)).rsp.result, SD_RES_INODE_INVALIDATED, 'an invalidated gateway answers tgt with INODE_INVALIDATED')
  t.equal((await tgtRead(gw1, 0, 1, 0)).rsp.result, SD_RES_SUCCESS, 'requests without CMD_TGT are served')
  t.equal((await refresh(gw1)).rsp.result, SD_RES_SUCCESS, 'the whole inode can be re-read')
  t.same(await states(), [SHARED, SHARED], 're-reading validates the gateway; the modifier becomes shared too')
  t.equal((await tgtRead(gw1, 0, 1)).rsp.result, SD_RES_SUCCESS, 'a validated gateway serves tgt again')

  t.equal(await tgtAllocate(gw1, 3), SD_RES_SUCCESS, 'an index update through gateway 1')
  t.same(await states(), [INVALIDATED, MODIFIED], 'gateway 1 modified the index, gateway 0 is invalidated')
  t.equal(await tgtAllocate(gw0, 4), SD_RES_INODE_INVALIDATED, 'a create through the invalidated gateway is refused')
  const write = await gw0.request({
    opcode: SD_OP_WRITE_OBJ,
    flags: SD_FLAG_CMD_TGT,
    variant: REQ_OBJ,
    fields: { oid: vidToDataOid(vid, 3), offset: 0 },
    data: Buffer.alloc(512),
  })
  t.equal(write.rsp.result, SD_RES_INODE_INVALIDATED, 'so is a write')
  const reread = await refresh(gw0)
  t.equal(reread.data.readUInt32LE(SD_INODE_HEADER_SIZE + 4 * 3), vid, 'the re-read inode shows the new index entry')
  t.same(await states(), [SHARED, SHARED], 'both gateways are valid again')
  t.equal(await tgtAllocate(gw0, 4), SD_RES_SUCCESS, 'and gateway 0 may update the index')
  t.same(await states(), [MODIFIED, INVALIDATED], 'which invalidates gateway 1')

  await releaseVdi(gw0, vid, { shared: true })
  await releaseVdi(gw1, vid, { shared: true })
  t.same(await states(), [], 'releasing both shared locks unlocks the VDI')
  t.equal((await tgtRead(gw1, 0, 1)).rsp.result, SD_RES_SUCCESS, 'an unlocked VDI serves tgt without checks')
})
