// Honest benchmarks, printed as ratios against ceilings measured in the same run on the same
// disk: `dog vdi write/read` of random data on 3 local sheep with copies=3 and real fsync, next
// to `dd conv=fsync` of the same bytes; the same bytes through sheepfs next to dog (each the
// median of ROUNDS rounds, every round into fresh VDIs, every round printed too; timed reads
// go to /dev/null for dd and dog alike, and a second, untimed read checks the bytes); recovery
// time after one node of 4 is killed (seconds per GiB re-replicated); peak sheep and sheepfs memory.
// Usage: npm run bench [-- --size-mib N]   (default 1024 MiB)
//        npm run bench -- NAME               (one of NAMED_BENCHES instead, e.g. `ec`, `iops`, `checksum`)
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { MALLOC_TUNING } from '../lib/daemon.js'
import { makeFs, newVdi } from '../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../lib/proto.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { runChecksumBench } from './checksum.js'
import { runCpuProfileSummary } from './cpu-profile.js'
import { runEcClusterBench } from './ec-cluster.js'
import { sha1File, timed } from './timing.js'
import { runEcBench } from './ec.js'
import { runIopsBench } from './iops.js'
import { objectCopies, startCluster, waitForRecovery } from '../harness/cluster.js'
import { DOG_BIN, REPO, peakRssMiB, programEnv, tempDir } from '../harness/sheep.js'
import { sheepfsPidsFor } from '../harness/sheepfs.js'

const SHEEPFS_BIN = path.join(REPO, 'bin/sheepfs')

const MiB = 1024 * 1024
const sizeArg = process.argv.indexOf('--size-mib')
const SIZE_MIB = sizeArg > 0 ? Number(process.argv[sizeArg + 1]) : 1024
const SIZE = SIZE_MIB * MiB
/** Each dog and sheepfs measure is taken this many times; the median is reported. */
const ROUNDS = 5

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

function mbps(bytes: number, secs: number): number {
  return bytes / MiB / secs
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Empties the page cache so reads come from the disk (root only); false when not allowed. */
function dropCaches(): boolean {
  spawnSync('sync')
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n')
    return true
  } catch {
    return false
  }
}

function row(name: string, value: string, ceiling: string, ratio: number): void {
  console.log(`${name.padEnd(34)}${value.padStart(14)}${ceiling.padStart(14)}${ratio.toFixed(2).padStart(8)}`)
}

