// The cost of the checksums (issue 16, docs/integrity.md): the same workloads on 3 local sheep
// (copies=3, real fsync), with checksums and with `sheep --no-checksums`, two clusters side by
// side on the same disk whose rounds alternate, over ROUNDS rounds (--rounds N): a sequential write of the region and
// sequential reads of it for --seconds, in 1 MiB requests, and 4 KiB random writes and reads at queue depth 16 over it. Every
// row prints both medians and the median of the rounds' ratios (with / without: each round's
// two runs are next to each other, so load drift between rounds cancels out); the target is a
// cost under 5 %. Then the same for the CPU time the 3 sheep spent per MiB or per request
// (/proc/PID/stat), which load disturbs far less than the rates.
// Usage: npm run bench -- checksum [--size-mib N] [--seconds N] [--rounds N] [--cpu-prof DIR]
// --cpu-prof DIR runs the sheep under `node --cpu-prof`, those with checksums writing to DIR/on,
// the others to DIR/off, and notes when each row of each round ran in DIR/{on,off}/windows.jsonl:
// `npm run bench -- cpu-profile --windows DIR/on/windows.jsonl DIR/on/*.cpuprofile` then says
// where the main thread's time went, row by row.
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../lib/proto.js'
import { makeFs, newVdi } from '../lib/sheep-api.js'
import { VdiHandle } from '../lib/vdi-io.js'
import { type TestCluster, startCluster } from '../harness/cluster.js'
import { tempDir } from '../harness/sheep.js'
import { type ProfileWindow, WINDOWS_FILE } from './cpu-profile.js'

const MiB = 1024 * 1024
const SMALL_BYTES = 4096
const QUEUE_DEPTH = 16
const argValue = (name: string, fallback: number) => {
  const at = process.argv.indexOf(name)
  return at > 0 ? Number(process.argv[at + 1]) : fallback
}
const ROUNDS = argValue('--rounds', 3)
const REGION_MIB = argValue('--size-mib', 256)
const ROW_SECONDS = argValue('--seconds', 5)
const CPU_PROF_AT = process.argv.indexOf('--cpu-prof')
const CPU_PROF_DIR = CPU_PROF_AT > 0 ? path.resolve(process.argv[CPU_PROF_AT + 1] as string) : undefined
/** The cost the issue allows. */
const TARGET_COST = 0.05

interface Result {
  seqWriteMBps: number
  seqReadMBps: number
  randWriteIops: number
  randReadIops: number
}
/** The sheep's CPU time per unit of each row: µs per MiB (sequential rows) or per request. */
type CpuResult = Result

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

/**
 * One pass over the region in 1 MiB requests for a write (a fresh VDI: every object created);
 * reads pass over it again until ROW_SECONDS have gone by, since one pass of a few hundred MiB
 * takes a fraction of a second and could not be told from noise.
 */
async function sequential(h: VdiHandle, data: Buffer, write: boolean): Promise<number> {
  const start = process.hrtime.bigint()
  const end = Date.now() + ROW_SECONDS * 1000
  let bytes = 0
  do {
    for (let at = 0; at < data.length; at += MiB) {
      if (write) await h.write(at, data.subarray(at, at + MiB))
      else await h.read(at, MiB)
    }
    bytes += data.length
  } while (!write && Date.now() < end)
  return bytes / MiB / (Number(process.hrtime.bigint() - start) / 1e9)
}

