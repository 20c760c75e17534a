// sheepfs's life as a process: started plainly it daemonizes and returns 0 once mounted; SIGTERM
// and `fusermount -u` both unmount and end it; a mount point left by a killed sheepfs is
// recovered by the next one; bad command lines and mount points fail with 1; a sheep that goes
// down makes I/O fail with EIO, and the mount works again once the sheep is back.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { processAlive } from '../../lib/proc.js'
import { dog, programEnv, tempDir, waitFor } from '../../harness/sheep.js'
import { SHEEPFS_BIN, errnoOf, isSheepfsMounted, mountSheepfs, startTestSheep, waitUnmounted } from '../sheepfs/helpers.js'

const MiB = 1024 * 1024

function runSheepfs(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(SHEEPFS_BIN, args, { encoding: 'utf8', timeout: 60_000, env: programEnv() })
}

t.test('sheepfs as a process', async (t) => {
  const sheep = await startTestSheep(t)
  const port = sheep.port

  t.test('command line', async (t) => {
    const help = runSheepfs(['-h'])
    t.equal(help.status, 0)
    t.match(help.stdout, /^Usage: sheepfs \[OPTION\]\.\.\. MOUNTPOINT\n/)
    for (const letter of ['a', 'p', 'd', 'f', 'k', 'o', 'h']) t.match(help.stdout, new RegExp(`-${letter}, --`), `-${letter} is listed`)
    t.equal(runSheepfs([]).status, 1, 'a mount point is needed')
    t.equal(runSheepfs(['-p', '0', '/tmp']).status, 1, 'bad port')
    t.equal(runSheepfs(['-x', '/tmp']).status, 1, 'unknown option')
    const scratch = tempDir('sheepfs-none-')
    t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }))
    const missing = runSheepfs(['-p', String(port), path.join(scratch, 'absent')])
    t.equal(missing.status, 1, 'a missing mount point')
    t.match(missing.stderr, /No such file or directory/)
  })

  t.test('daemon: started plainly, ended by SIGTERM', async (t) => {
    const mount = await mountSheepfs(t, port, { daemon: true })
    t.ok(isSheepfsMounted(mount.mountpoint), 'mounted when the command returns')
    t.equal(fs.readFileSync(path.join(mount.mountpoint, 'node/list'), 'utf8'), (await dog(['node', 'list'], { port })).stdout)
    process.kill(mount.pid, 'SIGTERM')
    t.ok(await waitFor(() => !processAlive(mount.pid), 15_000), 'the daemon exits')
    t.notOk(isSheepfsMounted(mount.mountpoint), 'and unmounted')
    t.same(fs.readdirSync(mount.mountpoint), [], 'the mount point is an empty directory again')
  })

  t.test('daemon: ended by fusermount -u', async (t) => {
    const mount = await mountSheepfs(t, port, { daemon: true })
    const r = spawnSync('fusermount', ['-u', mount.mountpoint], { encoding: 'utf8' })
    t.equal(r.status, 0, r.stderr)
    t.ok(await waitUnmounted(mount.mountpoint))
    t.ok(await waitFor(() => !processAlive(mount.pid), 15_000), 'the daemon notices and exits')
  })

  t.test('a second sheepfs on a live mount point is refused', async (t) => {
    const mount = await mountSheepfs(t, port)
    const again = runSheepfs(['-p', String(port), mount.mountpoint])
    t.equal(again.status, 1)
    t.match(again.stderr, /already a sheepfs mount point/)
    t.ok(isSheepfsMounted(mount.mountpoint), 'the first one is untouched')
  })

  t.test('a mount point left by a killed sheepfs is recovered', async (t) => {
    const first = await mountSheepfs(t, port)
    process.kill(first.pid, 'SIGKILL')
    t.ok(await waitFor(() => !processAlive(first.pid), 10_000))
    t.match(
      errnoOf(() => fs.readdirSync(first.mountpoint)),
      /^(ENOTCONN|ECONNABORTED)$/,
      'the mount point is stale',
    )
    const second = await mountSheepfs(t, port, { mountpoint: first.mountpoint, daemon: true })
    t.same(fs.readdirSync(second.mountpoint).sort(), ['cluster', 'config', 'node', 'vdi', 'volume'], 'mounted again')
    await second.stop()
    t.notOk(isSheepfsMounted(second.mountpoint))
  })

  t.test('the mount survives a sheep restart', async (t) => {
    t.equal((await dog(['vdi', 'create', 'keep', '16M'], { port })).status, 0)
    const mount = await mountSheepfs(t, port)
    const volume = path.join(mount.mountpoint, 'volume/keep')
    fs.writeFileSync(path.join(mount.mountpoint, 'vdi/mount'), 'keep')
    const data = crypto.randomBytes(6 * MiB)
    const fd = fs.openSync(volume, 'r+')
    fs.writeSync(fd, data, 0, data.length, 0)
    fs.fsyncSync(fd)
    const syncFd = fs.openSync(volume, fs.constants.O_RDWR | fs.constants.O_DSYNC)

    await sheep.stop()
    const buf = Buffer.alloc(4096)
    t.equal(
      errnoOf(() => fs.readSync(fd, buf, 0, buf.length, 0)),
      'EIO',
      'reading allocated data fails with EIO',
    )
    t.equal(fs.writeSync(fd, buf, 0, buf.length, 0), buf.length, 'a write is taken (write-behind)')
    t.equal(
      errnoOf(() => fs.fsyncSync(fd)),
      'EIO',
      'and fsync says it could not be stored',
    )
    t.equal(
      errnoOf(() => fs.writeSync(syncFd, buf, 0, buf.length, 0)),
      'EIO',
      'an O_DSYNC write fails with EIO at once',
    )
    fs.closeSync(syncFd)
    t.equal(
      errnoOf(() => fs.openSync(volume, 'r')),
      'EIO',
      'opening the volume fails with EIO',
    )
    t.equal(
      errnoOf(() => fs.readFileSync(path.join(mount.mountpoint, 'cluster/info'))),
      'EIO',
      'status files fail with EIO',
    )
    t.ok(processAlive(mount.pid), 'sheepfs keeps running')
    t.ok(fs.readdirSync(path.join(mount.mountpoint, 'volume')).includes('keep'))

    await sheep.restart()
    t.equal(fs.readSync(fd, buf, 0, buf.length, 4096), buf.length, 'the open file reads again')
    t.ok(buf.equals(data.subarray(4096, 8192)))
    const fresh = crypto.randomBytes(MiB)
    fs.writeSync(fd, fresh, 0, fresh.length, 8 * MiB)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const read = await dog(['vdi', 'read', 'keep', '0', String(9 * MiB)], { port })
    t.ok(read.stdoutBytes.subarray(0, data.length).equals(data), 'the data written before the restart')
    t.ok(read.stdoutBytes.subarray(8 * MiB).equals(fresh), 'and after it')
    t.equal(fs.readFileSync(path.join(mount.mountpoint, 'cluster/info'), 'utf8'), (await dog(['cluster', 'info'], { port })).stdout)
  })
})