async function main(): Promise<void> {
  const work = tempDir('sheep-bench-')
  const input = path.join(work, 'input')
  const output = path.join(work, 'output')
  try {
    console.log(`bench: ${SIZE_MIB} MiB of random data, work directory ${work}`)
    const fd = fs.openSync(input, 'w')
    for (let done = 0; done < SIZE; done += 16 * MiB) fs.writeSync(fd, crypto.randomBytes(Math.min(16 * MiB, SIZE - done)))
    fs.closeSync(fd)
    const inputSum = sha1File(input)

    // the local ceiling: the same bytes through dd with fsync, and read back
    const ddWrite = await timed('dd', [`if=${input}`, `of=${output}`, 'bs=1M', 'conv=fsync', 'status=none'])
    const cold = dropCaches()
    const ddRead = await timed('dd', [`if=${output}`, 'of=/dev/null', 'bs=1M', 'status=none'])
    fs.rmSync(output)

    const cluster = await startCluster(3, { nosync: false, root: path.join(work, 'cluster') })
    try {
      const port = String(cluster.ports[0])
      await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
      const mountpoint = path.join(work, 'mnt')
      fs.mkdirSync(mountpoint)
      const mounted = spawnSync(SHEEPFS_BIN, ['-p', port, mountpoint], { env: programEnv(), encoding: 'utf8' })
      if (mounted.status !== 0) console.log(`sheepfs could not mount: ${mounted.stderr.trim()}`)
      const times: Record<'dogWrite' | 'dogRead' | 'fsWrite' | 'fsRead', number[]> = { dogWrite: [], dogRead: [], fsWrite: [], fsRead: [] }
      let same = true
      let sheepfsPeak = 0
      let fsSame = true
      try {
        // each round writes fresh VDIs (objects are created, as on a first write) and deletes them
        for (let round = 0; round < ROUNDS; round++) {
          const dogVdi = `bench${round}`
          await newVdi(cluster.conn(0), { name: dogVdi, vdiSize: BigInt(SIZE) })
          times.dogWrite.push(await timed(DOG_BIN, ['vdi', 'write', dogVdi, '-p', port], { stdin: input }))
          dropCaches()
          times.dogRead.push(await timed(DOG_BIN, ['vdi', 'read', dogVdi, '-p', port], { stdout: '/dev/null' }))
          await timed(DOG_BIN, ['vdi', 'read', dogVdi, '-p', port], { stdout: output })
          same &&= sha1File(output) === inputSum
          fs.rmSync(output)
          await timed(DOG_BIN, ['vdi', 'delete', dogVdi, '-p', port])

          // the same bytes through sheepfs: dd with 1 MiB blocks into and out of volume/NAME
          if (mounted.status !== 0) continue
          const fsVdi = `benchfs${round}`
          await newVdi(cluster.conn(0), { name: fsVdi, vdiSize: BigInt(SIZE) })
          fs.writeFileSync(path.join(mountpoint, 'vdi', 'mount'), `${fsVdi}\n`)
          const volume = path.join(mountpoint, 'volume', fsVdi)
          times.fsWrite.push(await timed('dd', [`if=${input}`, `of=${volume}`, 'bs=1M', 'conv=fsync', 'status=none']))
          dropCaches()
          times.fsRead.push(await timed('dd', [`if=${volume}`, 'of=/dev/null', 'bs=1M', 'status=none']))
          await timed('dd', [`if=${volume}`, `of=${output}`, 'bs=1M', 'status=none'])
          fsSame &&= sha1File(output) === inputSum
          fs.rmSync(output)
          fs.writeFileSync(path.join(mountpoint, 'vdi', 'unmount'), `${fsVdi}\n`)
          await timed(DOG_BIN, ['vdi', 'delete', fsVdi, '-p', port])
        }
      } finally {
        sheepfsPeak = peakRssMiB(sheepfsPidsFor(mountpoint))
        if (mounted.status === 0) spawnSync('fusermount', ['-u', mountpoint])
      }
      const dogWrite = median(times.dogWrite)
      const dogRead = median(times.dogRead)
      console.log(`\n${'measure (median of ' + ROUNDS + ' rounds)'.padEnd(34)}${'result'.padStart(14)}${'ceiling'.padStart(14)}${'ratio'.padStart(8)}`)
      row('dog vdi write, 3 copies, fsync', `${mbps(SIZE, dogWrite).toFixed(1)} MB/s`, `${mbps(SIZE, ddWrite).toFixed(1)} MB/s`, ddWrite / dogWrite)
      row('  per byte stored (3 replicas)', `${mbps(3 * SIZE, dogWrite).toFixed(1)} MB/s`, `${mbps(SIZE, ddWrite).toFixed(1)} MB/s`, (3 * ddWrite) / dogWrite)
      row(
        `dog vdi read${cold ? ' (cold cache)' : ' (warm cache)'}`,
        `${mbps(SIZE, dogRead).toFixed(1)} MB/s`,
        `${mbps(SIZE, ddRead).toFixed(1)} MB/s`,
        ddRead / dogRead,
      )
      console.log(`data read back identical: ${same ? 'yes' : 'NO'}`)
      if (times.fsWrite.length > 0) {
        const fsWrite = median(times.fsWrite)
        const fsRead = median(times.fsRead)
        row('sheepfs dd write (vs dog write)', `${mbps(SIZE, fsWrite).toFixed(1)} MB/s`, `${mbps(SIZE, dogWrite).toFixed(1)} MB/s`, dogWrite / fsWrite)
        row('sheepfs dd read (vs dog read)', `${mbps(SIZE, fsRead).toFixed(1)} MB/s`, `${mbps(SIZE, dogRead).toFixed(1)} MB/s`, dogRead / fsRead)
        console.log(`data through sheepfs identical: ${fsSame ? 'yes' : 'NO'}`)
      }
      console.log(
        `every round (s): ${Object.entries(times)
          .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(' ')}`)
          .join('; ')}`,
      )
      console.log(
        `peak sheep RSS: ${peakRssMiB(cluster.nodes.flatMap((n) => (n ? [n.pid] : []))).toFixed(0)} MiB; peak sheepfs RSS: ${sheepfsPeak.toFixed(0)} MiB`,
      )
    } finally {
      await cluster.close()
    }

    // recovery: 4 nodes, copies=3, one killed; time until every object has 3 replicas again
    const four = await startCluster(4, { nosync: false, root: path.join(work, 'recovery') })
    try {
      await makeFs(four.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
      await newVdi(four.conn(0), { name: 'rec', vdiSize: BigInt(SIZE) })
      const h = await VdiHandle.open(four.conn(0), 'rec')
      const src = fs.openSync(input, 'r')
      const chunk = Buffer.allocUnsafe(64 * MiB)
      for (let off = 0; off < SIZE; off += chunk.length) {
        const n = fs.readSync(src, chunk, 0, Math.min(chunk.length, SIZE - off), off)
        await h.write(off, chunk.subarray(0, n))
      }
      fs.closeSync(src)
      const victim = four.nodes[3]!
      const lostObjects = fs.readdirSync(path.join(victim.dir, 'obj')).filter((n) => /^[0-9a-f]{16}$/.test(n))
      const lostBytes = lostObjects.reduce((sum, n) => sum + fs.statSync(path.join(victim.dir, 'obj', n)).size, 0)
      const start = process.hrtime.bigint()
      await four.stop(3, 'SIGKILL')
      const settled = await waitForRecovery(four, 30 * 60_000)
      const recoverySecs = seconds(start)
      const copies = [...objectCopies(four).values()]
      console.log(
        `\nrecovery after 1 of 4 nodes killed: ${lostObjects.length} objects, ${(lostBytes / 2 ** 30).toFixed(2)} GiB re-replicated in ${recoverySecs.toFixed(1)} s = ${(recoverySecs / (lostBytes / 2 ** 30)).toFixed(1)} s/GiB`,
      )
      console.log(`  settled: ${settled ? 'yes' : 'NO'}; every object on 3 nodes: ${copies.every((c) => c === 3) ? 'yes' : 'NO'}`)
      console.log(
        `  ceiling: the same bytes through dd would take ${(lostBytes / MiB / mbps(SIZE, ddWrite)).toFixed(1)} s (ratio ${(lostBytes / MiB / mbps(SIZE, ddWrite) / recoverySecs).toFixed(2)})`,
      )
    } finally {
      await four.close()
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
    spawnSync('sync')
  }
}

/** Benches that run on their own by name, without the cluster measures above. */
const NAMED_BENCHES: Record<string, () => void | Promise<void>> = {
  ec: runEcBench,
  'ec-cluster': runEcClusterBench,
  iops: runIopsBench,
  'cpu-profile': runCpuProfileSummary,
  checksum: runChecksumBench,
}

const named = process.argv[2] !== undefined ? NAMED_BENCHES[process.argv[2]] : undefined
if (process.argv[2] !== undefined && !process.argv[2].startsWith('--') && !named) {
  console.error(`unknown bench ${process.argv[2]}; named benches: ${Object.keys(NAMED_BENCHES).join(', ')}`)
  process.exit(64)
}
// the checksum bench's in-process client moves as many bytes as the sheep do: the bench runs
// with the malloc settings a daemonized sheep gets (lib/daemon.ts), which glibc reads only at
// process start, so it starts itself again with them. The programs it starts get the
// environment it was given: our sheep add the settings themselves, while a compared sheep (the
// original), tgtd, qemu-nbd, fio and dog run as their users run them.
const TUNED_MARK = 'SHEEPDOG_BENCH_TUNED'
if (process.env[TUNED_MARK] === undefined) {
  const env = { ...MALLOC_TUNING, ...process.env, [TUNED_MARK]: JSON.stringify(Object.keys(MALLOC_TUNING).filter((name) => process.env[name] === undefined)) }
  const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env })
  process.exit(again.status ?? 1)
}
for (const name of JSON.parse(process.env[TUNED_MARK]) as string[]) delete process.env[name]
delete process.env[TUNED_MARK]
Promise.resolve(named ? named() : main()).catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
