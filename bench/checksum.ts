// The cost of the checksums (issue 16, docs/integrity.md): the same workloads on 3 local sheep
// (copies=3, real fsync), with checksums and with `sheep --no-checksums`, two clusters side by
// side on the same disk, over ROUNDS rounds (--rounds N): a sequential write of the region and
// sequential reads of it for --seconds, in 1 MiB requests, and 4 KiB random writes and reads at
// queue depth 16 over it. The two clusters take turns at each row in half-second slices, so load
// that comes and goes on the machine weighs on both alike. Every row prints both medians and
// the median of the rounds' ratios (with / without); the target is a cost under 5 %. Then the
// same for the CPU time the 3 sheep spent per MiB or per request (/proc/PID/stat), which load
// disturbs far less than the rates.
// Usage: npm run bench -- checksum [--size-mib N] [--seconds N] [--rounds N] [--cpu-prof DIR] [--a-a]
// --a-a runs the "with" cluster without checksums too: what the two sides differ by with nothing
// between them (the rows' noise, and any edge one side has), to read a cost by. Use an even
// number of rounds: the sides take turns at going first in a row, round by round.
// --cpu-prof DIR runs the sheep under `node --cpu-prof`, those with checksums writing to DIR/on,
// the others to DIR/off, and notes the slices of each row of each round in DIR/{on,off}/windows.jsonl:
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
const ROUNDS = argValue('--rounds', 4)
const REGION_MIB = argValue('--size-mib', 256)
const ROW_SECONDS = argValue('--seconds', 5)
/** The two clusters take turns at a row in slices this long. */
const SLICE_MS = 500
const CPU_PROF_AT = process.argv.indexOf('--cpu-prof')
const CPU_PROF_DIR = CPU_PROF_AT > 0 ? path.resolve(process.argv[CPU_PROF_AT + 1] as string) : undefined
/** Both sides without checksums (--a-a): the bench measured against itself. */
const A_A = process.argv.includes('--a-a')
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
 * A row's work on one cluster, resumable: requests until Date.now() reaches `untilMs` or the
 * row's work is done, returning the units done (MiB or requests). A row with an end (a write
 * pass) runs to it; the others run for ROW_SECONDS.
 */
interface Pump {
  run(untilMs: number): Promise<number>
  /** Undefined for a row that goes on as long as it is given. */
  finished?: () => boolean
}

/**
 * A sequential row: 1 MiB requests from the region's start. A write makes one pass (a fresh VDI:
 * every object created); reads go round the region for as long as they are given, since one
 * pass of a few hundred MiB takes a fraction of a second.
 */
function sequential(h: VdiHandle, data: Buffer, write: boolean): Pump {
  let at = 0
  return {
    async run(untilMs) {
      let mib = 0
      while (Date.now() < untilMs && !(write && at >= data.length)) {
        if (write) await h.write(at, data.subarray(at, at + MiB))
        else await h.read(at, MiB)
        at = write ? at + MiB : (at + MiB) % data.length
        mib++
      }
      return mib
    },
    finished: write ? () => at >= data.length : undefined,
  }
}

