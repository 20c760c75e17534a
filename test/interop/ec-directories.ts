// Erasure-coded data moved between the original Sheepdog and ours through their data
// directories (issue #13): six original sheep format 4:2 and write an EC VDI with the original
// dog; the strip files they wrote must be byte for byte what our encoder makes of the same
// bytes; then our sheep start on the very same directories (same ports: the same nodes) and
// read every byte, write more, serve the original dog (read, vdi check) and survive a killed
// node; the original sheep, started on the directories once more, read what ours wrote. CI does
// not run this (it needs the original binaries, built from the public source); by hand:
//
//   npx tsx test/interop/ec-directories.ts /path/to/original/sheep /path/to/original/dog
//
// It prints one line per check and ends with `N passed, M failed`.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { erasureCoder } from '../../lib/ec/codec.js'
import { startCluster, type TestCluster } from '../../harness/cluster.js'
import { dog, tempDir, waitFor, type DogResult } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const NODES = 6
const OBJECT_SIZE = 4 * MiB
const VDI_SIZE = 16 * MiB
const CLUSTER_UP_MS = 60_000

const [origSheep, origDog] = process.argv.slice(2)
if (!origSheep || !origDog || !fs.existsSync(origSheep) || !fs.existsSync(origDog)) {
  console.error('usage: npx tsx test/interop/ec-directories.ts ORIGINAL_SHEEP ORIGINAL_DOG')
  process.exit(64)
}

