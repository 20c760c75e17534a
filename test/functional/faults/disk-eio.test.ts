// Disk errors for real (issue 16, fault suite): node 0 of a 2-node, 2-copy cluster keeps its
// objects on two disks, one of them a FUSE pass-through that answers EIO when told to
// (test/helpers/faulty-fs.ts). A read that meets EIO is never answered SUCCESS: the peer answers
// NETWORK_ERROR, the gateway reads the other replica, and the disk is taken out as the
// original's md_handle_eio does (out of `dog node md info`, its objects recovered from the
// other node onto the disk left). The disk plugged back in, writes that meet EIO take it out
// again; a write is either acknowledged and readable or refused, and nothing acknowledged is
// lost. (A disk directory removed or unmounted under a running sheep: disk-failure.test.ts.)
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster, waitForRecovery } from '../../../harness/cluster.js'
import { dog, isAlive, waitFor } from '../../../harness/sheep.js'
import { vidToDataOid } from '../../../lib/oid.js'
import { SD_OP_READ_PEER, SD_RES_SUCCESS } from '../../../lib/proto.js'
import { REQ_OBJ } from '../../../lib/codec.js'
import { getNodeList, getVdiInfo } from '../../../lib/sheep-api.js'
import { type FaultyDisk, mountFaultyDisk, objectFilesIn } from '../../helpers/faulty-fs.js'

const MiB = 1024 * 1024
const VDI_MIB = 32
/** Data objects of 1 MiB (-z 20): enough objects for both disks to hold some. */
const OBJECT_SHIFT = 20
const OBJECTS = VDI_MIB + 1
const OID_NAME = '[0-9a-f]{16}'

const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0

t.test('EIO from a disk: never SUCCESS, the disk taken out, redundancy restored', { skip: canMount ? false : 'needs /dev/fuse and root' }, async (t) => {
  let disk: FaultyDisk | undefined
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined
  // the sheep first, then the file system under them
  t.teardown(async () => {
    await cluster?.close({ keepFiles: true })
    await disk?.close()
    if (cluster) fs.rmSync(cluster.root, { recursive: true, force: true })
  })
  cluster = await startCluster(2, { start: 0 })
  const root = cluster.root
  const plain = path.join(root, 'disk-plain')
  disk = await mountFaultyDisk(path.join(root, 'disk-faulty-backing'), path.join(root, 'disk-faulty'))
  const faulty = disk
  await cluster.start(0, [], [plain, faulty.mountpoint])
  await cluster.start(1)
  const port = (i: number) => cluster?.ports[i] as number
  const dogOk = async (args: string[], input?: Buffer, i = 0) => {
    const r = await dog([...args, '-p', String(port(i))], { input })
    if (r.status !== 0) throw new Error(`dog ${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
    return r
  }
  const mdPaths = async () =>
    (await dogOk(['node', 'md', 'info'])).stdout
      .trimEnd()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t')[5])
  const readAll = async (i: number, data: Buffer, what: string) => {
    const r = await dog(['vdi', 'read', 'v', '-p', String(port(i))])
    t.ok(r.status === 0 && r.stdoutBytes.equals(data), what)
  }

  await dogOk(['cluster', 'format', '-c', '2'])
  await dogOk(['vdi', 'create', '-z', String(OBJECT_SHIFT), 'v', `${VDI_MIB}M`])
  const data = crypto.randomBytes(VDI_MIB * MiB)
  await dogOk(['vdi', 'write', 'v'], data)
  const onFaulty = objectFilesIn(faulty.backing)
  t.ok(onFaulty.length > 0 && objectFilesIn(plain).length > 0, `both disks of node 0 hold objects (${onFaulty.length} on the faulty one)`)

  // a read that meets EIO: the peer never answers SUCCESS
  const { vid } = await getVdiInfo(cluster.conn(0), 'v')
  const victim = onFaulty.map((n) => BigInt(`0x${n}`)).find((oid) => oid !== BigInt(vid) << 32n && oid >> 63n === 0n) ?? vidToDataOid(vid, 0)
  await faulty.arm({ op: 'read', match: OID_NAME, times: -1 })
  const { epoch } = await getNodeList(cluster.conn(0))
  const { rsp, data: got } = await cluster
    .conn(0)
    .request({ opcode: SD_OP_READ_PEER, epoch, variant: REQ_OBJ, fields: { oid: victim, tgtEpoch: epoch }, readLength: 1 << OBJECT_SHIFT })
  t.not(rsp.result, SD_RES_SUCCESS, `READ_PEER of an object on the failing disk is not SUCCESS (0x${rsp.result.toString(16)})`)
  t.equal(got.length, 0, 'and carries no bytes')
  t.ok(await waitFor(async () => !(await mdPaths()).includes(faulty.mountpoint)), 'the failing disk leaves md info')
  t.same(await mdPaths(), [plain], 'the other disk stays')
  await readAll(0, data, 'node 0 reads every byte while its disk fails')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  t.equal(objectFilesIn(plain).length, OBJECTS, 'every object of node 0 is back, on the disk left')
  await readAll(1, data, 'node 1 reads every byte')
  t.ok(isAlive(cluster.nodes[0]?.pid ?? 0), 'node 0 still runs')
  t.ok((await faulty.disarm()) > 0, 'EIO was injected')

  // plugged back in: writes that meet EIO
  for (const f of fs.readdirSync(faulty.backing)) fs.rmSync(path.join(faulty.backing, f), { recursive: true, force: true })
  await dogOk(['node', 'md', 'plug', '-f', faulty.mountpoint])
  t.ok(await waitFor(async () => (await mdPaths()).includes(faulty.mountpoint)), 'the disk is plugged back in')
  t.ok(await waitForRecovery(cluster), 'the objects are spread over both disks again')
  await faulty.arm({ op: 'write', match: OID_NAME, times: -1 })
  const model = Buffer.from(data)
  let refused = 0
  for (let mib = 0; mib < VDI_MIB; mib += 4) {
    const chunk = crypto.randomBytes(4 * MiB)
    const r = await dog(['vdi', 'write', 'v', String(mib * MiB), String(4 * MiB), '-p', String(port(0))], { input: chunk })
    if (r.status === 0) chunk.copy(model, mib * MiB)
    else {
      refused++
      // refused: written again once the disk is out, as a client retries
      await dogOk(['vdi', 'write', 'v', String(mib * MiB), String(4 * MiB)], chunk)
      chunk.copy(model, mib * MiB)
    }
  }
  t.comment(`${refused} of ${VDI_MIB / 4} writes refused while the disk failed, then written again`)
  t.ok(await waitFor(async () => !(await mdPaths()).includes(faulty.mountpoint)), 'a disk failing writes leaves md info too')
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  await readAll(0, model, 'node 0 reads every acknowledged byte')
  await readAll(1, model, 'node 1 reads every acknowledged byte')
  t.equal(objectFilesIn(plain).length, OBJECTS, 'node 0 holds every object again, on the disk left')
  t.same(objectFilesIn(path.join(cluster.nodes[1]?.dir ?? '', 'obj')).length, OBJECTS, 'node 1 holds every object')
  await faulty.disarm()
  const log = fs.readFileSync(path.join(root, 'n0', 'sheep.log'), 'utf8')
  t.notMatch(log, /exits unexpectedly/, 'node 0 logged no crash')
})