/** 4 KiB requests at random aligned offsets of the region, QUEUE_DEPTH at a time. */
function random(h: VdiHandle, write: boolean): Pump {
  const blocks = (REGION_MIB * MiB) / SMALL_BYTES
  const payload = crypto.randomBytes(SMALL_BYTES)
  return {
    async run(untilMs) {
      let done = 0
      const worker = async () => {
        while (Date.now() < untilMs) {
          const at = Math.floor(Math.random() * blocks) * SMALL_BYTES
          if (write) await h.write(at, payload)
          else await h.read(at, SMALL_BYTES)
          done++
        }
      }
      await Promise.all(Array.from({ length: QUEUE_DEPTH }, worker))
      return done
    },
  }
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

type Which = 'on' | 'off'
interface Side {
  cluster: TestCluster
  profDir: string | undefined
}

/**
 * Runs one row on both clusters in turns of SLICE_MS (`first` first, then alternating), until each
 * has finished its work or had ROW_SECONDS: load that comes and goes on the machine falls on
 * both alike, which whole rows one after the other did not ensure. Gives each side's rate and
 * the CPU time its sheep spent per unit (µs per MiB or per request), a measure load disturbs far
 * less than the rate. With --cpu-prof, notes each side's slices on the profiles' clock
 * (CLOCK_MONOTONIC, µs).
 */
async function interleavedRow(
  sides: Record<Which, Side>,
  pumps: Record<Which, Pump>,
  row: string,
  first: Which,
): Promise<Record<Which, { rate: number; cpuUs: number }>> {
  const order = first === 'on' ? (['on', 'off'] as const) : (['off', 'on'] as const)
  const spent = {
    on: { units: 0, us: 0, cpuUs: 0, spans: [] as Array<[number, number]> },
    off: { units: 0, us: 0, cpuUs: 0, spans: [] as Array<[number, number]> },
  }
  const more = (w: Which) => {
    const finished = pumps[w].finished
    return finished ? !finished() : spent[w].us < ROW_SECONDS * 1e6
  }
  for (let slice = 0; more('on') || more('off'); slice++) {
    for (const w of slice % 2 === 0 ? order : ([order[1], order[0]] as const)) {
      if (!more(w)) continue
      const cpuBefore = sheepCpuUs(sides[w].cluster)
      const fromUs = monotonicUs()
      const units = await pumps[w].run(Date.now() + SLICE_MS)
      const toUs = monotonicUs()
      spent[w].units += units
      spent[w].us += toUs - fromUs
      spent[w].cpuUs += sheepCpuUs(sides[w].cluster) - cpuBefore
      spent[w].spans.push([fromUs, toUs])
    }
  }
  const result = (w: Which) => {
    const { units, us, cpuUs, spans } = spent[w]
    const rate = units / (us / 1e6)
    const profDir = sides[w].profDir
    if (profDir) {
      const window: ProfileWindow = { path: path.basename(profDir), row, fromUs: spans[0]?.[0] ?? 0, toUs: spans.at(-1)?.[1] ?? 0, spans, iops: rate }
      fs.appendFileSync(path.join(profDir, WINDOWS_FILE), `${JSON.stringify(window)}\n`)
    }
    return { rate, cpuUs: cpuUs / units }
  }
  return { on: result('on'), off: result('off') }
}

/** One round on both clusters: a fresh VDI over the region on each, the four rows. */
async function round(sides: Record<Which, Side>, name: string, first: Which): Promise<Record<Which, { result: Result; cpu: CpuResult }>> {
  const handles = {} as Record<Which, VdiHandle>
  for (const w of ['on', 'off'] as const) {
    await newVdi(sides[w].cluster.conn(0), { name, vdiSize: BigInt(REGION_MIB * MiB) })
    handles[w] = await VdiHandle.open(sides[w].cluster.conn(0), name)
  }
  const data = crypto.randomBytes(REGION_MIB * MiB)
  const both = (make: (h: VdiHandle) => Pump) => ({ on: make(handles.on), off: make(handles.off) })
  const seqWrite = await interleavedRow(
    sides,
    both((h) => sequential(h, data, true)),
    `${name} seq write`,
    first,
  )
  const seqRead = await interleavedRow(
    sides,
    both((h) => sequential(h, data, false)),
    `${name} seq read`,
    first,
  )
  const randWrite = await interleavedRow(
    sides,
    both((h) => random(h, true)),
    `${name} rand write`,
    first,
  )
  const randRead = await interleavedRow(
    sides,
    both((h) => random(h, false)),
    `${name} rand read`,
    first,
  )
  const of = (w: Which) => ({
    result: { seqWriteMBps: seqWrite[w].rate, seqReadMBps: seqRead[w].rate, randWriteIops: randWrite[w].rate, randReadIops: randRead[w].rate },
    cpu: { seqWriteMBps: seqWrite[w].cpuUs, seqReadMBps: seqRead[w].cpuUs, randWriteIops: randWrite[w].cpuUs, randReadIops: randRead[w].cpuUs },
  })
  return { on: of('on'), off: of('off') }
}

function medianResult(rounds: Result[]): Result {
  return {
    seqWriteMBps: median(rounds.map((r) => r.seqWriteMBps)),
    seqReadMBps: median(rounds.map((r) => r.seqReadMBps)),
    randWriteIops: median(rounds.map((r) => r.randWriteIops)),
    randReadIops: median(rounds.map((r) => r.randReadIops)),
  }
}

/** Both clusters run side by side, every row in alternating slices (interleavedRow). */
async function measureBoth(
  work: string,
): Promise<{ on: Result; off: Result; rounds: { on: Result[]; off: Result[] }; cpu: { on: CpuResult[]; off: CpuResult[] } }> {
  const profDirs = { off: CPU_PROF_DIR && path.join(CPU_PROF_DIR, 'off'), on: CPU_PROF_DIR && path.join(CPU_PROF_DIR, 'on') }
  for (const dir of Object.values(profDirs)) if (dir) fs.mkdirSync(dir, { recursive: true })
  const nodeArgs = (dir: string | undefined) => (dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : undefined)
  const off = await startCluster(3, { nosync: false, root: path.join(work, 'off'), extraArgs: ['--no-checksums'], nodeArgs: nodeArgs(profDirs.off) })
  const on = await startCluster(3, {
    nosync: false,
    root: path.join(work, 'on'),
    nodeArgs: nodeArgs(profDirs.on),
    extraArgs: A_A ? ['--no-checksums'] : undefined,
  })
  try {
    const ctime = BigInt(Math.floor(Date.now() / 1000)) << 32n
    for (const c of [off, on]) await makeFs(c.conn(0), { ctime, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    const sides: Record<Which, Side> = { on: { cluster: on, profDir: profDirs.on }, off: { cluster: off, profDir: profDirs.off } }
    const results = { off: [] as Result[], on: [] as Result[] }
    const cpu = { off: [] as CpuResult[], on: [] as CpuResult[] }
    for (let r = 0; r < ROUNDS; r++) {
      // the side that goes first in a row ran a few per cent slower in A/A runs (--a-a: 4.5–6 %
      // on sequential writes, its first slice being a fresh VDI's first writes), so the sides
      // take turns at going first, round by round
      const got = await round(sides, `bench-${r}`, r % 2 === 0 ? 'off' : 'on')
      for (const which of ['off', 'on'] as const) {
        const res = got[which].result
        console.log(
          `  ${which === 'on' ? 'with' : 'without'} checksums, round ${r + 1}: seq write ${res.seqWriteMBps.toFixed(1)} MB/s, seq read ${res.seqReadMBps.toFixed(1)} MB/s, 4k rand write ${res.randWriteIops.toFixed(0)} IOPS, 4k rand read ${res.randReadIops.toFixed(0)} IOPS`,
        )
        results[which].push(res)
        cpu[which].push(got[which].cpu)
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
  if (A_A) console.log('  --a-a: the side named "checksums" runs without them too')
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
