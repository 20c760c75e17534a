// Write-behind and read-ahead on a real sheepfs mount: a write kept open is on the sheep (dog
// sees it) shortly after without fsync or close; random overlapping writes, read back through
// the volume in between, end up exactly as written; config/write_behind 0 and `sheepfs -w`
// answer a write only once the sheep has it; stopping sheepfs sends what is still buffered.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { processAlive } from '../../lib/proc.js'
import { dog, waitFor } from '../../harness/sheep.js'
import { errnoOf, mountSheepfs, startTestSheep } from '../sheepfs/helpers.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
/** Bounds how long a test waits for buffered data to reach the sheep (the delay is 100 ms). */
const VISIBLE_WAIT_MS = 5_000

t.test('sheepfs write-behind and read-ahead', async (t) => {
  const sheep = await startTestSheep(t)
  const port = sheep.port
  for (const name of ['open', 'random', 'through', 'stopped']) {
    const created = await dog(['vdi', 'create', name, String(VDI_SIZE)], { port })
    t.equal(created.status, 0, created.stderr)
  }
  const mount = await mountSheepfs(t, port)
  const at = (p: string) => path.join(mount.mountpoint, p)
  const dogRead = async (name: string, offset: number, length: number): Promise<Buffer> => {
    const read = await dog(['vdi', 'read', name, String(offset), String(length)], { port })
    if (read.status !== 0) throw new Error(`dog vdi read ${name}: ${read.stderr}`)
    return read.stdoutBytes
  }

  t.test('a write to a file kept open reaches the sheep shortly, without fsync or close', async (t) => {
    fs.writeFileSync(at('vdi/mount'), 'open\n')
    const fd = fs.openSync(at('volume/open'), 'r+')
    t.teardown(() => fs.closeSync(fd))
    const data = crypto.randomBytes(MiB + 4096) // ends inside an object: part of it stays buffered
    t.equal(fs.writeSync(fd, data, 0, data.length, 2 * MiB), data.length)
    const seen = await waitFor(async () => (await dogRead('open', 2 * MiB, data.length)).equals(data), VISIBLE_WAIT_MS, 50)
    t.ok(seen, 'dog reads the new bytes while the file is still open')
  })

  t.test('random overlapping writes end up as written, also read back in between', async (t) => {
    fs.writeFileSync(at('vdi/mount'), 'random\n')
    const model = Buffer.alloc(VDI_SIZE)
    const fd = fs.openSync(at('volume/random'), 'r+')
    let next = 0
    for (let i = 0; i < 400; i++) {
      // mostly sequential runs of FUSE-sized writes, with jumps back over what was just written
      const length = 1 + crypto.randomInt(256 * 1024)
      const offset = crypto.randomInt(8) === 0 ? crypto.randomInt(VDI_SIZE - length) : Math.min(next, VDI_SIZE - length)
      const data = crypto.randomBytes(length)
      t.equal(fs.writeSync(fd, data, 0, length, offset), length)
      data.copy(model, offset)
      next = (offset + length) % VDI_SIZE
      if (i % 50 === 49) {
        const checkAt = crypto.randomInt(VDI_SIZE - MiB)
        const back = Buffer.alloc(MiB)
        fs.readSync(fd, back, 0, back.length, checkAt)
        if (!back.equals(model.subarray(checkAt, checkAt + MiB))) t.fail(`a read through the volume after write ${i} differs`)
      }
    }
    fs.closeSync(fd)
    t.ok((await dogRead('random', 0, VDI_SIZE)).equals(model), 'after close, dog reads exactly what was written')
  })

  t.test('config/write_behind 0: a write is on the sheep when it returns', async (t) => {
    fs.writeFileSync(at('vdi/mount'), 'through\n')
    t.equal(fs.readFileSync(at('config/write_behind'), 'utf8'), '1\n', 'on by default')
    fs.writeFileSync(at('config/write_behind'), '0\n')
    t.teardown(() => fs.writeFileSync(at('config/write_behind'), '1\n'))
    t.equal(fs.readFileSync(at('config/write_behind'), 'utf8'), '0\n')
    const fd = fs.openSync(at('volume/through'), 'r+')
    t.teardown(() => fs.closeSync(fd))
    for (let round = 0; round < 3; round++) {
      const data = crypto.randomBytes(100_000)
      const offset = round * 3 * MiB + 12_345
      t.equal(fs.writeSync(fd, data, 0, data.length, offset), data.length)
      t.ok((await dogRead('through', offset, data.length)).equals(data), `write ${round} is readable by dog at once`)
    }
    t.equal(
      errnoOf(() => fs.writeFileSync(at('config/write_behind'), 'maybe\n')),
      'EINVAL',
    )
  })

  t.test('sheepfs -w mounts write-through', async (t) => {
    const strict = await mountSheepfs(t, port, { args: ['-w'] })
    t.equal(fs.readFileSync(path.join(strict.mountpoint, 'config/write_behind'), 'utf8'), '0\n')
    await strict.stop()
  })

  t.test('stopping sheepfs sends what is still buffered', async (t) => {
    const own = await mountSheepfs(t, port)
    fs.writeFileSync(path.join(own.mountpoint, 'vdi/mount'), 'stopped\n')
    const fd = fs.openSync(path.join(own.mountpoint, 'volume/stopped'), 'r+')
    const data = crypto.randomBytes(300_000)
    t.equal(fs.writeSync(fd, data, 0, data.length, 5 * MiB), data.length)
    process.kill(own.pid, 'SIGTERM')
    t.ok(await waitFor(() => !processAlive(own.pid), 30_000), 'sheepfs exits')
    errnoOf(() => fs.closeSync(fd)) // the mount is gone; whatever close says does not matter
    t.ok((await dogRead('stopped', 5 * MiB, data.length)).equals(data), 'dog reads the data written just before the stop')
  })
})
