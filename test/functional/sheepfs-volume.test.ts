// Volumes on a real sheepfs mount: vdi/mount makes volume/NAME appear with the VDI's size (a
// missing VDI is ENOENT); data written with dd reads back identically with `dog vdi read` and
// what `dog vdi write` stores is seen through the volume; unallocated ranges read as zeros;
// snapshots mounted as NAME:TAG are read-only (EROFS) and keep their data after the working VDI
// is written; writes past the end are ENOSPC; fsync succeeds; vdi/unmount removes the file.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { dog, tempDir } from '../../harness/sheep.js'
import { errnoOf, mountSheepfs, startTestSheep } from '../sheepfs/helpers.js'

const MiB = 1024 * 1024
const OBJECT_SIZE = 4 * MiB
const VDI_SIZE = 24 * MiB

/** Reads `length` bytes at `offset` of a file with one positioned read per call. */
function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r')
  try {
    const out = Buffer.alloc(length)
    let done = 0
    while (done < length) {
      const n = fs.readSync(fd, out, done, length - done, offset + done)
      if (n === 0) break
      done += n
    }
    return out.subarray(0, done)
  } finally {
    fs.closeSync(fd)
  }
}

t.test('sheepfs volumes', async (t) => {
  const sheep = await startTestSheep(t)
  const port = sheep.port
  for (const [name, size] of [
    ['disk', VDI_SIZE],
    ['other', 8 * MiB],
  ] as const) {
    const created = await dog(['vdi', 'create', name, String(size)], { port })
    t.equal(created.status, 0, created.stderr)
  }
  const mount = await mountSheepfs(t, port)
  const at = (p: string) => path.join(mount.mountpoint, p)
  const work = tempDir('sheepfs-data-')
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }))

  t.test("vdi/mount makes a volume of the VDI's size; a missing VDI is ENOENT", async (t) => {
    fs.writeFileSync(at('vdi/mount'), 'disk\n')
    t.same(fs.readdirSync(at('volume')), ['disk'])
    const st = fs.statSync(at('volume/disk'))
    t.ok(st.isFile())
    t.equal(st.size, VDI_SIZE)
    fs.writeFileSync(at('vdi/mount'), 'disk\n')
    t.same(fs.readdirSync(at('volume')), ['disk'], 'mounting twice changes nothing')
    t.equal(
      errnoOf(() => fs.writeFileSync(at('vdi/mount'), 'missing\n')),
      'ENOENT',
    )
    t.equal(
      errnoOf(() => fs.writeFileSync(at('vdi/mount'), 'disk:nosuchtag\n')),
      'ENOENT',
      'a missing snapshot is ENOENT too',
    )
    t.equal(
      errnoOf(() => fs.writeFileSync(at('vdi/mount'), 'a/b\n')),
      'EINVAL',
    )
    t.same(fs.readdirSync(at('volume')), ['disk'])
  })

  t.test('an unwritten volume reads as zeros', async (t) => {
    const data = readAt(at('volume/disk'), 0, VDI_SIZE)
    t.equal(data.length, VDI_SIZE)
    t.ok(data.equals(Buffer.alloc(VDI_SIZE)), 'all zeros')
    t.equal(readAt(at('volume/disk'), VDI_SIZE - 10, 100).length, 10, 'reads stop at the end')
  })

  // 13 MiB + 4 KiB at 1 MiB: crosses object boundaries and ends inside an object
  const image = crypto.randomBytes(13 * MiB + 4096)
  const imageAt = 1 * MiB

  t.test('dd into the volume, dog vdi read gets the same bytes', async (t) => {
    fs.writeFileSync(path.join(work, 'image'), image)
    const dd = spawnSync('dd', [`if=${path.join(work, 'image')}`, `of=${at('volume/disk')}`, 'bs=1M', `seek=${imageAt / MiB}`, 'conv=notrunc,fsync'], {
      encoding: 'utf8',
    })
    t.equal(dd.status, 0, dd.stderr)
    const read = await dog(['vdi', 'read', 'disk', String(imageAt), String(image.length)], { port })
    t.equal(read.status, 0, read.stderr)
    t.ok(read.stdoutBytes.equals(image), 'byte-identical through dog')
    const whole = await dog(['vdi', 'read', 'disk'], { port })
    t.ok(whole.stdoutBytes.subarray(0, imageAt).equals(Buffer.alloc(imageAt)), 'zeros before')
    t.ok(whole.stdoutBytes.subarray(imageAt + image.length).equals(Buffer.alloc(VDI_SIZE - imageAt - image.length)), 'zeros after')
    t.ok(readAt(at('volume/disk'), imageAt, image.length).equals(image), 'and through the volume')
    // plain dd without conv=notrunc truncates first: that must change nothing
    const plain = spawnSync('dd', [`if=${path.join(work, 'image')}`, `of=${at('volume/disk')}`, 'bs=1M', 'count=1'], { encoding: 'utf8' })
    t.equal(plain.status, 0, plain.stderr)
    t.equal(fs.statSync(at('volume/disk')).size, VDI_SIZE, "the size stays the VDI's")
    t.ok(readAt(at('volume/disk'), 0, MiB).equals(image.subarray(0, MiB)))
    t.ok(readAt(at('volume/disk'), imageAt, image.length).equals(image), 'the rest is untouched')
  })

  t.test('what dog vdi write stores is seen through the volume', async (t) => {
    // the volume stays open across dog's write: the next open sees it
    const held = fs.openSync(at('volume/disk'), 'r')
    const patch = crypto.randomBytes(OBJECT_SIZE + 777)
    const patchAt = 4 * OBJECT_SIZE - 333 // into objects 4 and 5, which sheepfs has seen unallocated
    const written = await dog(['vdi', 'write', 'disk', String(patchAt), String(patch.length)], { port, input: patch })
    t.equal(written.status, 0, written.stderr)
    t.ok(readAt(at('volume/disk'), patchAt, patch.length).equals(patch), 'new data, also in new objects')
    fs.closeSync(held)
  })

  t.test("a sequential reader is read ahead, and still sees dog's writes shortly after", async (t) => {
    const fd = fs.openSync(at('volume/disk'), 'r')
    t.teardown(() => fs.closeSync(fd))
    const chunk = Buffer.alloc(128 * 1024)
    // two sequential reads start a read-ahead window over the rest of the stretch
    fs.readSync(fd, chunk, 0, chunk.length, 0)
    fs.readSync(fd, chunk, 0, chunk.length, chunk.length)
    const patch = crypto.randomBytes(4096)
    const patchAt = 3 * chunk.length
    const written = await dog(['vdi', 'write', 'disk', String(patchAt), String(patch.length)], { port, input: patch })
    t.equal(written.status, 0, written.stderr)
    await new Promise((r) => setTimeout(r, 400))
    const seen = Buffer.alloc(patch.length)
    fs.readSync(fd, seen, 0, seen.length, patchAt)
    t.ok(seen.equals(patch), 'the open file shows the new bytes once the read-ahead has aged out')
  })

  t.test('unaligned writes through the volume', async (t) => {
    const fd = fs.openSync(at('volume/disk'), 'r+')
    const bits = crypto.randomBytes(10_000)
    const bitsAt = OBJECT_SIZE - 5_000
    t.equal(fs.writeSync(fd, bits, 0, bits.length, bitsAt), bits.length)
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    const read = await dog(['vdi', 'read', 'disk', String(bitsAt), String(bits.length)], { port })
    t.ok(read.stdoutBytes.equals(bits), 'across an object boundary, read back by dog')
    const fd2 = fs.openSync(at('volume/disk'), 'r+')
    t.equal(
      errnoOf(() => fs.writeSync(fd2, Buffer.alloc(10), 0, 10, VDI_SIZE)),
      'ENOSPC',
      'a write past the end',
    )
    t.equal(fs.writeSync(fd2, Buffer.alloc(20, 7), 0, 20, VDI_SIZE - 10), 10, 'a write over the end is cut at the end')
    fs.closeSync(fd2)
  })

  t.test('snapshot volumes are read-only and keep their data', async (t) => {
    const before = readAt(at('volume/disk'), 0, VDI_SIZE)
    const snap = await dog(['vdi', 'snapshot', 'disk', '-s', 'first'], { port })
    t.equal(snap.status, 0, snap.stderr)
    fs.writeFileSync(at('vdi/mount'), 'disk:first\n')
    fs.writeFileSync(at('vdi/mount'), 'disk:1\n')
    t.same(fs.readdirSync(at('volume')).sort(), ['disk', 'disk:1', 'disk:first'])
    for (const name of ['disk:first', 'disk:1']) {
      const file = at(`volume/${name}`)
      t.equal(fs.statSync(file).mode & 0o777, 0o444, `${name} shows read-only`)
      t.equal(
        errnoOf(() => fs.openSync(file, 'r+')),
        'EROFS',
        `${name} cannot be opened for writing`,
      )
      t.equal(
        errnoOf(() => fs.writeFileSync(file, 'x')),
        'EROFS',
      )
      t.ok(readAt(file, 0, VDI_SIZE).equals(before), `${name} holds the data`)
    }
    // the working VDI is written after the snapshot: copy-on-write, the snapshot keeps its bytes
    const fresh = crypto.randomBytes(64 * 1024)
    const fd = fs.openSync(at('volume/disk'), 'r+')
    fs.writeSync(fd, fresh, 0, fresh.length, imageAt)
    fs.closeSync(fd)
    t.ok(readAt(at('volume/disk'), imageAt, fresh.length).equals(fresh), 'the working VDI has the new data')
    t.ok(readAt(at('volume/disk:first'), 0, VDI_SIZE).equals(before), 'the snapshot is unchanged')
    const read = await dog(['vdi', 'read', 'disk', '-s', 'first'], { port })
    t.ok(read.stdoutBytes.equals(before), 'dog agrees')
    const working = await dog(['vdi', 'read', 'disk', String(imageAt), String(fresh.length)], { port })
    t.ok(working.stdoutBytes.equals(fresh), 'dog reads the new data from the working VDI')
  })

  t.test('vdi/unmount removes the file', async (t) => {
    fs.writeFileSync(at('vdi/mount'), 'other\n')
    t.ok(fs.existsSync(at('volume/other')))
    const held = fs.openSync(at('volume/other'), 'r')
    fs.writeFileSync(at('vdi/unmount'), 'other\n')
    t.notOk(fs.existsSync(at('volume/other')), 'gone from volume/')
    t.equal(
      errnoOf(() => fs.openSync(at('volume/other'), 'r')),
      'ENOENT',
    )
    const buf = Buffer.alloc(4096, 1)
    t.equal(fs.readSync(held, buf, 0, buf.length, 0), 4096, 'a file left open still reads')
    t.ok(buf.equals(Buffer.alloc(4096)))
    fs.closeSync(held)
    t.equal(
      errnoOf(() => fs.writeFileSync(at('vdi/unmount'), 'other\n')),
      'ENOENT',
      'not mounted any more',
    )
    fs.writeFileSync(at('vdi/unmount'), 'disk:1\ndisk:first\n')
    t.same(fs.readdirSync(at('volume')), ['disk'])
  })
})
