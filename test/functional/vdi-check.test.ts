// `dog vdi check` and `dog cluster check` on a 3-node cluster with 3 copies, through the real
// dog: a replica overwritten by hand on disk and replicas deleted by hand are found and repaired
// (afterwards every replica has the same SHA-1 and the data reads back byte for byte), a check of
// a healthy VDI prints only its closing line, two corrupt replicas out of three are found by
// their checksums and rewritten from the good one (the original found no majority), and
// `cluster check` walks snapshots and working VDIs in vid order, printing what the original
// printed for the capture's cluster.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster, type TestCluster } from '../../harness/cluster.js'
import { findCommand, loadFixture } from '../helpers/fixture.js'
import { dog } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
const DATA_SIZE = 12 * MiB

/** The files of one object on every node that holds it, by node index. */
function replicaFiles(cluster: TestCluster, oid: string): Map<number, string> {
  const files = new Map<number, string>()
  cluster.nodes.forEach((node, i) => {
    const file = node === undefined ? '' : path.join(node.dir, 'obj', oid)
    if (node !== undefined && fs.existsSync(file)) files.set(i, file)
  })
  return files
}

function sha1(file: string): string {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex')
}

/** Overwrites bytes of a replica on disk, behind the sheep's back. */
function corrupt(file: string, at: number, text: string): void {
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.from(text), 0, text.length, at)
  fs.closeSync(fd)
}

