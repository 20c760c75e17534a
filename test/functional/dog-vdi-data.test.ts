// Acceptance test of dog's data path on one real sheep formatted with -c 1: 24 MiB of random data
// stored with `dog vdi write` comes back byte-identical from `dog vdi read` (whole, and in parts
// at odd offsets and lengths), also after overwrites inside existing objects and after the daemon
// restarts; `vdi delete` removes the VDI and its data objects (the inode file stays); `vdi resize`
// grows and refuses to shrink.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { dog, startSheep, stopSheep, tempDir, waitFor, type SheepProcess } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const OBJECT_SIZE = 4 * MiB
const VDI_SIZE = 32 * MiB
const DATA_SIZE = 24 * MiB

/** Reads back a range and compares it with what the VDI should hold. */
async function expectRange(t: Test, port: number, expected: Buffer, offset: number, length: number): Promise<void> {
  const r = await dog(['vdi', 'read', 'data', String(offset), String(length)], { port })
  t.equal(r.status, 0, `read ${length} bytes at ${offset}: ${r.stderr}`)
  t.equal(r.stdoutBytes.length, length, `${length} bytes at ${offset}`)
  t.ok(r.stdoutBytes.equals(expected.subarray(offset, offset + length)), `bytes ${offset}..${offset + length} are identical`)
}

/** The data object files of a VDI in the sheep's object directory. */
function dataObjectFiles(dir: string, vid: string): string[] {
  return fs.readdirSync(path.join(dir, 'obj')).filter((name) => name.startsWith(`00${vid}`))
}

/** Waits until the (restarted) sheep serves I/O. */
async function clusterRunning(port: number): Promise<boolean> {
  return waitFor(async () => (await dog(['cluster', 'info'], { port })).stdout.startsWith('Cluster status: running'), 30_000, 200)
}

