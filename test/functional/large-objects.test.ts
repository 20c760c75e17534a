// Objects bigger than one request frame (SD_MAX_DATA_LENGTH = 64 MiB) on a real 4-node cluster
// (copies 3): VDIs with 128 MiB objects (-z 27) and 64 MiB objects (-z 26, the boundary). Every
// path that moves a whole object must do it in pieces: recovery after alter-copy and after a node
// dies, vdi check repairing a damaged and a missing 128 MiB replica, copy-on-write of a 128 MiB
// object after a snapshot, vdi backup/restore, vdi clone -n and cluster snapshot save/load.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { oidToHex, vidToDataOid } from '../../lib/oid.js'
import { getVdiInfo } from '../../lib/sheep-api.js'
import { objectCopies, startCluster, waitForRecovery, type TestCluster } from '../../harness/cluster.js'
import { dog, tempDir } from '../../harness/sheep.js'

const MiB = 1024 * 1024
/** Object size of the -z 27 VDIs: twice what one request frame may carry. */
const BIG_OBJECT_BYTES = 128 * MiB
const COPIES = 3
/** `vdi read` ranges: what one dog run prints is held in memory by the test. */
const READ_RANGE_BYTES = 256 * MiB

/** The files holding `oid` on the running nodes: node index → path. */
function replicaFiles(cluster: TestCluster, oid: bigint): Map<number, string> {
  const files = new Map<number, string>()
  cluster.nodes.forEach((node, i) => {
    if (!node) return
    const file = path.join(node.dir, 'obj', oidToHex(oid))
    if (fs.existsSync(file)) files.set(i, file)
  })
  return files
}

function sha1OfFile(file: string): string {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex')
}