/** 4 KiB requests at random aligned offsets of the region for ROW_SECONDS, QUEUE_DEPTH at a time. */
async function random(h: VdiHandle, write: boolean): Promise<number> {
  const blocks = (REGION_MIB * MiB) / SMALL_BYTES
  const payload = crypto.randomBytes(SMALL_BYTES)
  const end = Date.now() + ROW_SECONDS * 1000
  let done = 0
  const worker = async () => {
    while (Date.now() < end) {
      const at = Math.floor(Math.random() * blocks) * SMALL_BYTES
      if (write) await h.write(at, payload)
      else await h.read(at, SMALL_BYTES)
      done++
    }
  }
  await Promise.all(Array.from({ length: QUEUE_DEPTH }, worker))
  return done / ROW_SECONDS
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/** Clock ticks per second of /proc/PID/stat's times. */
const CLOCK_TICKS_PER_S = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** CPU time the cluster's sheep have used so far (user and system, every thread), in µs. */
function sheepCpuUs(cluster: TestCluster): number {
  let ticks = 0
  for (const node of cluster.nodes) {
    if (!node) continue
    const stat = fs.readFileSync(`/proc/${node.pid}/stat`, 'utf8')
    // after the command name in parentheses: state is field 3, utime 14, stime 15
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks * 1e6) / CLOCK_TICKS_PER_S
}

/**
 * Runs one row: its rate, and the CPU time the cluster's sheep spent per unit of it (µs per MiB
 * or per request) — a measure that load on the machine disturbs far less than the rate. With
 * --cpu-prof, notes when it ran on the profiles' clock (CLOCK_MONOTONIC, µs).
 */
async function timedRow(cluster: TestCluster, profDir: string | undefined, row: string, run: () => Promise<number>): Promise<{ rate: number; cpuUs: number }> {
  const fromUs = monotonicUs()
  const cpuBefore = sheepCpuUs(cluster)
  const rate = await run()
  const toUs = monotonicUs()
  const units = (rate * (toUs - fromUs)) / 1e6
  const cpuUs = (sheepCpuUs(cluster) - cpuBefore) / units
  if (profDir) {
    const window: ProfileWindow = { path: path.basename(profDir), row, fromUs, toUs, iops: rate }
    fs.appendFileSync(path.join(profDir, WINDOWS_FILE), `${JSON.stringify(window)}\n`)
  }
  return { rate, cpuUs }
}

/** One round on `cluster`: a fresh VDI over the region, the four rows. */
async function round(cluster: TestCluster, name: string, profDir: string | undefined): Promise<{ result: Result; cpu: CpuResult }> {
  await newVdi(cluster.conn(0), { name, vdiSize: BigInt(REGION_MIB * MiB) })
  const h = await VdiHandle.open(cluster.conn(0), name)
  const data = crypto.randomBytes(REGION_MIB * MiB)
  const seqWrite = await timedRow(cluster, profDir, `${name} seq write`, () => sequential(h, data, true))
  const seqRead = await timedRow(cluster, profDir, `${name} seq read`, () => sequential(h, data, false))
  const randWrite = await timedRow(cluster, profDir, `${name} rand write`, () => random(h, true))
  const randRead = await timedRow(cluster, profDir, `${name} rand read`, () => random(h, false))
  return {
    result: { seqWriteMBps: seqWrite.rate, seqReadMBps: seqRead.rate, randWriteIops: randWrite.rate, randReadIops: randRead.rate },
    cpu: { seqWriteMBps: seqWrite.cpuUs, seqReadMBps: seqRead.cpuUs, randWriteIops: randWrite.cpuUs, randReadIops: randRead.cpuUs },
  }
}

function medianResult(rounds: Result[]): Result {
  return {
    seqWriteMBps: median(rounds.map((r) => r.seqWriteMBps)),
    seqReadMBps: median(rounds.map((r) => r.seqReadMBps)),
    randWriteIops: median(rounds.map((r) => r.randWriteIops)),
    randReadIops: median(rounds.map((r) => r.randReadIops)),
  }
}

/**
 * Both clusters run side by side and their rounds alternate (without, with, without, …), so a
 * machine whose load drifts during the run (other jobs) weighs on both alike.
 */
async function measureBoth(
  work: string,
): Promise<{ on: Result; off: Result; rounds: { on: Result[]; off: Result[] }; cpu: { on: CpuResult[]; off: CpuResult[] } }> {
  const profDirs = { off: CPU_PROF_DIR && path.join(CPU_PROF_DIR, 'off'), on: CPU_PROF_DIR && path.join(CPU_PROF_DIR, 'on') }
  for (const dir of Object.values(profDirs)) if (dir) fs.mkdirSync(dir, { recursive: true })
  const nodeArgs = (dir: string | undefined) => (dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : undefined)
  const off = await startCluster(3, { nosync: false, root: path.join(work, 'off'), extraArgs: ['--no-checksums'], nodeArgs: nodeArgs(profDirs.off) })
  const on = await startCluster(3, { nosync: false, root: path.join(work, 'on'), nodeArgs: nodeArgs(profDirs.on) })
  try {
    const ctime = BigInt(Math.floor(Date.now() / 1000)) << 32n
    for (const c of [off, on]) await makeFs(c.conn(0), { ctime, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    const results = { off: [] as Result[], on: [] as Result[] }
    const cpu = { off: [] as CpuResult[], on: [] as CpuResult[] }
    for (let r = 0; r < ROUNDS; r++) {
      // which goes first alternates too: a round's second run finds the machine as the first left it
      const order = [
        ['off', off],
        ['on', on],
      ] as const
      for (const [which, cluster] of r % 2 === 0 ? order : [...order].reverse()) {
        const { result: res, cpu: used } = await round(cluster, `bench-${r}`, profDirs[which])
        console.log(
          `  ${which === 'on' ? 'with' : 'without'} checksums, round ${r + 1}: seq write ${res.seqWriteMBps.toFixed(1)} MB/s, seq read ${res.seqReadMBps.toFixed(1)} MB/s, 4k rand write ${res.randWriteIops.toFixed(0)} IOPS, 4k rand read ${res.randReadIops.toFixed(0)} IOPS`,
        )
        results[which].push(res)
        cpu[which].push(used)
      }
    }
    return { on: medianResult(results.on), off: medianResult(results.off), rounds: results, cpu }
  } finally {
    await off.close()
    await on.close()
  }
}

export async function runChecksumBench(): Promise<void> {
  const work = tempDir('sheep-bench-checksum-')
  console.log(`bench checksum: ${REGION_MIB} MiB region, ${ROW_SECONDS} s random rows at QD${QUEUE_DEPTH}, 3 sheep, copies=3, fsync on`)
  const { on, off, rounds, cpu } = await measureBoth(work)
  if (CPU_PROF_DIR) console.log(`CPU profiles of the sheep: ${CPU_PROF_DIR}/{on,off}`)
  const rows: Array<[string, keyof Result, string, string]> = [
    ['1 MiB sequential write', 'seqWriteMBps', 'MB/s', 'MiB'],
    ['1 MiB sequential read', 'seqReadMBps', 'MB/s', 'MiB'],
    ['4 KiB random write QD16', 'randWriteIops', 'IOPS', 'req'],
    ['4 KiB random read QD16', 'randReadIops', 'IOPS', 'req'],
  ]
  console.log(`${'row'.padEnd(28)}${'checksums'.padStart(14)}${'without'.padStart(14)}${'ratio'.padStart(8)}  cost (median of the rounds' ratios)`)
  for (const [name, field, unit] of rows) {
    const withValue = on[field]
    const without = off[field]
    const ratio = median(rounds.on.map((r, i) => r[field] / (rounds.off[i] as Result)[field]))
    const cost = 1 - ratio
    console.log(
      `${name.padEnd(28)}${`${withValue.toFixed(1)} ${unit}`.padStart(14)}${`${without.toFixed(1)} ${unit}`.padStart(14)}${ratio.toFixed(3).padStart(8)}  ${(cost * 100).toFixed(1)} %${cost > TARGET_COST ? ' (over the 5 % target)' : ''}`,
    )
  }
  // the sheep's CPU per unit of work, which the machine's load moves much less than the rates:
  // on a machine whose CPUs are the bottleneck, the cost in throughput follows it
  console.log(
    `${'sheep CPU (3 sheep)'.padEnd(28)}${'checksums'.padStart(14)}${'without'.padStart(14)}${'ratio'.padStart(8)}  extra CPU (median of the rounds' ratios)`,
  )
  for (const [name, field, , per] of rows) {
    const withUs = median(cpu.on.map((c) => c[field]))
    const withoutUs = median(cpu.off.map((c) => c[field]))
    const ratio = median(cpu.on.map((c, i) => c[field] / (cpu.off[i] as CpuResult)[field]))
    console.log(
      `${name.padEnd(28)}${`${withUs.toFixed(0)} µs/${per}`.padStart(14)}${`${withoutUs.toFixed(0)} µs/${per}`.padStart(14)}${ratio.toFixed(3).padStart(8)}  ${((ratio - 1) * 100).toFixed(1)} %`,
    )
  }
}