let passed = 0
let failed = 0
function check(ok: boolean, what: string, detail = ''): void {
  if (ok) passed++
  else failed++
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}${ok || !detail ? '' : ` (${detail.trim()})`}`)
}

/** Runs the original dog against `port`, feeding `input`. */
function origDogRun(args: string[], port: number, input?: Buffer | string): Promise<DogResult> {
  return dog(args, { port, input, bin: origDog })
}

/** `dog cluster info` of either dog says running. */
async function waitRunning(port: number): Promise<boolean> {
  return waitFor(async () => (await dog(['cluster', 'info'], { port })).stdout.startsWith('Cluster status: running'), CLUSTER_UP_MS, 500)
}

/** The strip files of data object `idx` of `vid` (hex), by strip index, over every node's obj/. */
function stripFiles(root: string, vid: string, idx: number): Map<number, Buffer> {
  const oid = `00${vid}${idx.toString(16).padStart(8, '0')}`
  const strips = new Map<number, Buffer>()
  for (let n = 0; n < NODES; n++) {
    const dir = path.join(root, `n${n}`, 'obj')
    if (!fs.existsSync(dir)) continue
    for (const name of fs.readdirSync(dir)) {
      const m = new RegExp(`^${oid}_(\\d+)$`).exec(name)
      if (m) strips.set(Number(m[1]), fs.readFileSync(path.join(dir, name)))
    }
  }
  return strips
}

/** Whether the strips on disk are exactly what our encoder makes of `objectBytes`. */
function stripsMatch(root: string, vid: string, idx: number, objectBytes: Buffer): { ok: boolean; detail: string } {
  const expected = erasureCoder({ d: 4, p: 2 }).encode(objectBytes)
  const found = stripFiles(root, vid, idx)
  if (found.size !== expected.length) return { ok: false, detail: `${found.size} strip files` }
  for (const [i, strip] of expected.entries()) {
    if (!found.get(i)?.equals(strip)) return { ok: false, detail: `strip ${i} differs` }
  }
  return { ok: true, detail: '' }
}

async function startOn(root: string, ports: number[], bin?: string): Promise<TestCluster> {
  // the two local drivers keep different event files: each cluster starts with none
  fs.rmSync(path.join(root, 'shm'), { force: true })
  const cluster = await startCluster(NODES, { start: 0, root, bin })
  ports.forEach((p, i) => {
    cluster.ports[i] = p
  })
  await Promise.all(ports.map((_, i) => cluster.start(i)))
  return cluster
}

async function main(): Promise<void> {
  const root = tempDir('ec-interop-')
  const image = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(12 * MiB).copy(image)
  let cluster: TestCluster | undefined
  try {
    // 1. the original formats 4:2 and writes
    cluster = await startCluster(NODES, { root, bin: origSheep })
    const ports = [...cluster.ports]
    const port = ports[0] as number
    const format = await origDogRun(['cluster', 'format', '-c', '4:2'], port)
    check(format.status === 0, 'original: cluster format -c 4:2', format.stderr)
    const created = await origDogRun(['vdi', 'create', '-v', '-c', '4:2', 'ec', String(VDI_SIZE)], port)
    check(created.status === 0, 'original: vdi create -c 4:2', created.stderr)
    const vid = (/([0-9a-f]+)\s*$/.exec(created.stdout)?.[1] ?? '').padStart(6, '0')
    const wrote = await origDogRun(['vdi', 'write', 'ec', '0', String(12 * MiB)], port, image.subarray(0, 12 * MiB))
    check(wrote.status === 0, 'original: vdi write 12 MiB', wrote.stderr)
    const patch = crypto.randomBytes(3000)
    patch.copy(image, 1000)
    check((await origDogRun(['vdi', 'write', 'ec', '1000', '3000'], port, patch)).status === 0, 'original: an unaligned write')
    for (let idx = 0; idx < 3; idx++) {
      const m = stripsMatch(root, vid, idx, image.subarray(idx * OBJECT_SIZE, (idx + 1) * OBJECT_SIZE))
      check(m.ok, `object ${idx}: the original's six strip files are byte for byte our encoder's`, m.detail)
    }
    await cluster.close({ keepFiles: true })
    cluster = undefined

    // 2. ours on the original's directories
    cluster = await startOn(root, ports)
    check(await waitRunning(port), 'ours on the original directories: the cluster runs')
    const read = await dog(['vdi', 'read', 'ec'], { port })
    check(read.status === 0 && read.stdoutBytes.equals(image), 'ours reads the VDI the original wrote, byte for byte', read.stderr)
    const list = await dog(['vdi', 'list', 'ec'], { port })
    check(/\s4:2\s/.test(list.stdout), 'vdi list shows 4:2', list.stdout)
    const more = crypto.randomBytes(2 * MiB + 100)
    more.copy(image, 5 * MiB + 11)
    const wroteOurs = await dog(['vdi', 'write', 'ec', String(5 * MiB + 11), String(more.length)], { port, input: more })
    check(wroteOurs.status === 0, 'ours writes into it', wroteOurs.stderr)
    const fresh = crypto.randomBytes(MiB)
    fresh.copy(image, 13 * MiB)
    check((await dog(['vdi', 'write', 'ec', String(13 * MiB), String(MiB)], { port, input: fresh })).status === 0, 'ours writes a new object')
    for (let idx = 0; idx < 4; idx++) {
      const m = stripsMatch(root, vid, idx, image.subarray(idx * OBJECT_SIZE, (idx + 1) * OBJECT_SIZE))
      check(m.ok, `object ${idx}: our strip files are what the original's encoder makes`, m.detail)
    }
    const viaOrigDog = await origDogRun(['vdi', 'read', 'ec'], port)
    check(viaOrigDog.status === 0 && viaOrigDog.stdoutBytes.equals(image), 'the original dog reads through our sheep, byte for byte', viaOrigDog.stderr)
    const origCheck = await origDogRun(['vdi', 'check', 'ec'], port)
    check(
      origCheck.status === 0 && !/fixed/.test(origCheck.stdout),
      "the original dog's vdi check on our sheep finds nothing to fix",
      origCheck.stdout + origCheck.stderr,
    )
    await cluster.stop(5, 'SIGKILL')
    const degraded = await dog(['vdi', 'read', 'ec'], { port: ports[1] })
    check(degraded.status === 0 && degraded.stdoutBytes.equals(image), 'ours with a node killed: byte for byte', degraded.stderr)
    await cluster.start(5)
    await cluster.close({ keepFiles: true })
    cluster = undefined

    // 3. the original again on what ours wrote
    cluster = await startOn(root, ports, origSheep)
    check(await waitRunning(port), 'the original on the same directories again: the cluster runs')
    const back = await origDogRun(['vdi', 'read', 'ec'], port)
    check(back.status === 0 && back.stdoutBytes.equals(image), 'the original reads what ours wrote, byte for byte', back.stderr)
    const check0 = await origDogRun(['vdi', 'check', 'ec'], port)
    check(check0.status === 0 && !/fixed/.test(check0.stdout), "the original's vdi check finds nothing to fix", check0.stdout + check0.stderr)
  } finally {
    await cluster?.close({ keepFiles: failed > 0 })
    if (failed === 0) fs.rmSync(root, { recursive: true, force: true })
    else console.log(`# directories kept in ${root}`)
  }
}

main()
  .catch((e: unknown) => {
    failed++
    console.log(`not ok - ${String(e)}`)
  })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`)
    process.exit(failed === 0 ? 0 : 1)
  })
