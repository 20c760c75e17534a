// Requests the original's sheep handles that this one answered INVALID_PARMS (issue 12, item
// 18), sent by real clients to real sheep: DELETE_CACHE (libsheepdog sends it before deleting a
// VDI) and NOTIFY_VDI_DEL succeed (the latter while the cluster waits, too, as a force op);
// VDI_STATE_CHECKPOINT_CTL answers a vid's state on a locking cluster and is ignored elsewhere;
// MD_INFO describes the one disk, PATH/obj, through `dog node md info`; MD_PLUG adds a disk,
// MD_PLUG and MD_UNPLUG fail as the original's do when nothing changes, and unplugging the last
// disks stops the sheep.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster } from '../../harness/cluster.js'
import { dog, isAlive, waitFor } from '../../harness/sheep.js'
import { REQ_OBJ, REQ_VDI_STATE_CHECKPOINT } from '../../lib/codec.js'
import {
  SD_OP_DELETE_CACHE,
  SD_OP_MD_INFO,
  SD_OP_MD_PLUG,
  SD_OP_NOTIFY_VDI_DEL,
  SD_OP_VDI_STATE_CHECKPOINT_CTL,
  SD_RES_AGAIN,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_CHECKPOINT_ENTRY,
  SD_RES_SUCCESS,
  SD_RES_UNKNOWN,
  SD_RES_WAIT_FOR_FORMAT,
} from '../../lib/proto.js'
import { getNodeList, getVdiInfo, mdInfo } from '../../lib/sheep-api.js'
import { VDI_STATE_SIZE, decodeVdiState } from '../../lib/structs.js'

const MiB = 1024 * 1024

/** Bytes the object files of `dir` occupy on disk (what the original's MD_INFO counts as used). */
function allocatedBytes(dir: string): bigint {
  let used = 0n
  for (const name of fs.readdirSync(dir)) {
    if (/^[0-9a-f]{16}$/.test(name)) used += fs.statSync(path.join(dir, name), { bigint: true }).blocks * 512n
  }
  return used
}

t.test('the cache requests of old clients', async (t) => {
  const cluster = await startCluster(1)
  t.teardown(() => cluster.close())
  const conn = cluster.conn(0)
  const vid = Buffer.alloc(4)
  vid.writeUInt32LE(0x1234)
  const waitingDel = await conn.request({ opcode: SD_OP_NOTIFY_VDI_DEL, data: vid })
  t.equal(waitingDel.rsp.result, SD_RES_SUCCESS, 'NOTIFY_VDI_DEL is a force op')
  const waitingCache = await conn.request({ opcode: SD_OP_DELETE_CACHE, variant: REQ_OBJ, fields: { oid: 1n << 63n } })
  t.equal(waitingCache.rsp.result, SD_RES_WAIT_FOR_FORMAT, 'DELETE_CACHE is not')

  t.equal((await dog(['cluster', 'format', '-c', '1'], { port: cluster.ports[0] })).status, 0)
  t.equal((await dog(['vdi', 'create', 'old-client', '8M'], { port: cluster.ports[0] })).status, 0)
  const info = await getVdiInfo(conn, 'old-client', {})
  // what libsheepdog's sd_vdi_delete sends: DELETE_CACHE of the inode, then DEL_VDI
  const cache = await conn.request({ opcode: SD_OP_DELETE_CACHE, variant: REQ_OBJ, fields: { oid: (1n << 63n) | (BigInt(info.vid) << 32n) } })
  t.equal(cache.rsp.result, SD_RES_SUCCESS)
  const deleted = await dog(['vdi', 'delete', 'old-client'], { port: cluster.ports[0] })
  t.equal(deleted.status, 0, deleted.stderr)
  const notify = await conn.request({ opcode: SD_OP_NOTIFY_VDI_DEL, data: vid })
  t.equal(notify.rsp.result, SD_RES_SUCCESS)
})

t.test('VDI_STATE_CHECKPOINT_CTL', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const conn = cluster.conn(1)
  const checkpoint = (get: number, tgtEpoch: number, vid: number) =>
    conn.request({ opcode: SD_OP_VDI_STATE_CHECKPOINT_CTL, variant: REQ_VDI_STATE_CHECKPOINT, fields: { get, tgtEpoch, vid }, readLength: VDI_STATE_SIZE })

  t.equal((await dog(['cluster', 'format', '-c', '2'], { port })).status, 0)
  t.equal((await dog(['vdi', 'create', 'plain', '8M'], { port })).status, 0)
  const ignored = await checkpoint(1, 0, (await getVdiInfo(conn, 'plain', {})).vid)
  t.same([ignored.rsp.result, ignored.data.length], [SD_RES_SUCCESS, 0], 'without locking the request is ignored')

  t.equal((await dog(['cluster', 'format', '-l', '-c', '2', '-f'], { port })).status, 0)
  t.equal((await dog(['vdi', 'create', 'shared', '8M'], { port })).status, 0)
  const { vid } = await getVdiInfo(conn, 'shared', {})
  const { epoch } = await getNodeList(conn)
  const state = await checkpoint(1, epoch - 1, vid)
  t.equal(state.rsp.result, SD_RES_SUCCESS)
  t.equal(state.data.length, VDI_STATE_SIZE, 'one vdi_state')
  const record = decodeVdiState(state.data, 0)
  t.same([record.vid, record.nrCopies, record.snapshot, record.deleted], [vid, 2, 0, 0])
  t.equal((await checkpoint(1, epoch - 1, vid + 1)).rsp.result, SD_RES_NO_CHECKPOINT_ENTRY, 'a vid the node does not know')
  t.equal((await checkpoint(1, epoch, vid)).rsp.result, SD_RES_AGAIN, 'an epoch the node has not left behind yet')
  t.equal((await checkpoint(0, epoch - 1, 0)).rsp.result, SD_RES_SUCCESS, 'free')
})

