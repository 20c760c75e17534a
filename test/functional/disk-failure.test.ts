// A failing disk is taken out, not the node (md.c md_handle_eio): node 0 keeps its objects on
// three small tmpfs disks of different sizes (objects in proportion to size). A disk directory
// removed under the running sheep, then a file system unmounted lazily: each time the reads go
// on byte for byte, the disk leaves `dog node md info`, and the node recovers the disk's
// objects from the other replica onto the disks left. When the last disk fails the node leaves
// the cluster and the other node keeps serving.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, isAlive, tempDir, waitFor } from '../../harness/sheep.js'
import { getNodeList } from '../../lib/sheep-api.js'

const MiB = 1024 * 1024
const VDI_MIB = 64
/** Data objects of 1 MiB (-z 20): enough objects for the proportions to show. */
const OBJECT_SHIFT = 20
const OBJECTS = VDI_MIB + 1
const OID_FILE = /^[0-9a-f]{16}$/
/** tmpfs sizes of node 0's disks: the middle one is three times the others. */
const DISK_MIB = { a: 256, b: 768, c: 256 }

const canMount = process.getuid?.() === 0
const objectsIn = (dir: string): number => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => OID_FILE.test(n)).length : 0)

t.test(
  'a failing disk is taken out and its objects recovered; the last one takes the node out',
  { skip: canMount ? false : 'needs root to mount tmpfs' },
  async (t) => {
    const root = tempDir('disk-failure-')
    const mounts = Object.keys(DISK_MIB).map((name) => path.join(root, `m${name}`))
    let cluster: Awaited<ReturnType<typeof startCluster>> | undefined
    // the sheep first, then the file systems under them, then the files (registered before
    // anything is mounted: a failed start must not leave the mounts behind)
    t.teardown(async () => {
      await cluster?.close({ keepFiles: true })
      for (const m of mounts) {
        try {
          execFileSync('umount', ['-l', m], { stdio: 'ignore' })
        } catch {
          // never mounted, or already unmounted by the test
        }
      }
      fs.rmSync(root, { recursive: true, force: true })
    })
    for (const [name, mib] of Object.entries(DISK_MIB)) {
      const m = path.join(root, `m${name}`)
      fs.mkdirSync(m)
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', m])
    }
    // disk c is a directory inside its file system, so that it can be removed
    const [diskA, diskB, diskC] = [path.join(root, 'ma'), path.join(root, 'mb'), path.join(root, 'mc', 'disk')]
    cluster = await startCluster(2, { root, disks: (i) => (i === 0 ? ([diskA, diskB, diskC] as string[]) : undefined) })
    const port = (i: number) => cluster.ports[i] as number

    t.equal((await dog(['cluster', 'format', '-c', '2'], { port: port(0) })).status, 0)
    t.equal((await dog(['vdi', 'create', '-z', String(OBJECT_SHIFT), 'v', `${VDI_MIB}M`], { port: port(0) })).status, 0)
    const data = crypto.randomBytes(VDI_MIB * MiB)
    t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')
    const [a, b, c] = [diskA, diskB, diskC].map((d) => objectsIn(d as string)) as [number, number, number]
    t.equal(a + b + c, OBJECTS, `one copy of each object on node 0 (${a}, ${b}, ${c})`)
    t.ok(b > a && b > c, 'the disk three times the size has the most objects')
    const readAll = async (i: number, what: string) => {
      const r = await dog(['vdi', 'read', 'v'], { port: port(i) })
      t.ok(r.status === 0 && r.stdoutBytes.equals(data), what)
    }
    const mdPaths = async () =>
      (await dog(['node', 'md', 'info'], { port: port(0) })).stdout
        .trimEnd()
        .split('\n')
        .slice(1)
        .map((l) => l.split('\t')[5])

    // a disk directory removed under the running sheep
    fs.rmSync(diskC as string, { recursive: true, force: true })
    await readAll(0, 'node 0 reads every byte after its disk directory was removed')
    t.same(await mdPaths(), [diskA, diskB], 'the removed disk is out of md info')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.equal(objectsIn(diskA as string) + objectsIn(diskB as string), OBJECTS, 'its objects are back, on the disks left')

    // a file system unmounted lazily under the running sheep
    execFileSync('umount', ['-l', diskA as string])
    await readAll(0, 'node 0 reads every byte after a disk was unmounted')
    t.same(await mdPaths(), [diskB], 'the unmounted disk is out of md info')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.equal(objectsIn(diskB as string), OBJECTS, 'every object on the one disk left')
    t.ok(isAlive(cluster.nodes[0]?.pid ?? 0), 'node 0 still runs')

    // the last disk: the node leaves the cluster cleanly; the other node serves the data
    execFileSync('umount', ['-l', diskB as string])
    // the read that finds the last disk gone takes the node out (dog may see it go mid-read)
    await dog(['vdi', 'read', 'v', '0', String(MiB)], { port: port(0) })
    t.ok(await waitFor(() => !isAlive(cluster.nodes[0]?.pid ?? 0), 20_000), 'node 0 stops')
    t.ok(await waitFor(async () => (await getNodeList(cluster.conn(1))).nodes.length === 1, 20_000), 'and has left the cluster')
    await readAll(1, 'node 1 reads every byte')
  },
)
