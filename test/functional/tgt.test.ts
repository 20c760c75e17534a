// tgt's sheepdog backing store (bs_sheepdog, built into Debian's tgtd) against our sheep: a real
// tgtd exports VDIs of a 3-node cluster (copies 3) as iSCSI LUNs — one through TCP, one through
// a node's unix socket — and libiscsi's iscsi-readcapacity16 and qemu-img (iscsi:// through
// qemu-block-extra) read and write them. Data written through iSCSI must read back byte for
// byte with `dog vdi read`, data written with `dog vdi write` through iSCSI, and a LUN opened
// before `dog vdi snapshot` must go on writing to the new working VDI (sheep answers READONLY,
// bs_sheepdog reloads the inode and copies on write) while the snapshot keeps the old bytes.
// The cluster locks VDIs (-l), so tgt's shared locks are real: two LUNs on one VDI through two
// gateway nodes (multipath) must see each other's new objects (INODE_COHERENCE), and deleting a
// LUN releases its lock. bs_sheepdog speaks the wire protocol itself (LOCK_VDI shared, READ_OBJ
// of the inode, CREATE_AND_WRITE / WRITE_OBJ with COW, DIRECT and TGT flags, index updates,
// FLUSH_VDI, RELEASE_VDI with proto_ver 0).
// Debian's tgt 1.0.85 takes `tcp:HOST:PORT:VDI` or `unix:SOCKET:VDI` only (no snapshot suffix),
// and formats the TCP port into 4 digits, so the node tgt reaches by TCP listens below 10000.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { type TestCluster, objectCopies, startCluster } from '../../harness/cluster.js'
import { type DogResult, dog, runProgram, tempDir } from '../../harness/sheep.js'
import { TGTADM, TGTD, type Tgtd, freeLowPort, startTgtd } from '../../harness/tgt.js'

const MiB = 1024 * 1024
const TOOLS = [TGTD, TGTADM, '/usr/bin/iscsi-readcapacity16', '/usr/bin/qemu-img']
const IQN = 'iqn.2024-01.org.sheepdog-node:tgt-test'
const SECTOR = 512

const VDI_SIZE = 64 * MiB
const UNIX_VDI_SIZE = 16 * MiB

const run = (cmd: string, args: string[]) => runProgram(cmd, args)

/** qemu-img --image-opts for [offset, offset+size) of a LUN (the raw driver windows the device). */
function lunWindow(portal: number, lun: number, offset: number, size: number): string {
  return `driver=raw,offset=${offset},size=${size},file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:${portal},file.target=${IQN},file.lun=${lun}`
}

