// Erasure coding end to end: `dog vdi write` and `dog vdi read` of the same random bytes (1 GiB
// by default) into a 4:2 VDI and a copies=3 VDI on the same 6 local sheep with real fsync, in
// the same run, printing MB/s of each, the 4:2 / copies=3 ratio, and the bytes the data objects
// take on disk per byte written (1.5 expected for 4:2, 3 for copies=3). The bytes read back are
// checked against those written. Run with `npm run bench -- ec-cluster [--size-mib N]`.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { startCluster } from '../harness/cluster.js'
import { DOG_BIN, dog, tempDir } from '../harness/sheep.js'
import { sha1File, timed } from './timing.js'

const MiB = 1024 * 1024
const NODES = 6
const DEFAULT_SIZE_MIB = 1024

/** Bytes the data objects (or strips) of `vid` take in every node's object directory. */
function dataBytesOnDisk(dirs: readonly string[], vid: string): number {
  let bytes = 0
  for (const dir of dirs) {
    for (const name of fs.readdirSync(dir)) if (name.startsWith(`00${vid}`)) bytes += fs.statSync(path.join(dir, name)).blocks * 512
  }
  return bytes
}

export async function runEcClusterBench(): Promise<void> {
  const sizeArg = process.argv.indexOf('--size-mib')
  const sizeMib = sizeArg > 0 ? Number(process.argv[sizeArg + 1]) : DEFAULT_SIZE_MIB
  const size = sizeMib * MiB
  const work = tempDir('bench-ec-')
  const input = path.join(work, 'input')
  const output = path.join(work, 'output')
  const fd = fs.openSync(input, 'w')
  for (let at = 0; at < size; at += 64 * MiB) fs.writeSync(fd, crypto.randomBytes(Math.min(64 * MiB, size - at)))
  fs.closeSync(fd)
  const want = sha1File(input)
  const cluster = await startCluster(NODES, { nosync: false })
  try {
    const port = String(cluster.ports[0])
    const formatted = await dog(['cluster', 'format', '-c', '3'], { port: cluster.ports[0] })
    if (formatted.status !== 0) throw new Error(formatted.stderr)
    console.log(`${sizeMib} MiB through dog on ${NODES} local sheep, real fsync`)
    console.log(`${'VDI'.padEnd(12)}${'write MB/s'.padStart(12)}${'read MB/s'.padStart(12)}${'disk/byte'.padStart(12)}`)
    const results = new Map<string, { write: number; read: number }>()
    for (const copies of ['3', '4:2']) {
      const name = copies === '3' ? 'copies3' : 'ec42'
      const created = await dog(['vdi', 'create', '-c', copies, '-v', name, String(size)], { port: cluster.ports[0] })
      if (created.status !== 0) throw new Error(created.stderr)
      const vid = (/([0-9a-f]+)\s*$/.exec(created.stdout)?.[1] ?? '').padStart(6, '0')
      const writeSecs = await timed(DOG_BIN, ['vdi', 'write', '-p', port, name], { stdin: input })
      const readSecs = await timed(DOG_BIN, ['vdi', 'read', '-p', port, name], { stdout: output })
      if (sha1File(output) !== want) throw new Error(`${name}: the bytes read back differ from those written`)
      const perByte =
        dataBytesOnDisk(
          cluster.nodes.map((n) => path.join(n?.dir ?? '', 'obj')),
          vid,
        ) / size
      const row = { write: size / MiB / writeSecs, read: size / MiB / readSecs }
      results.set(copies, row)
      console.log(`${copies.padEnd(12)}${row.write.toFixed(1).padStart(12)}${row.read.toFixed(1).padStart(12)}${perByte.toFixed(2).padStart(12)}`)
    }
    const ec = results.get('4:2')
    const rep = results.get('3')
    if (ec && rep) console.log(`4:2 / copies=3: write ${(ec.write / rep.write).toFixed(2)}, read ${(ec.read / rep.read).toFixed(2)}`)
  } finally {
    await cluster.close()
    fs.rmSync(work, { recursive: true, force: true })
  }
}