t.test('multi-disk requests on a sheep started with one disk', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  const [port0, port1] = cluster.ports as [number, number]
  t.equal((await dog(['cluster', 'format', '-c', '2'], { port: port0 })).status, 0)
  t.equal((await dog(['vdi', 'create', 'disk', '12M'], { port: port0 })).status, 0)
  t.equal((await dog(['vdi', 'write', 'disk'], { port: port0, input: Buffer.alloc(12 * MiB, 3) })).status, 0)

  const node1 = cluster.nodes[1]
  if (!node1) throw new Error('node 1 is not running')
  const disk = path.join(fs.realpathSync(node1.dir), 'obj')
  const [only] = await mdInfo(cluster.conn(1))
  t.same([only?.idx, only?.path, only?.used], [0, disk, allocatedBytes(disk)], 'index 0, PATH/obj, the blocks of its objects')
  t.ok((only?.free ?? 0n) > 0n, 'its free space')

  const info = await dog(['node', 'md', 'info'], { port: port1 })
  t.same([info.status, info.stderr], [0, ''])
  t.match(
    info.stdout,
    new RegExp(`^Id\\tSize\\tUsed\\tAvail\\tUse%\\tPath\\n 0\\t[0-9.]+ [KMGTP]B\\t[0-9.]+ [KMGTP]B\\t[0-9.]+ [KMGTP]B\\t {0,2}\\d+%\\t${disk}\\n$`),
  )
  const raw = await dog(['node', 'md', 'info', '-r'], { port: port1 })
  t.match(raw.stdout, new RegExp(`^127\\.0\\.0\\.1:${port1} 0 \\d+ \\d+ \\d+ \\d+% ${disk}\\n$`))
  const all = await dog(['node', 'md', 'info', '-A'], { port: port1 })
  t.match(all.stdout, /^Id\tSize\tUsed\tAvail\tUse%\tPath\nNode 0:\n 0\t.*\/obj\nNode 1:\n 0\t.*\/obj\n$/)
  const short = await cluster.conn(1).request({ opcode: SD_OP_MD_INFO, readLength: 4096 })
  t.equal(short.rsp.result, SD_RES_INVALID_PARMS, 'MD_INFO wants the whole sd_md_info')

  const extra = path.join(cluster.root, 'extra-disk')
  fs.mkdirSync(extra)
  const plug = await dog(['node', 'md', 'plug', '-f', extra], { port: port1 })
  t.same([plug.status, plug.stderr], [0, ''], 'a disk is added')
  t.same(
    (await mdInfo(cluster.conn(1))).map((d) => d.path),
    [extra, disk].sort(),
    'md info lists both, in path order',
  )
  const plugged = await cluster.conn(1).request({ opcode: SD_OP_MD_PLUG, data: Buffer.from(`${disk}\0`) })
  t.equal(plugged.rsp.result, SD_RES_UNKNOWN, 'plugging a disk again changes nothing')
  t.match(fs.readFileSync(path.join(node1.dir, 'sheep.log'), 'utf8'), new RegExp(`duplicate path ${disk}`))
  const unplugOther = await dog(['node', 'md', 'unplug', '-f', path.join(cluster.root, 'no-disk')], { port: port1 })
  t.same([unplugOther.status, unplugOther.stderr], [1, 'Failed to execute request, look for sheep.log for more information\n'], 'not a disk of the node')
  t.ok(isAlive(node1.pid), 'node 1 still serves')

  const unplug = await dog(['node', 'md', 'unplug', '-f', `${disk},${extra}`], { port: port1 })
  t.same([unplug.status, unplug.stdout, unplug.stderr], [0, '', ''], 'unplugging both disks')
  t.ok(await waitFor(() => !isAlive(node1.pid)), 'leaves no disk: the sheep stops')
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 1), 'and has left the cluster')
  t.match(fs.readFileSync(path.join(node1.dir, 'sheep.log'), 'utf8'), /no disks plugged, going down/)
})