t.test(
  'tgt bs_sheepdog exports VDIs of our sheep over iSCSI',
  {
    skip:
      TOOLS.filter((p) => !fs.existsSync(p))
        .map((p) => `missing ${p}`)
        .join(', ') || false,
  },
  async (t) => {
    const work = tempDir('tgt-test-')
    let cluster: TestCluster | undefined
    let tgtd: Tgtd | undefined
    t.teardown(async () => {
      await tgtd?.stop()
      await cluster?.close()
      fs.rmSync(work, { recursive: true, force: true })
    })

    cluster = await startCluster(3, { start: 0 })
    cluster.ports[0] = await freeLowPort()
    for (let i = 0; i < 3; i++) await cluster.start(i)
    const c = cluster
    const port = (i: number) => c.ports[i] as number
    const dogOk = async (args: string[], node = 0, input?: Buffer): Promise<DogResult> => {
      const r = await dog(args, { port: port(node), input })
      t.equal(r.status, 0, `dog ${args.join(' ')}${r.stderr ? `: ${r.stderr.trim()}` : ''}`)
      return r
    }
    const dogRead = async (args: string[], node = 0): Promise<Buffer> => (await dogOk(['vdi', 'read', ...args], node)).stdoutBytes
    // with VDI locking (-l): tgt takes shared locks, whose gateways keep the inode coherent
    await dogOk(['cluster', 'format', '-c', '3', '-l'])

    // the working image as it must read back, kept in step with every write below
    const image = Buffer.alloc(VDI_SIZE)
    await dogOk(['vdi', 'create', 'tgtvol', String(VDI_SIZE)])
    await dogOk(['vdi', 'create', 'tgtunix', String(UNIX_VDI_SIZE)])
    // written before the LUN opens: bs_sheepdog reads the inode once, at open
    const early = { offset: 20 * MiB, data: crypto.randomBytes(6 * MiB) }
    await dogOk(['vdi', 'write', 'tgtvol', String(early.offset), String(early.data.length)], 1, early.data)
    early.data.copy(image, early.offset)

    tgtd = await startTgtd()
    const tg = tgtd
    const adm = async (args: string[], what: string) => {
      const r = await tg.adm(['--lld', 'iscsi', ...args])
      t.equal(r.status, 0, `tgtadm: ${what}${r.status !== 0 ? `: ${r.stderr.trim()}\n${tg.log()}` : ''}`)
    }
    await adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', IQN], 'a target')
    await adm(
      ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '--bstype', 'sheepdog', '--backing-store', `tcp:127.0.0.1:${port(0)}:tgtvol`],
      'LUN 1 on tgtvol through TCP',
    )
    const sock = path.join(c.nodes[1]?.dir as string, 'sock')
    await adm(
      ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '2', '--bstype', 'sheepdog', '--backing-store', `unix:${sock}:tgtunix`],
      'LUN 2 on tgtunix through a unix socket',
    )
    await adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL'], 'bound to all initiators')

    const capacity = async (lun: number) => {
      const r = await run('iscsi-readcapacity16', [`iscsi://127.0.0.1:${tg.portal}/${IQN}/${lun}`])
      t.equal(r.status, 0, `iscsi-readcapacity16 LUN ${lun}${r.stderr ? `: ${r.stderr}` : ''}`)
      return Number(/^Total size:(\d+)$/m.exec(r.stdout)?.[1])
    }
    t.equal(await capacity(1), VDI_SIZE, 'LUN 1 has the size of tgtvol')
    t.equal(await capacity(2), UNIX_VDI_SIZE, 'LUN 2 has the size of tgtunix')

    let files = 0
    const writeLun = async (lun: number, offset: number, data: Buffer) => {
      const file = path.join(work, `w${files++}.bin`)
      fs.writeFileSync(file, data)
      const r = await run('qemu-img', ['convert', '-n', '-f', 'raw', file, '--target-image-opts', lunWindow(tg.portal, lun, offset, data.length)])
      t.equal(r.status, 0, `qemu-img wrote ${data.length} bytes at ${offset} to LUN ${lun}${r.stderr ? `: ${r.stderr}` : ''}`)
    }
    const readLun = async (lun: number, offset: number, size: number): Promise<Buffer> => {
      const file = path.join(work, `r${files++}.bin`)
      const r = await run('qemu-img', ['convert', '--image-opts', lunWindow(tg.portal, lun, offset, size), '-O', 'raw', file])
      t.equal(r.status, 0, `qemu-img read ${size} bytes at ${offset} from LUN ${lun}${r.stderr ? `: ${r.stderr}` : ''}`)
      return fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0)
    }

    // dog → iSCSI: the bytes written before the LUN opened, with unwritten space around them
    t.ok((await readLun(1, 16 * MiB, 12 * MiB)).equals(image.subarray(16 * MiB, 28 * MiB)), 'data written by dog reads back through iSCSI, zeros around it')

    // iSCSI → dog: several MiB, not object-aligned, across the 4 and 8 MiB object boundaries
    const first = { offset: 3 * MiB + 3 * SECTOR, data: crypto.randomBytes(9 * MiB + 5 * SECTOR) }
    await writeLun(1, first.offset, first.data)
    first.data.copy(image, first.offset)
    t.ok(
      (await dogRead(['tgtvol', String(first.offset), String(first.data.length)], 2)).equals(first.data),
      'dog vdi read returns exactly the bytes written through iSCSI',
    )
    t.ok((await dogRead(['tgtvol', '0', String(first.offset)], 1)).equals(Buffer.alloc(first.offset)), 'the bytes before the write are still zero')
    const copies = objectCopies(c)
    t.ok(copies.size > 0 && [...copies.values()].every((n) => n === 3), `every object is on 3 nodes (${copies.size} objects)`)

    // dog overwrites objects the LUN already uses: iSCSI reads the new bytes
    const over = { offset: 5 * MiB + 7 * SECTOR, data: crypto.randomBytes(4 * MiB) }
    await dogOk(['vdi', 'write', 'tgtvol', String(over.offset), String(over.data.length)], 2, over.data)
    over.data.copy(image, over.offset)
    t.ok((await readLun(1, over.offset, over.data.length)).equals(over.data), 'data written by dog over iSCSI-written objects reads back through iSCSI')

    // a snapshot under the open LUN: the old objects turn read-only, tgt reloads and copies on write
    const beforeSnapshot = Buffer.from(image)
    await dogOk(['vdi', 'snapshot', '-s', 'snap1', 'tgtvol'])
    const cow = { offset: 6 * MiB + SECTOR, data: crypto.randomBytes(3 * MiB) }
    await writeLun(1, cow.offset, cow.data)
    cow.data.copy(image, cow.offset)
    const fresh = { offset: 40 * MiB - 2 * SECTOR, data: crypto.randomBytes(2 * MiB) }
    await writeLun(1, fresh.offset, fresh.data)
    fresh.data.copy(image, fresh.offset)
    t.ok((await dogRead(['tgtvol'], 1)).equals(image), 'after the snapshot, iSCSI writes land in the working VDI (all 64 MiB compared)')
    t.ok((await dogRead(['-s', 'snap1', 'tgtvol'], 2)).equals(beforeSnapshot), 'the snapshot keeps the bytes it was taken with')
    t.ok((await readLun(1, 0, VDI_SIZE)).equals(image), 'the whole LUN reads back through iSCSI')

    // multipath: a second LUN on tgtvol through another gateway node shares the lock; an index
    // update through one gateway invalidates the other's inode, whose next I/O answers
    // INODE_INVALIDATED until tgt re-reads the inode there
    const sock2 = path.join(c.nodes[2]?.dir as string, 'sock')
    await adm(
      ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '4', '--bstype', 'sheepdog', '--backing-store', `unix:${sock2}:tgtvol`],
      'LUN 4 on tgtvol through the unix socket of node 2',
    )
    const locks = (await dogOk(['vdi', 'lock', 'list'])).stdout
    t.match(
      locks,
      new RegExp(`^  tgtvol .* port:${port(0)}\\(\\w+\\) IPv4 ip:127\\.0\\.0\\.1 port:${port(2)}\\(\\w+\\)$`, 'm'),
      'both gateways share the lock of tgtvol',
    )
    const viaNode0 = { offset: 48 * MiB + 5 * SECTOR, data: crypto.randomBytes(5 * MiB) }
    await writeLun(1, viaNode0.offset, viaNode0.data)
    viaNode0.data.copy(image, viaNode0.offset)
    t.ok((await readLun(4, viaNode0.offset, viaNode0.data.length)).equals(viaNode0.data), 'new objects written through node 0 read back through node 2')
    const viaNode2 = { offset: 56 * MiB - 9 * SECTOR, data: crypto.randomBytes(6 * MiB) }
    await writeLun(4, viaNode2.offset, viaNode2.data)
    viaNode2.data.copy(image, viaNode2.offset)
    t.ok((await readLun(1, viaNode2.offset, viaNode2.data.length)).equals(viaNode2.data), 'new objects written through node 2 read back through node 0')
    t.ok((await dogRead(['tgtvol'], 1)).equals(image), "the working VDI holds both gateways' writes")

    // a whole image through the unix socket of another node
    const whole = crypto.randomBytes(UNIX_VDI_SIZE)
    await writeLun(2, 0, whole)
    t.ok((await dogRead(['tgtunix'], 2)).equals(whole), 'a whole image written through LUN 2 reads back with dog')
    t.ok((await readLun(2, 0, UNIX_VDI_SIZE)).equals(whole), 'and through iSCSI')

    // closing a LUN releases its lock (RELEASE_VDI, proto_ver 0): a new LUN opens the VDI again
    await adm(['--op', 'delete', '--mode', 'logicalunit', '--tid', '1', '--lun', '2'], 'LUN 2 deleted')
    t.notMatch((await dogOk(['vdi', 'lock', 'list'])).stdout, /^  tgtunix /m, 'deleting LUN 2 released tgtunix')
    await adm(
      ['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '3', '--bstype', 'sheepdog', '--backing-store', `tcp:127.0.0.1:${port(0)}:tgtunix`],
      'LUN 3 on tgtunix through TCP',
    )
    t.ok((await readLun(3, 4 * MiB - SECTOR, 2 * MiB)).equals(whole.subarray(4 * MiB - SECTOR, 6 * MiB - SECTOR)), 'the reopened VDI reads back')
    t.notMatch(tg.log(), /io error|cannot get vdi info|failed to send|sync inode failed/, 'tgtd logged no sheepdog errors')
  },
)