t.test('vdi check repairs corrupted and missing replicas', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '3'], { port })).status, 0, 'formatted with 3 copies')
  const created = await dog(['vdi', 'create', '-v', '-r', 'disk', String(VDI_SIZE)], { port })
  t.equal(created.status, 0, created.stderr)
  const vid = created.stdout.trim().padStart(6, '0')
  const image = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(DATA_SIZE).copy(image)
  t.equal((await dog(['vdi', 'write', 'disk', '0', String(DATA_SIZE)], { port, input: image.subarray(0, DATA_SIZE) })).status, 0)

  const inodeOid = `80${vid}00000000`
  const dataOid = (idx: number) => `00${vid}${idx.toString(16).padStart(8, '0')}`
  const objects = [inodeOid, dataOid(0), dataOid(1), dataOid(2)]
  for (const oid of objects) t.equal(replicaFiles(cluster, oid).size, 3, `${oid} is on 3 nodes`)

  await t.test('a healthy VDI: only the closing line', async (t) => {
    const r = await dog(['vdi', 'check', 'disk'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, 'finish check&repair disk\n')
    t.equal(r.stderr, '')
    const e = await dog(['vdi', 'check', '-e', 'disk'], { port: cluster.ports[1] })
    t.equal(e.stdout, 'disk is fine, no object is missing.\n')
    t.equal(e.status, 0)
  })

  await t.test('a corrupted replica and missing replicas are repaired', async (t) => {
    corrupt(replicaFiles(cluster, dataOid(0)).get(1) as string, 12345, 'corrupted by hand')
    fs.rmSync(replicaFiles(cluster, dataOid(1)).get(2) as string)
    fs.rmSync(replicaFiles(cluster, inodeOid).get(0) as string)
    const r = await dog(['vdi', 'check', 'disk'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '')
    const lines = r.stdout.split('\n')
    t.equal(lines.at(-2), 'finish check&repair disk', 'the closing line comes last')
    // the inode is read first, through node 0 whose copy is gone: read-repair may have restored
    // that copy before the check looks at it (then the check has nothing to fix there)
    t.same(
      lines
        .slice(0, -2)
        .filter((line) => line !== `fixed missing ${inodeOid}`)
        .sort(),
      [`fixed missing ${dataOid(1)}`, `fixed replica ${dataOid(0)}`].sort(),
    )
    for (const oid of objects) {
      const files = replicaFiles(cluster, oid)
      t.equal(files.size, 3, `${oid} is on 3 nodes again`)
      t.equal(new Set([...files.values()].map(sha1)).size, 1, `every replica of ${oid} has the same SHA-1`)
    }
    const again = await dog(['vdi', 'check', 'disk'], { port: cluster.ports[2] })
    t.equal(again.stdout, 'finish check&repair disk\n', 'nothing left to repair')
    for (const i of [0, 1, 2]) {
      const read = await dog(['vdi', 'read', 'disk'], { port: cluster.ports[i] })
      t.ok(read.stdoutBytes.equals(image), `data byte-identical through node ${i}`)
    }
  })

  await t.test('two replicas corrupt: their checksums give them away, the good one wins', async (t) => {
    // the original could only say "no majority" here; the checksums tell which replica is good
    const files = replicaFiles(cluster, dataOid(2))
    const good = sha1(files.get(2) as string)
    corrupt(files.get(0) as string, 0, 'first')
    corrupt(files.get(1) as string, 0, 'second')
    const r = await dog(['vdi', 'check', 'disk'], { port })
    t.equal(r.status, 0)
    t.equal(r.stderr, '')
    t.same(r.stdout.split('\n').filter(Boolean).sort(), [`fixed replica ${dataOid(2)}`, `fixed replica ${dataOid(2)}`, 'finish check&repair disk'].sort())
    t.same([...replicaFiles(cluster, dataOid(2)).values()].map(sha1), [good, good, good], 'every replica is the good one again')
  })

  await t.test('cluster check walks every snapshot and VDI', async (t) => {
    t.equal((await dog(['vdi', 'snapshot', '-s', 'first', 'disk'], { port })).status, 0)
    t.equal((await dog(['vdi', 'create', 'other', '4M'], { port })).status, 0)
    const snapshotVid = parseInt(vid, 16)
    const workingInodeOid = `80${(snapshotVid + 1).toString(16).padStart(6, '0')}00000000`
    fs.rmSync(replicaFiles(cluster, workingInodeOid).get(1) as string)
    const r = await dog(['cluster', 'check'], { port })
    t.equal(r.status, 0, r.stderr)
    const expected = [
      'fix snapshot disk (id: 1, tag: "first")',
      'finish check&repair disk',
      'fix vdi disk',
      `fixed missing ${workingInodeOid}`,
      'finish check&repair disk',
      'fix vdi other',
      'finish check&repair other',
    ]
    // `other` hashes elsewhere: the order is by vid
    const vids = (await dog(['vdi', 'list', '-r'], { port })).stdout
      .trim()
      .split('\n')
      .map((row) => row.split(' '))
    t.equal(vids.length, 3)
    const otherFirst = parseInt(vids.find((row) => row[1] === 'other')?.[7] as string, 16) < snapshotVid
    const blocks = [expected.slice(0, 2), expected.slice(2, 5), expected.slice(5)]
    const order = otherFirst ? [blocks[2], blocks[0], blocks[1]] : blocks
    t.equal(r.stdout, `${order.flat().join('\n')}\n`)
  })

  await t.test('vdi check errors', async (t) => {
    const missing = await dog(['vdi', 'check', 'nosuch'], { port })
    t.equal(missing.status, 1)
    t.equal(missing.stderr, 'Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: no inode objects\n')
    const usage = await dog(['vdi', 'check'], { port })
    t.equal(usage.status, 64)
    t.match(usage.stdout, /^Usage: dog vdi check \[-s snapshot\] \[-e\] \[-a address\] \[-p port\] \[-h\] \[-T\] <vdiname>/)
    const bySnapshot = await dog(['vdi', 'check', '-s', 'first', 'disk'], { port })
    t.equal(bySnapshot.stdout, 'finish check&repair disk\n')
  })
})

t.test('vdi check and cluster check print what the original printed', async (t) => {
  // the capture's cluster: 3 nodes, 2 copies, alpha with 6 MiB of data and snapshot snap1
  const fixture = loadFixture()
  const printedByOriginal = (...words: string[]): string => findCommand(fixture, ...words).stdout as string
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '2'], { port })).status, 0)
  t.equal((await dog(['vdi', 'create', 'alpha', '16M'], { port })).status, 0)
  const pattern = Buffer.alloc(6 * MiB)
  for (let i = 0; i < pattern.length; i++) pattern[i] = i % 251
  t.equal((await dog(['vdi', 'write', 'alpha', '0', '6M'], { port, input: pattern })).status, 0)
  t.equal((await dog(['vdi', 'snapshot', '-s', 'snap1', 'alpha'], { port })).status, 0)
  const check = await dog(['vdi', 'check', 'alpha'], { port })
  t.equal(check.status, findCommand(fixture, 'vdi', 'check').exitCode)
  t.equal(check.stdout, printedByOriginal('vdi', 'check'))
  const clusterCheck = await dog(['cluster', 'check'], { port })
  t.equal(clusterCheck.status, findCommand(fixture, 'cluster', 'check').exitCode)
  t.equal(clusterCheck.stdout, printedByOriginal('cluster', 'check'))
})