t.test('objects larger than one request frame', async (t) => {
  const cluster = await startCluster(4)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const run = (args: string[], input?: Buffer | string) => dog(args, { port, input })
  const vidOf = async (name: string): Promise<number> => (await getVdiInfo(cluster.conn(0), name)).vid
  /** Every live object stored on exactly COPIES running nodes. */
  const everyObjectHasAllCopies = (): string[] => [...objectCopies(cluster)].filter(([, n]) => n !== COPIES).map(([oid, n]) => `${oid}: ${n}`)

  // the expected contents of each VDI, kept up to date as the test writes
  const big = Buffer.alloc(512 * MiB)
  const edge = Buffer.alloc(128 * MiB)
  const dup = Buffer.alloc(BIG_OBJECT_BYTES)
  const write = async (t: Test, name: string, image: Buffer, offset: number, bytes: Buffer): Promise<void> => {
    const r = await run(['vdi', 'write', name, String(offset), String(bytes.length)], bytes)
    t.equal(r.status, 0, `vdi write ${name} ${offset} ${bytes.length}: ${r.stderr}`)
    bytes.copy(image, offset)
  }
  /**
   * `vdi read` of bytes [from, to) of the VDI equals the same bytes of `image` (whole VDI by
   * default; read in ranges, as the test holds what one dog run prints in memory).
   */
  const readsBack = async (name: string, image: Buffer, extra: string[] = [], from = 0, to = image.length): Promise<boolean> => {
    for (let at = from; at < to; at += READ_RANGE_BYTES) {
      const length = Math.min(READ_RANGE_BYTES, to - at)
      const r = await run(['vdi', 'read', ...extra, name, String(at), String(length)])
      if (r.status !== 0 || !r.stdoutBytes.equals(image.subarray(at, at + length))) return false
    }
    return true
  }

  t.equal((await run(['cluster', 'format', '-c', String(COPIES)])).status, 0)
  for (const args of [
    ['-z', '27', 'big', '512M'],
    ['-z', '26', 'edge', '128M'],
    ['-z', '27', '-c', '2', 'dup', '128M'],
  ]) {
    const r = await run(['vdi', 'create', ...args])
    t.equal(r.status, 0, `vdi create ${args.join(' ')}: ${r.stderr}`)
  }
  // ~300 MiB of random data: a full and a partial 128 MiB object, a partial one further on,
  // a full 64 MiB object, and a partial object of a VDI with 2 copies
  await write(t, 'big', big, 0, crypto.randomBytes(160 * MiB))
  await write(t, 'big', big, 400 * MiB, crypto.randomBytes(24 * MiB))
  await write(t, 'edge', edge, 0, crypto.randomBytes(64 * MiB))
  await write(t, 'dup', dup, 40 * MiB, crypto.randomBytes(48 * MiB))

  await t.test('alter-copy 2 → 3 recovers the third replica of a 128 MiB object', async (t) => {
    const r = await run(['vdi', 'alter-copy', '-c', '3', '-f', 'dup'])
    t.equal(r.status, 0, r.stderr)
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.same(everyObjectHasAllCopies(), [], `every object has ${COPIES} copies`)
    t.ok(await readsBack('dup', dup), 'dup reads back the same bytes')
  })

  await t.test('a node dies: its 128 MiB replicas are recovered elsewhere', async (t) => {
    await cluster.stop(3, 'SIGKILL')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.same(everyObjectHasAllCopies(), [], `every object has ${COPIES} copies on the 3 nodes left`)
    const leftovers = cluster.nodes.flatMap((node) => (node ? fs.readdirSync(path.join(node.dir, 'obj')).filter((name) => name.endsWith('.tmp')) : []))
    t.same(leftovers, [], 'no temporary file of a piece-by-piece copy is left')
    const bigVid = await vidOf('big')
    t.equal(replicaFiles(cluster, vidToDataOid(bigVid, 0)).size, COPIES)
    t.equal(fs.statSync([...replicaFiles(cluster, vidToDataOid(bigVid, 0)).values()][0] as string).size, BIG_OBJECT_BYTES)
    // the objects holding data (0, 1 and 3); the others were never written
    t.ok(await readsBack('big', big, [], 0, 2 * BIG_OBJECT_BYTES), 'big reads back the same bytes (objects 0 and 1)')
    t.ok(await readsBack('big', big, [], 3 * BIG_OBJECT_BYTES, 4 * BIG_OBJECT_BYTES), 'big reads back the same bytes (object 3)')
    t.ok(await readsBack('edge', edge, [], 0, 64 * MiB), 'edge reads back the same bytes (its written object)')
    t.ok(await readsBack('dup', dup), 'dup reads back the same bytes')
  })

  await t.test('vdi check repairs a damaged and a missing 128 MiB replica', async (t) => {
    const clean = await run(['vdi', 'check', 'big'])
    t.same([clean.status, clean.stdout, clean.stderr], [0, 'finish check&repair big\n', ''], 'nothing to repair')
    const bigVid = await vidOf('big')
    const damagedOid = vidToDataOid(bigVid, 0)
    const missingOid = vidToDataOid(bigVid, 1)
    const [damagedFile] = replicaFiles(cluster, damagedOid).values()
    const [missingFile] = replicaFiles(cluster, missingOid).values()
    // past the first 64 MiB: only a whole-object copy gets this part right
    const fd = fs.openSync(damagedFile as string, 'r+')
    fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, 100 * MiB)
    fs.closeSync(fd)
    fs.rmSync(missingFile as string)
    const repaired = await run(['vdi', 'check', 'big'])
    t.equal(repaired.status, 0, repaired.stderr)
    t.same(
      repaired.stdout.split('\n').sort(),
      ['', `fixed missing ${oidToHex(missingOid)}`, `fixed replica ${oidToHex(damagedOid)}`, 'finish check&repair big'].sort(),
    )
    for (const oid of [damagedOid, missingOid]) {
      const files = [...replicaFiles(cluster, oid).values()]
      t.equal(files.length, COPIES, `${oidToHex(oid)}: ${COPIES} replicas`)
      t.equal(new Set(files.map(sha1OfFile)).size, 1, `${oidToHex(oid)}: the replicas are identical`)
    }
    t.ok(await readsBack('big', big, [], 0, 2 * BIG_OBJECT_BYTES), 'the repaired objects read back the same bytes')
  })

  await t.test('copy-on-write of 128 MiB objects, vdi backup and restore', async (t) => {
    t.equal((await run(['vdi', 'snapshot', '-s', 's1', 'big'])).status, 0)
    const s1 = Buffer.from(big)
    // object 1 is inherited: the write copies the whole 128 MiB object (COW); object 2 is new
    await write(t, 'big', big, 130 * MiB, crypto.randomBytes(MiB))
    await write(t, 'big', big, 300 * MiB, crypto.randomBytes(MiB))
    // objects 1 and 2 changed; the others are shared with s1 all along
    const changedFrom = BIG_OBJECT_BYTES
    const changedTo = 3 * BIG_OBJECT_BYTES
    t.ok(await readsBack('big', s1, ['-s', 's1'], changedFrom, changedTo), 'the snapshot keeps the old bytes')
    t.ok(await readsBack('big', big, [], changedFrom, changedTo), 'the working VDI has the new ones')
    t.equal((await run(['vdi', 'snapshot', '-s', 's2', 'big'])).status, 0)
    const backup = await run(['vdi', 'backup', '-F', 's1', '-s', 's2', 'big'])
    t.equal(backup.status, 0, backup.stderr)
    // header, two records of 1 MiB each trimmed to the changed sectors, the terminator
    t.equal(backup.stdoutBytes.length, 8 + 2 * (16 + MiB) + 16, 'only the changed bytes are in the stream')
    t.equal((await run(['vdi', 'write', 'big', '0', String(MiB)], crypto.randomBytes(MiB))).status, 0, 'the working VDI moves on')
    const restored = await run(['vdi', 'restore', '-s', 's1', 'big'], backup.stdoutBytes)
    t.equal(restored.status, 0, restored.stderr)
    t.ok(await readsBack('big', big, ['-s', '3'], changedFrom, changedTo), 'the restored snapshot equals s2')
    t.ok(await readsBack('big', big, [], changedFrom, changedTo), 'so does the working VDI, cloned from s2 again')
  })

  await t.test('vdi clone -n, cluster snapshot save and load of a 128 MiB object', async (t) => {
    const farmImage = Buffer.alloc(BIG_OBJECT_BYTES)
    t.equal((await run(['vdi', 'create', '-z', '27', 'farm', '128M'])).status, 0)
    await write(t, 'farm', farmImage, 96 * MiB, crypto.randomBytes(8 * MiB))
    t.equal((await run(['vdi', 'snapshot', '-s', 'f1', 'farm'])).status, 0)
    const clone = await run(['vdi', 'clone', '-n', '-s', 'f1', 'farm', 'farm-copy'])
    t.equal(clone.status, 0, clone.stderr)
    t.ok(await readsBack('farm-copy', farmImage), 'the clone has its own copy of the object')

    const dir = tempDir('farm-large-')
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const saved = await run(['cluster', 'snapshot', 'save', 'large', path.join(dir, 'farm'), 'farm'])
    t.equal(saved.status, 0, saved.stderr)
    const loaded = await run(['cluster', 'snapshot', 'load', 'large', path.join(dir, 'farm'), 'farm'], 'yes\n')
    t.equal(loaded.status, 0, loaded.stderr)
    t.ok(await readsBack('farm', farmImage, ['-s', 'f1']), 'the loaded snapshot reads back the same bytes')
    t.ok(await readsBack('farm', farmImage), 'so does the working VDI made from it')
    t.not((await run(['vdi', 'read', 'big', '0', '512'])).status, 0, 'the load re-formatted the cluster: big is gone')
  })
})
