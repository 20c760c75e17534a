// Disk full, for real: a sheep whose store is on a small tmpfs. A write that finds no space is
// answered SD_RES_NO_SPACE ("Server has no space for new objects", not EIO), nothing written
// before is lost, no temporary file is left on the full disk, and writes work again once space
// is freed (a VDI deleted). Many failed creates in a row leave no temporary file and no less free
// space behind, and the node stays up.
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { makeFs } from '../../lib/sheep-api.js'
import { startCluster } from '../../harness/cluster.js'
import { dog, isAlive, tempDir } from '../../harness/sheep.js'

const MiB = 1024 * 1024
/** Room for a few 4 MiB objects besides sheep's own files. */
const DISK_MIB = 40

/** Creates tried on the full disk after the first failure (the issue saw 21 failures leave 21 files). */
const FAILED_CREATES = 10
/** What the log lines of those failures may take of the disk (sheep.log is on it too). */
const LOG_GROWTH_MAX_BYTES = 256 * 1024
const OBJECT_BYTES = 4 * MiB

const canMount = process.getuid?.() === 0

function freeBytes(dir: string): number {
  const st = fs.statfsSync(dir)
  return st.bavail * st.bsize
}

t.test(
  'a full disk answers NO_SPACE, keeps what was written, and recovers when space is freed',
  { skip: canMount ? false : 'needs root to mount a tmpfs' },
  async (t) => {
    const root = tempDir('disk-full-')
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${DISK_MIB}m`, 'tmpfs', root])
    const cluster = await startCluster(1, { root })
    t.teardown(async () => {
      await cluster.close({ keepFiles: true })
      execFileSync('umount', ['-l', root])
      fs.rmSync(root, { recursive: true, force: true })
    })
    const port = cluster.ports[0] as number
    await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })

    t.equal((await dog(['vdi', 'create', 'kept', '12M'], { port })).status, 0)
    const kept = crypto.randomBytes(12 * MiB)
    t.equal((await dog(['vdi', 'write', 'kept'], { port, input: kept })).status, 0, '12 MiB written while there is room')

    t.equal((await dog(['vdi', 'create', 'filler', '64M'], { port })).status, 0)
    t.equal((await dog(['vdi', 'create', 'spare', `${(FAILED_CREATES * OBJECT_BYTES) / MiB}M`], { port })).status, 0)
    const full = await dog(['vdi', 'write', 'filler'], { port, input: crypto.randomBytes(64 * MiB) })
    t.not(full.status, 0, 'the write that fills the disk fails')
    t.match(full.stderr, /Server has no space for new objects/, `dog says the server has no space: ${full.stderr.trim().split('\n')[0]}`)
    t.notMatch(full.stderr, /I\/O error/, 'not an I/O error')

    // more failed creates, each of an object of its own: none may leave its temporary file
    // behind, so the free space does not shrink with every failure
    const freeBefore = freeBytes(root)
    const failures: string[] = []
    for (let i = 0; i < FAILED_CREATES; i++) {
      // whole objects: the disk has less room than one (the create that filled it failed)
      const offset = i * OBJECT_BYTES
      const r = await dog(['vdi', 'write', 'spare', String(offset), String(OBJECT_BYTES)], { port, input: crypto.randomBytes(OBJECT_BYTES) })
      if (r.status === 0 || !/Server has no space for new objects/.test(r.stderr)) failures.push(`${offset}: ${r.status} ${r.stderr.trim()}`)
    }
    t.same(failures, [], `${FAILED_CREATES} more creates on the full disk each answer NO_SPACE`)
    t.ok(
      freeBytes(root) >= freeBefore - LOG_GROWTH_MAX_BYTES,
      `the free space does not shrink with them but for log lines (${freeBefore} → ${freeBytes(root)} bytes)`,
    )
    const nodeDir = cluster.nodes[0]?.dir ?? ''
    t.same(
      (fs.readdirSync(nodeDir, { recursive: true }) as string[]).filter((name) => name.endsWith('.tmp')),
      [],
      'no temporary file is left on the full disk',
    )
    t.ok(isAlive(cluster.nodes[0]?.pid ?? 0), 'the node stays up')
    t.equal((await dog(['node', 'list'], { port })).status, 0, 'and answers')
    const readBack = await dog(['vdi', 'read', 'kept'], { port })
    t.ok(readBack.status === 0 && readBack.stdoutBytes.equals(kept), 'what was written before reads back')

    t.equal((await dog(['vdi', 'delete', 'filler'], { port })).status, 0, 'space freed')
    t.equal((await dog(['vdi', 'create', 'again', '8M'], { port })).status, 0)
    const again = crypto.randomBytes(8 * MiB)
    t.equal((await dog(['vdi', 'write', 'again'], { port, input: again })).status, 0, 'writes work again')
    const r = await dog(['vdi', 'read', 'again'], { port })
    t.ok(r.status === 0 && r.stdoutBytes.equals(again), 'and read back')
  },
)
