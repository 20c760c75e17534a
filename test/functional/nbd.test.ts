// Modern QEMU tools against sheep's built-in NBD server: a 3-node cluster (copies 3) with `-N`
// on one node; Debian's qemu-img, qemu-io reach VDIs as nbd://127.0.0.1:PORT/NAME. Data written
// through NBD must read back byte for byte with `dog vdi read` and the other way round; a
// snapshot exported as NAME:TAG is read-only and keeps its bytes; a missing export fails
// cleanly; two clients at once work; qemu-img map and convert skip what was never written (or
// was discarded); and afterwards the sheep still answers dog.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { type TestCluster, startCluster } from '../../harness/cluster.js'
import { dog, freePort, isAlive, runProgram } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 64 * MiB
const IMAGE_BYTES = 16 * MiB
const QEMU_TOOLS = ['/usr/bin/qemu-img', '/usr/bin/qemu-io']
/** A QEMU tool that has not finished by then has hung on the server. */
const TOOL_TIMEOUT_MS = 30_000

const run = (cmd: string, args: string[]) => runProgram(cmd, args, { timeoutMs: TOOL_TIMEOUT_MS })

const missingTools = QEMU_TOOLS.filter((p) => !fs.existsSync(p))

t.test('qemu-img and qemu-io through sheep -N', { skip: missingTools.length > 0 ? `missing ${missingTools.join(', ')}` : false }, async (t) => {
  let cluster: TestCluster | undefined
  const work = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'nbd-test-'))
  t.teardown(async () => {
    await cluster?.close()
    fs.rmSync(work, { recursive: true, force: true })
  })
  const nbdPort = await freePort()
  cluster = await startCluster(3, { start: 0 })
  await cluster.start(0, ['-N', `127.0.0.1:${nbdPort}`])
  await cluster.start(1)
  await cluster.start(2)
  const sheepPort = cluster.ports[0]
  const dogOk = async (args: string[], input?: Buffer) => {
    const r = await dog([...args, '-p', String(sheepPort)], { input })
    if (r.status !== 0) throw new Error(`dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  const url = (name: string) => `nbd://127.0.0.1:${nbdPort}/${name}`
  const qemuIo = (name: string, commands: string[]) => run('/usr/bin/qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), url(name)])

  await dogOk(['cluster', 'format', '-c', '3'])
  await dogOk(['vdi', 'create', 'vm', String(VDI_SIZE)])
  await dogOk(['vdi', 'create', 'vm2', String(16 * MiB)])

  const info = await run('/usr/bin/qemu-img', ['info', url('vm')])
  t.equal(info.status, 0, info.stderr)
  t.match(info.stdout, /virtual size: 64 MiB \(67108864 bytes\)/, 'qemu-img info shows the virtual size')

  const image = crypto.randomBytes(IMAGE_BYTES)
  const imageFile = path.join(work, 'image.raw')
  fs.writeFileSync(imageFile, image)
  const convertIn = await run('/usr/bin/qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', imageFile, url('vm')])
  t.equal(convertIn.status, 0, `qemu-img convert into the export ${convertIn.stderr}`)
  t.ok((await dogOk(['vdi', 'read', 'vm', '0', String(IMAGE_BYTES)])).stdoutBytes.equals(image), 'dog vdi read returns exactly the bytes qemu-img wrote')

  const dogData = crypto.randomBytes(4 * MiB)
  await dogOk(['vdi', 'write', 'vm', String(IMAGE_BYTES), String(dogData.length)], dogData)
  const outFile = path.join(work, 'out.raw')
  const convertOut = await run('/usr/bin/qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('vm'), outFile])
  t.equal(convertOut.status, 0, convertOut.stderr)
  const out = fs.readFileSync(outFile)
  t.equal(out.length, VDI_SIZE)
  t.ok(out.subarray(0, IMAGE_BYTES).equals(image), 'qemu-img reads back the image')
  t.ok(out.subarray(IMAGE_BYTES, IMAGE_BYTES + dogData.length).equals(dogData), 'qemu-img reads what dog vdi write wrote')
  t.ok(out.subarray(IMAGE_BYTES + dogData.length).equals(Buffer.alloc(VDI_SIZE - IMAGE_BYTES - dogData.length)), 'the rest reads as zeros')

  const patternAt = 20 * MiB + 512
  const io = await qemuIo('vm', [`write -P 0xab ${patternAt} 65536`, `read -P 0xab ${patternAt} 65536`, 'flush'])
  t.equal(io.status, 0, io.stderr)
  t.match(io.stdout, /wrote 65536\/65536 bytes at offset 20972032/, 'qemu-io write')
  t.match(io.stdout, /read 65536\/65536 bytes at offset 20972032/, 'qemu-io read with pattern check')
  t.notMatch(io.stdout + io.stderr, /Pattern verification failed|error/i)
  t.ok((await dogOk(['vdi', 'read', 'vm', String(patternAt), '65536'])).stdoutBytes.equals(Buffer.alloc(65536, 0xab)), 'dog sees the pattern')

  await dogOk(['vdi', 'snapshot', '-s', 'before', 'vm'])
  const overwrite = await qemuIo('vm', ['write -P 0xcd 0 1048576'])
  t.equal(overwrite.status, 0, `the working VDI stays writable after the snapshot ${overwrite.stderr}`)
  const snapWrite = await qemuIo('vm:before', ['write -P 0xee 0 4096'])
  // qemu sees NBD_FLAG_READ_ONLY and refuses to open the export for writing
  t.not(snapWrite.status, 0, 'a write to NAME:TAG fails')
  t.match(snapWrite.stdout + snapWrite.stderr, /Permission denied|read-only|not permitted/i, `because it is read-only: ${snapWrite.stderr.trim()}`)
  const snapFile = path.join(work, 'snap.raw')
  const snapOut = await run('/usr/bin/qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('vm:before'), snapFile])
  t.equal(snapOut.status, 0, snapOut.stderr)
  t.ok(fs.readFileSync(snapFile).subarray(0, IMAGE_BYTES).equals(image), 'the snapshot export holds the old data')
  t.ok((await dogOk(['vdi', 'read', 'vm', '0', String(MiB)])).stdoutBytes.equals(Buffer.alloc(MiB, 0xcd)), 'the working VDI has the new data')

  const missing = await run('/usr/bin/qemu-img', ['info', url('no-such-vdi')])
  t.not(missing.status, 0, 'a missing export fails')
  t.match(missing.stderr, /not available|No VDI/i, `with a clear reason: ${missing.stderr.trim()}`)

  // two clients at once, on one VDI and on another
  const [a, b, c] = await Promise.all([
    qemuIo('vm2', ['write -P 0x11 0 2097152', 'read -P 0x11 0 2097152']),
    qemuIo('vm2', ['write -P 0x22 4194304 2097152', 'read -P 0x22 4194304 2097152']),
    qemuIo('vm', ['read -P 0xab 20972032 65536']),
  ])
  for (const r of [a, b, c]) {
    t.equal(r.status, 0, r.stderr)
    t.notMatch(r.stdout, /Pattern verification failed/)
  }
  const vm2 = (await dogOk(['vdi', 'read', 'vm2', '0', String(6 * MiB)])).stdoutBytes
  t.ok(vm2.subarray(0, 2 * MiB).equals(Buffer.alloc(2 * MiB, 0x11)) && vm2.subarray(4 * MiB).equals(Buffer.alloc(2 * MiB, 0x22)), "both clients' writes landed")

  // base:allocation: qemu-img map sees the objects written and nothing else; a discard frees one
  await dogOk(['vdi', 'create', 'sparse', String(VDI_SIZE)])
  const written = await qemuIo('sparse', ['write -P 0x5a 8388608 65536', 'write -P 0x5b 41943040 4096', 'flush'])
  t.equal(written.status, 0, written.stderr)
  const map = async () => {
    const r = await run('/usr/bin/qemu-img', ['map', '--output=json', '-f', 'raw', url('sparse')])
    t.equal(r.status, 0, r.stderr)
    const extents = JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean }>
    return extents.filter((e) => e.data).map((e) => [e.start, e.length])
  }
  t.same(
    await map(),
    [
      [8 * MiB, 4 * MiB],
      [40 * MiB, 4 * MiB],
    ],
    'qemu-img map: data exactly where objects were written',
  )
  const discarded = await qemuIo('sparse', ['discard 41943040 4194304', 'flush'])
  t.equal(discarded.status, 0, discarded.stderr)
  t.same(await map(), [[8 * MiB, 4 * MiB]], 'a discarded object is a hole again')
  const sparseOut = path.join(work, 'sparse.qcow2')
  const convertSparse = await run('/usr/bin/qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', url('sparse'), sparseOut])
  t.equal(convertSparse.status, 0, convertSparse.stderr)
  const converted = await run('/usr/bin/qemu-img', ['map', '--output=json', sparseOut])
  const convertedData = (JSON.parse(converted.stdout) as Array<{ start: number; length: number; data: boolean }>).filter((e) => e.data)
  t.same(
    convertedData.map((e) => [e.start, e.length]),
    [[8 * MiB, 64 * 1024]],
    'qemu-img convert copies only the data (the rest of the object reads as zeros and is skipped)',
  )

  t.ok(
    cluster.nodes.every((n) => n && isAlive(n.pid)),
    'every sheep is alive',
  )
  const nodes = await dogOk(['node', 'list'])
  t.equal(nodes.stdout.trim().split('\n').length, 4, 'the NBD node still answers dog: three members')
})