t.test('dog vdi write / read round trip on one sheep', async (t) => {
  // a cluster of its own: an event file nobody else uses
  const root = tempDir('dog-vdi-data-')
  const dir = path.join(root, 'sheep')
  const args = ['-c', `local:${path.join(root, 'shm')}`]
  let sheep: SheepProcess = await startSheep({ dir, args })
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(root, { recursive: true, force: true })
  })
  const port = sheep.port

  const formatted = await dog(['cluster', 'format', '-c', '1'], { port })
  t.equal(formatted.status, 0, formatted.stderr)
  const created = await dog(['vdi', 'create', '-v', '-r', 'data', String(VDI_SIZE)], { port })
  t.equal(created.status, 0, created.stderr)
  const vid = created.stdout.trim()
  t.match(vid, /^[0-9a-f]{6}$/, 'vdi create -v -r prints the vid')

  // what the VDI holds: random data, then zeros up to its end
  const image = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(DATA_SIZE).copy(image)

  await t.test('24 MiB written through stdin reads back identically', async (t) => {
    const w = await dog(['vdi', 'write', 'data'], { port, input: image.subarray(0, DATA_SIZE) })
    t.equal(w.status, 0, w.stderr)
    t.equal(w.stdout, '')
    const r = await dog(['vdi', 'read', 'data'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdoutBytes.length, VDI_SIZE, 'the whole VDI, zeros after the data')
    t.ok(r.stdoutBytes.equals(image), 'byte-identical')
    // stdin ends at an object boundary: no object of zeros is allocated after it (the original
    // wrote one; dog.8 lists the difference)
    t.equal(dataObjectFiles(dir, vid).length, DATA_SIZE / OBJECT_SIZE, 'one object file per 4 MiB and no more')
  })

  await t.test('partial reads at odd offsets and lengths', async (t) => {
    await expectRange(t, port, image, 1, 1)
    await expectRange(t, port, image, OBJECT_SIZE - 3, 7)
    await expectRange(t, port, image, 12345, 7777777)
    await expectRange(t, port, image, 3 * OBJECT_SIZE + 999, 2 * OBJECT_SIZE + 1)
    await expectRange(t, port, image, DATA_SIZE - 5, 10)
    await expectRange(t, port, image, VDI_SIZE - 4097, 4097)
    const clipped = await dog(['vdi', 'read', 'data', String(VDI_SIZE - 10), '1M'], { port })
    t.equal(clipped.stdoutBytes.length, 10, 'a length past the end is cut at the end')
    const beyond = await dog(['vdi', 'read', 'data', String(VDI_SIZE + 1)], { port })
    t.equal(beyond.status, 1)
    t.equal(beyond.stderr, 'Read offset is beyond the end of the VDI\n')
  })

  await t.test('writes inside existing objects and across them', async (t) => {
    const inside = crypto.randomBytes(1000)
    const w1 = await dog(['vdi', 'write', 'data', '5000001', '1000'], { port, input: inside })
    t.equal(w1.status, 0, w1.stderr)
    inside.copy(image, 5000001)
    await expectRange(t, port, image, 4999000, 4000)

    const across = crypto.randomBytes(OBJECT_SIZE + 12345)
    const at = 2 * OBJECT_SIZE - 777
    const w2 = await dog(['vdi', 'write', 'data', String(at), String(across.length)], { port, input: across })
    t.equal(w2.status, 0, w2.stderr)
    across.copy(image, at)
    await expectRange(t, port, image, at - 1, across.length + 2)

    // without a length, the chunk stdin ends in is zero-padded up to its object's end (spec §4.13)
    const unbounded = crypto.randomBytes(OBJECT_SIZE + 999)
    const from = 4 * OBJECT_SIZE + 5
    const w3 = await dog(['vdi', 'write', 'data', String(from)], { port, input: unbounded })
    t.equal(w3.status, 0, w3.stderr)
    unbounded.copy(image, from)
    image.fill(0, from + unbounded.length, 6 * OBJECT_SIZE)
    await expectRange(t, port, image, from - 10, 2 * OBJECT_SIZE)

    // a write into the unwritten tail creates the object, zero-filled around the data
    const tail = crypto.randomBytes(333)
    const w4 = await dog(['vdi', 'write', 'data', String(DATA_SIZE + 4321), '333'], { port, input: tail })
    t.equal(w4.status, 0, w4.stderr)
    tail.copy(image, DATA_SIZE + 4321)
    const whole = await dog(['vdi', 'read', 'data'], { port })
    t.ok(whole.stdoutBytes.equals(image), 'the whole VDI is as expected')
  })

  await t.test('the data survives a restart of the daemon', async (t) => {
    await stopSheep(sheep)
    sheep = await startSheep({ dir, port, args })
    t.ok(await clusterRunning(port), 'the restarted sheep runs the cluster')
    const r = await dog(['vdi', 'read', 'data'], { port })
    t.equal(r.status, 0, r.stderr)
    t.ok(r.stdoutBytes.equals(image), 'byte-identical after the restart')
    await expectRange(t, port, image, OBJECT_SIZE * 5 + 17, 54321)
  })

  await t.test('vdi resize grows and refuses to shrink', async (t) => {
    const grown = await dog(['vdi', 'resize', 'data', '48M'], { port })
    t.equal(grown.status, 0, grown.stderr)
    const listed = await dog(['vdi', 'list', 'data', '-r'], { port })
    t.match(listed.stdout, new RegExp(`^= data 0 ${48 * MiB} `))
    const r = await dog(['vdi', 'read', 'data', String(VDI_SIZE), '1M'], { port })
    t.ok(r.stdoutBytes.equals(Buffer.alloc(MiB)), 'the new space reads as zeros')
    const shrunk = await dog(['vdi', 'resize', 'data', '40M'], { port })
    t.equal(shrunk.status, 64)
    t.match(shrunk.stderr, /^Shrinking VDIs is not implemented\n/)
    t.match(shrunk.stdout, /^Usage: dog vdi resize /)
    const still = await dog(['vdi', 'list', 'data', '-r'], { port })
    t.equal(still.stdout, listed.stdout, 'the size did not change')
  })

  await t.test('vdi delete removes the VDI and its data objects', async (t) => {
    t.ok(dataObjectFiles(dir, vid).length > 0)
    const deleted = await dog(['vdi', 'delete', 'data'], { port })
    t.equal(deleted.status, 0, deleted.stderr)
    t.equal(deleted.stderr, '')
    const listed = await dog(['vdi', 'list', '-r'], { port })
    t.equal(listed.stdout, '', 'vdi list no longer shows it')
    t.ok(await waitFor(() => dataObjectFiles(dir, vid).length === 0, 20_000), 'its data object files are gone')
    t.ok(fs.existsSync(path.join(dir, 'obj', `80${vid}00000000`)), 'the inode file stays')
    const again = await dog(['vdi', 'read', 'data'], { port })
    t.equal(again.status, 1)
    t.match(again.stderr, /^Failed to open VDI data \(snapshot id: 0 snapshot tag: \): No VDI found\n$/)
  })
})
