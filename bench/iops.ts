// Small random I/O, measured (issue #15): fio drives 3 local sheep (copies=3, real fsync) through
// our built-in NBD server and through tgtd's sheepdog backing store with qemu-nbd exporting the
// iSCSI LUN (the same client path for any sheep), next to the ceiling measured in the same run on
// the same disk: fio on a local file with --direct=1 and, for writes, --fdatasync=1 (what one
// durable write costs here). Every row prints IOPS (MB/s for the sequential one), p50/p99
// completion latency from fio's JSON, the ratio to the ceiling and, with --compare-sheep, the
// ratio to another sheep program (e.g. the original C sheep) run through the tgt path in the same
// run. The two tgt paths take turns at each row, in --rounds rounds (3 by default): a row's
// figure is its median round and its ratio the median of the rounds' ratios. Peak RSS (VmHWM)
// of every sheep is printed at the end.
// Usage: npm run bench -- iops [--seconds N] [--size-mib N] [--compare-sheep PATH] [--rounds N]
//          [--rows NAME,…] [--paths ceiling,nbd,tgt,compare] [--cpu-prof DIR]
// --cpu-prof DIR runs our sheep under `node --cpu-prof` (profiles written to DIR when they stop);
// with --rows and --paths one workload through one path can be profiled alone; DIR/windows.jsonl
// says when each row ran, so `npm run bench -- cpu-profile --windows DIR/windows.jsonl FILE…`
// prints each row's share of the profile and main-thread CPU µs per request.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../lib/proto.js'
import { makeFs, newVdi } from '../lib/sheep-api.js'
import { type TestCluster, startCluster } from '../harness/cluster.js'
import { freePort, isAlive, runProgram, tempDir, trackPid, untrackPid, waitFor } from '../harness/sheep.js'
import { TGTADM, TGTD, type Tgtd, connectable, freeLowPort, startTgtd } from '../harness/tgt.js'
import { type ProfileWindow, WINDOWS_FILE } from './cpu-profile.js'

const MiB = 1024 * 1024
const FIO = '/usr/bin/fio'
const QEMU_NBD = '/usr/bin/qemu-nbd'
const IQN = 'iqn.2024-01.org.sheepdog-node:iops-bench'
/** Seconds of each measured row unless --seconds says otherwise. */
const DEFAULT_ROW_SECONDS = 5
/** Rounds of the tgt rows unless --rounds says otherwise: each row's figure is the median of its rounds. */
const DEFAULT_TGT_ROUNDS = 3
/** Seconds of each row fio runs before it starts counting (connections and caches settle). */
const RAMP_SECONDS = 1
/** The region every row works on (--size-mib): written once before the rows, so reads read data. */
const DEFAULT_REGION_MIB = 256
/** The VDIs are a little larger than the region, so the region is not the whole device. */
const VDI_SLACK_MIB = 16
/** Extra seconds fio may take beyond ramp and runtime (connecting, the prefill) before it is killed. */
const FIO_GRACE_SECONDS = 120
const QEMU_NBD_START_MS = 20_000
/** Margin cut off both ends of a row's profile window (fio connecting, fio's last requests). */
const WINDOW_MARGIN_US = 300_000
/** Peak RSS every sheep must stay under (issue #15); the bench says when one did not. */
const RSS_BOUND_MIB = 300

/** One workload: fio's options for it and how its result is read. */
interface Row {
  name: string
  label: string
  rw: 'write' | 'randwrite' | 'randread' | 'randrw'
  bs: string
  iodepth: number
  /** Reported in MB/s rather than IOPS. */
  mbps?: boolean
  rwmixread?: number
  /** A FLUSH after every this many writes (fio --fsync; the local file syncs every write anyway). */
  flushEvery?: number
}

/** Writes between two FLUSHes in the write-back row: a guest's file system commits about so often under random writes. */
const WRITES_PER_FLUSH = 64

/** The rows of issue #15's table plus 4 KiB mixed 70/30 at QD16 and random writes with FLUSHes. */
const ROWS: readonly Row[] = [
  { name: 'seqwrite-1m-qd8', label: '1 MiB seq write QD8', rw: 'write', bs: '1m', iodepth: 8, mbps: true },
  { name: 'randwrite-qd16', label: '4 KiB rand write QD16', rw: 'randwrite', bs: '4k', iodepth: 16 },
  { name: 'randwrite-flush-qd16', label: '4K randwrite QD16 flush/64', rw: 'randwrite', bs: '4k', iodepth: 16, flushEvery: WRITES_PER_FLUSH },
  { name: 'randread-qd16', label: '4 KiB rand read QD16', rw: 'randread', bs: '4k', iodepth: 16 },
  { name: 'randwrite-qd1', label: '4 KiB rand write QD1', rw: 'randwrite', bs: '4k', iodepth: 1 },
  { name: 'randread-qd1', label: '4 KiB rand read QD1', rw: 'randread', bs: '4k', iodepth: 1 },
  { name: 'randrw-70-30-qd16', label: '4 KiB rand 70/30 r/w QD16', rw: 'randrw', bs: '4k', iodepth: 16, rwmixread: 70 },
]

/** Where fio sends its I/O: the engine options that pick the target. */
interface Target {
  name: string
  fioArgs: string[]
  /** Writes on this target are made durable by fio itself (the local file: --fdatasync=1). */
  local?: boolean
}

interface Result {
  iops: number
  mbps: number
  /** Completion latency percentiles in µs, per direction that ran. */
  lat: { dir: 'r' | 'w'; p50Us: number; p99Us: number }[]
  /** The local file: mean fdatasync latency in µs (not in the write latency fio reports). */
  syncMeanUs?: number
}

interface Options {
  seconds: number
  regionMib: number
  compareSheep?: string
  rows: readonly Row[]
  paths: Set<string>
  /** Rounds of the tgt rows, ours and the compared sheep's taking turns at each row (--rounds). */
  rounds: number
  cpuProfDir?: string
  /** More arguments for our sheep (not the compared one), e.g. `--no-checksums`. */
  sheepArgs: string[]
}

const PATHS = ['ceiling', 'nbd', 'tgt', 'compare'] as const
const CEILING = 'ceiling (local file)'

function parseOptions(argv: string[]): Options {
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const seconds = Number(value('--seconds') ?? DEFAULT_ROW_SECONDS)
  const rounds = Number(value('--rounds') ?? DEFAULT_TGT_ROUNDS)
  const regionMib = Number(value('--size-mib') ?? DEFAULT_REGION_MIB)
  const rowNames = value('--rows')?.split(',')
  const rows = rowNames ? ROWS.filter((r) => rowNames.includes(r.name)) : ROWS
  const paths = new Set(value('--paths')?.split(',') ?? PATHS)
  const compareSheep = value('--compare-sheep')
  const bad =
    !(seconds > 0) ||
    !Number.isInteger(rounds) ||
    rounds < 1 ||
    !(regionMib > 0) ||
    rows.length !== (rowNames?.length ?? ROWS.length) ||
    [...paths].some((p) => !(PATHS as readonly string[]).includes(p)) ||
    (compareSheep !== undefined && !fs.existsSync(compareSheep))
  if (bad) {
    console.error(
      `usage: npm run bench -- iops [--seconds N] [--size-mib N] [--compare-sheep PATH] [--rounds N] [--rows ${ROWS.map((r) => r.name).join(',')}] [--paths ${PATHS.join(',')}] [--cpu-prof DIR] [--sheep-args 'ARGS']`,
    )
    process.exit(64)
  }
  if (!compareSheep) paths.delete('compare')
  const cpuProf = value('--cpu-prof')
  const sheepArgs =
    value('--sheep-args')
      ?.split(' ')
      .filter((a) => a !== '') ?? []
  return { seconds, regionMib, compareSheep, rows, paths, rounds, cpuProfDir: cpuProf ? path.resolve(cpuProf) : undefined, sheepArgs }
}

/** fio's JSON for one direction of one job (the fields read here). */
interface FioDirection {
  io_bytes: number
  iops: number
  bw_bytes: number
  clat_ns?: { percentile?: Record<string, number> }
}

function percentileUs(d: FioDirection, p: string): number {
  return (d.clat_ns?.percentile?.[p] ?? Number.NaN) / 1000
}

/** Runs fio once; resolves to its parsed result. */
async function fio(target: Target, row: Row, opts: Options, timeBased: boolean): Promise<Result> {
  const args = [
    '--name=bench',
    `--rw=${row.rw}`,
    `--bs=${row.bs}`,
    `--iodepth=${row.iodepth}`,
    `--size=${opts.regionMib}m`,
    '--randrepeat=0',
    '--norandommap',
    '--output-format=json',
    ...(row.rwmixread !== undefined ? [`--rwmixread=${row.rwmixread}`] : []),
    ...(timeBased ? ['--time_based', `--runtime=${opts.seconds}`, `--ramp_time=${RAMP_SECONDS}`] : []),
    ...(target.local && row.rw !== 'randread' ? ['--fdatasync=1'] : []),
    ...(!target.local && row.flushEvery !== undefined ? [`--fsync=${row.flushEvery}`] : []),
    ...target.fioArgs,
  ]
  const r = await runProgram(FIO, args, { timeoutMs: (opts.seconds + RAMP_SECONDS + FIO_GRACE_SECONDS) * 1000 })
  if (r.status !== 0) throw new Error(`fio ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`)
  // fio may print notes before the JSON document
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
    jobs: { read: FioDirection; write: FioDirection; sync?: { lat_ns?: { mean?: number } } }[]
  }
  const job = json.jobs[0]
  if (!job) throw new Error(`fio printed no job: ${r.stdout}`)
  const dirs = [
    ['r', job.read],
    ['w', job.write],
  ] as const
  const ran = dirs.filter(([, d]) => d.io_bytes > 0)
  const syncMeanNs = job.sync?.lat_ns?.mean
  return {
    iops: ran.reduce((s, [, d]) => s + d.iops, 0),
    mbps: ran.reduce((s, [, d]) => s + d.bw_bytes, 0) / MiB,
    lat: ran.map(([dir, d]) => ({ dir, p50Us: percentileUs(d, '50.000000'), p99Us: percentileUs(d, '99.000000') })),
    syncMeanUs: target.local && syncMeanNs ? syncMeanNs / 1000 : undefined,
  }
}

/**
 * Has the kernel write back every dirty page (sync(1)) and says how long that took. What one
 * target left unwritten (our NBD rows' write-back cache) would otherwise be written while the
 * next target runs, on the same disk: before this, our tgt target started in the shadow of our
 * NBD rows, and the compared sheep's, run last, never did.
 */
function settleDisk(why: string): void {
  const start = Date.now()
  spawnSync('sync')
  console.log(`  disk settled (${why}) in ${((Date.now() - start) / 1000).toFixed(1)} s`)
}

/** On a settled disk writes the whole region once (untimed), then has the disk settle again. */
async function prefill(target: Target, opts: Options): Promise<void> {
  settleDisk(`before ${target.name}`)
  const prefillStart = Date.now()
  await fio(target, { name: 'prefill', label: 'prefill', rw: 'write', bs: '1m', iodepth: 8 }, opts, false)
  console.log(`  ${target.name}: ${opts.regionMib} MiB written before the rows in ${((Date.now() - prefillStart) / 1000).toFixed(1)} s`)
  settleDisk('after the prefill')
}

/** Runs one row on the target (and, with --cpu-prof, notes when it ran). */
async function runRow(target: Target, row: Row, opts: Options, round = ''): Promise<Result> {
  const startUs = monotonicUs()
  const r = await fio(target, row, opts, true)
  const endUs = monotonicUs()
  if (opts.cpuProfDir) {
    // the measured part of the row, with a margin for fio's start and end, on the clock V8's
    // profiles use (CLOCK_MONOTONIC, µs): `npm run bench -- cpu-profile --windows` reads it
    const window: ProfileWindow = {
      path: target.name,
      row: row.name,
      fromUs: startUs + RAMP_SECONDS * 1e6 + WINDOW_MARGIN_US,
      toUs: endUs - WINDOW_MARGIN_US,
      iops: r.iops,
    }
    fs.appendFileSync(path.join(opts.cpuProfDir, WINDOWS_FILE), `${JSON.stringify(window)}\n`)
  }
  console.log(`  ${target.name}: ${row.label}${round}: ${row.mbps ? `${r.mbps.toFixed(1)} MB/s` : `${r.iops.toFixed(0)} IOPS`}`)
  return r
}

/** Prefills the target, then runs every row on it once. */
async function runRows(target: Target, opts: Options): Promise<Map<string, Result[]>> {
  await prefill(target, opts)
  const results = new Map<string, Result[]>()
  for (const row of opts.rows) results.set(row.name, [await runRow(target, row, opts)])
  return results
}

/**
 * Prefills every target, then runs the rows in rounds, each row on every target in turn (the
 * order reversed each round), so that what the machine does meanwhile weighs on all of them
 * alike: one target after the other, a row's ratio moved by ±30 % from one run to the next.
 */
async function runInterleaved(targets: Target[], opts: Options): Promise<Map<string, Map<string, Result[]>>> {
  for (const target of targets) await prefill(target, opts)
  const results = new Map(targets.map((target) => [target.name, new Map<string, Result[]>(opts.rows.map((row) => [row.name, []]))]))
  for (let round = 0; round < opts.rounds; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const row of opts.rows) {
      for (const target of order) {
        const r = await runRow(target, row, opts, opts.rounds > 1 ? `, round ${round + 1}` : '')
        results.get(target.name)?.get(row.name)?.push(r)
      }
    }
  }
  return results
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** The run of a row whose figure is the median of its rounds (the lower middle one of an even count). */
function medianRun(row: Row, runs: Result[]): Result {
  const sorted = [...runs].sort((a, b) => (value(row, a) as number) - (value(row, b) as number))
  return sorted[Math.floor((sorted.length - 1) / 2)] as Result
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/** A running child process this bench started (qemu-nbd), stopped by its PID. */
async function stopChild(child: ChildProcess): Promise<void> {
  const pid = child.pid
  if (pid === undefined || child.exitCode !== null) return
  child.kill('SIGTERM')
  if (!(await waitFor(() => child.exitCode !== null || child.signalCode !== null || !isAlive(pid), 5000))) child.kill('SIGKILL')
  untrackPid(pid)
}

/** tgtd with one LUN on `vdi` of the sheep at `sheepPort`, and qemu-nbd exporting that LUN. */
async function tgtTarget(name: string, sheepPort: number, vdi: string): Promise<{ target: Target; close: () => Promise<void> }> {
  const tgtd: Tgtd = await startTgtd()
  let qemu: ChildProcess | undefined
  const close = async () => {
    if (qemu) await stopChild(qemu)
    await tgtd.stop()
  }
  try {
    const adm = async (args: string[]) => {
      const r = await tgtd.adm(['--lld', 'iscsi', ...args])
      if (r.status !== 0) throw new Error(`tgtadm ${args.join(' ')}: ${r.stderr}\n${tgtd.log()}`)
    }
    await adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', IQN])
    await adm([
      '--op',
      'new',
      '--mode',
      'logicalunit',
      '--tid',
      '1',
      '--lun',
      '1',
      '--bstype',
      'sheepdog',
      '--backing-store',
      `tcp:127.0.0.1:${sheepPort}:${vdi}`,
    ])
    await adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL'])
    const nbdPort = await freePort()
    // --cache=none: qemu passes every write on at once and sends no flush of its own, so what
    // reaches bs_sheepdog is fio's I/O, one SCSI command per request
    const image = `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:${tgtd.portal},file.target=${IQN},file.lun=1`
    qemu = spawn(QEMU_NBD, ['--persistent', '--shared=8', '--cache=none', '-b', '127.0.0.1', '-p', String(nbdPort), '-x', 'lun', '--image-opts', image], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let qemuLog = ''
    qemu.stderr?.on('data', (b: Buffer) => (qemuLog += b.toString()))
    if (qemu.pid !== undefined) trackPid(qemu.pid)
    const q = qemu
    if (!(await waitFor(async () => q.exitCode === null && (await connectable(nbdPort)), QEMU_NBD_START_MS, 100))) {
      throw new Error(`qemu-nbd did not serve the LUN: ${qemuLog}`)
    }
    return { target: { name, fioArgs: ['--ioengine=nbd', `--uri=nbd://127.0.0.1:${nbdPort}/lun`] }, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** A 3-node cluster (copies=3, real fsync) whose node 0 listens below 10000 for bs_sheepdog. */
async function startBenchCluster(root: string, opts: { bin?: string; nbdPort?: number; nodeArgs?: string[]; extraArgs?: string[] }): Promise<TestCluster> {
  const cluster = await startCluster(3, { start: 0, nosync: false, root, bin: opts.bin, nodeArgs: opts.nodeArgs, extraArgs: opts.extraArgs })
  cluster.ports[0] = await freeLowPort()
  await cluster.start(0, [...(opts.extraArgs ?? []), ...(opts.nbdPort !== undefined ? ['-N', String(opts.nbdPort)] : [])])
  for (let i = 1; i < 3; i++) await cluster.start(i)
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 3, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  return cluster
}

/** Peak resident memory of each node in MiB (VmHWM; 0 when a node is gone). */
function nodePeaksMiB(cluster: TestCluster): number[] {
  return cluster.nodes.map((n) => {
    if (!n) return 0
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${n.pid}/status`, 'utf8'))
      return m ? Number(m[1]) / 1024 : 0
    } catch {
      return 0
    }
  })
}

function fmtLat(r: Result | undefined, which: 'p50Us' | 'p99Us'): string {
  if (!r) return '-'
  return r.lat.map((l) => `${r.lat.length > 1 ? `${l.dir} ` : ''}${l[which].toFixed(0)}`).join(' / ')
}

function value(row: Row, r: Result | undefined): number | undefined {
  return r ? (row.mbps ? r.mbps : r.iops) : undefined
}

/** Every run of every row on every path (one per round): tables print each row's median run. */
type Runs = Map<string, Map<string, Result[]>>

/**
 * Ours ÷ theirs for a row: the median of the rounds' ratios when both ran in the same rounds
 * (taking turns), else the ratio of their medians (a path that ran its rows once).
 */
function ratioOf(row: Row, ours: Result[] | undefined, theirs: Result[] | undefined, theirRow = row): number | undefined {
  if (!ours?.length || !theirs?.length) return undefined
  if (ours.length === theirs.length && theirRow === row) {
    return median(ours.map((r, i) => (value(row, r) as number) / (value(row, theirs[i]) as number)))
  }
  return (value(row, medianRun(row, ours)) as number) / (value(theirRow, medianRun(theirRow, theirs)) as number)
}

function printTable(opts: Options, runs: Runs, compareName: string | undefined): void {
  const ceiling = runs.get(CEILING)
  const compare = compareName ? runs.get(compareName) : undefined
  console.log(
    `\n${'workload'.padEnd(27)}${'path'.padEnd(22)}${'IOPS|MB/s'.padStart(10)}${'p50 µs'.padStart(20)}${'p99 µs'.padStart(22)}${'×ceiling'.padStart(10)}${compare ? '×compare'.padStart(10) : ''}`,
  )
  for (const row of opts.rows) {
    for (const [name, byRow] of runs) {
      const all = byRow.get(row.name)
      const r = all?.length ? medianRun(row, all) : undefined
      const v = value(row, r)
      const ratio = (base: Result[] | undefined) => ratioOf(row, all, base)?.toFixed(2) ?? '-'
      console.log(
        `${row.label.padEnd(27)}${name.padEnd(22)}${(v !== undefined ? v.toFixed(row.mbps ? 1 : 0) : '-').padStart(10)}${fmtLat(r, 'p50Us').padStart(20)}${fmtLat(r, 'p99Us').padStart(22)}${ratio(ceiling?.get(row.name)).padStart(10)}${compare ? ratio(compare.get(row.name)).padStart(10) : ''}`,
      )
    }
  }
  const syncs = [...(ceiling?.values() ?? [])].flat().flatMap((r) => (r.syncMeanUs ? [r.syncMeanUs] : []))
  if (syncs.length > 0) {
    console.log(
      `the ceiling's write latencies exclude its fdatasync (mean ${Math.min(...syncs).toFixed(0)}–${Math.max(...syncs).toFixed(0)} µs per call); mixed rows show r/w latencies`,
    )
  }
  if (opts.rounds > 1) {
    console.log(`tgt rows: ${opts.rounds} rounds, each row's figure the median round; ×compare is the median of the rounds' ratios`)
    const ours = runs.get(OURS_TGT)
    for (const row of opts.rows) {
      const mine = ours?.get(row.name)
      const theirs = compare?.get(row.name)
      if (!mine || !theirs || mine.length !== theirs.length) continue
      const each = mine.map((r, i) => ((value(row, r) as number) / (value(row, theirs[i]) as number)).toFixed(2))
      console.log(`  ${row.label.padEnd(27)}ours ÷ compare by round: ${each.join(' ')}`)
    }
  }
}

const OURS_NBD = 'ours via our NBD'
const OURS_TGT = 'ours via tgt iSCSI'
const COMPARE = 'compare via tgt iSCSI'

/**
 * Issue #15's targets: ours on `path` in `row` at least `min` × the compared sheep's tgt figure
 * in `compareRow` (default: the same row).
 */
const TARGETS: readonly { row: string; path: string; min: number; note?: string; compareRow?: string }[] = [
  ...ROWS.filter((r) => !r.mbps && r.flushEvery === undefined).map((r) => ({ row: r.name, path: OURS_TGT, min: 1.2 })),
  // the original's writes are durable one by one; ours through NBD become durable at each FLUSH
  { row: 'randwrite-flush-qd16', path: OURS_NBD, min: 3, note: 'write-back + FLUSH/64 vs its plain QD16', compareRow: 'randwrite-qd16' },
  { row: 'randread-qd16', path: OURS_NBD, min: 1.5 },
  { row: 'seqwrite-1m-qd8', path: OURS_TGT, min: 1.9 },
]

/** Says, for every target the run measured, whether it was met. */
function printTargets(runs: Runs): void {
  const compare = runs.get(COMPARE)
  if (!compare) return
  console.log('\ntargets (issue #15), against the compared sheep through tgt:')
  for (const t of TARGETS) {
    const row = ROWS.find((r) => r.name === t.row) as Row
    const theirRow = ROWS.find((r) => r.name === (t.compareRow ?? t.row)) as Row
    const ratio = ratioOf(row, runs.get(t.path)?.get(t.row), compare.get(theirRow.name), theirRow)
    if (ratio === undefined || !Number.isFinite(ratio)) continue
    console.log(
      `  ${row.label.padEnd(27)}${t.path.padEnd(22)}${ratio.toFixed(2).padStart(6)} × (≥ ${t.min}${t.note ? `, ${t.note}` : ''}) ${ratio >= t.min ? 'met' : 'NOT met'}`,
    )
  }
}

export async function runIopsBench(): Promise<void> {
  const opts = parseOptions(process.argv.slice(3))
  const missing = [FIO, TGTD, TGTADM, QEMU_NBD].filter((p) => !fs.existsSync(p))
  if (missing.length > 0) {
    console.error(`iops bench: missing ${missing.join(', ')} (scripts/install-deps.sh installs them)`)
    process.exit(1)
  }
  const work = tempDir('sheep-iops-')
  const results: Runs = new Map()
  const peaks: string[] = []
  let oursPeakMiB: number | undefined
  const vdiSize = BigInt((opts.regionMib + VDI_SLACK_MIB) * MiB)
  const compareName = opts.compareSheep && opts.paths.has('compare') ? COMPARE : undefined
  console.log(`iops bench: ${opts.seconds} s per row over ${opts.regionMib} MiB, work directory ${work}`)
  try {
    if (opts.paths.has('ceiling')) {
      const file = path.join(work, 'ceiling.img')
      const target: Target = { name: CEILING, local: true, fioArgs: ['--ioengine=libaio', '--direct=1', `--filename=${file}`] }
      results.set(target.name, await runRows(target, opts))
      fs.rmSync(file)
    }
    let ours: TestCluster | undefined
    let compare: TestCluster | undefined
    const tgts: Array<{ target: Target; close: () => Promise<void> }> = []
    try {
      if (opts.paths.has('nbd') || opts.paths.has('tgt')) {
        const nbdPort = await freePort()
        if (opts.cpuProfDir) fs.mkdirSync(opts.cpuProfDir, { recursive: true })
        const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`] : undefined
        ours = await startBenchCluster(path.join(work, 'ours'), { nbdPort, nodeArgs, extraArgs: opts.sheepArgs })
        if (opts.paths.has('nbd')) {
          await newVdi(ours.conn(0), { name: 'nbdvol', vdiSize })
          const target = { name: OURS_NBD, fioArgs: ['--ioengine=nbd', `--uri=nbd://127.0.0.1:${nbdPort}/nbdvol`] }
          results.set(target.name, await runRows(target, opts))
        }
        if (opts.paths.has('tgt')) {
          await newVdi(ours.conn(0), { name: 'tgtvol', vdiSize })
          tgts.push(await tgtTarget(OURS_TGT, ours.ports[0] as number, 'tgtvol'))
        }
      }
      if (compareName) {
        compare = await startBenchCluster(path.join(work, 'compare'), { bin: opts.compareSheep })
        await newVdi(compare.conn(0), { name: 'tgtvol', vdiSize })
        tgts.push(await tgtTarget(compareName, compare.ports[0] as number, 'tgtvol'))
      }
      // the tgt paths take turns at each row, in rounds
      for (const [name, byRow] of await runInterleaved(
        tgts.map((t) => t.target),
        opts,
      ))
        results.set(name, byRow)
    } finally {
      for (const tgt of tgts) await tgt.close()
      if (compare) {
        peaks.push(
          `compare (${opts.compareSheep}) ${nodePeaksMiB(compare)
            .map((m) => m.toFixed(0))
            .join(', ')} MiB`,
        )
        // the original lingers on SIGTERM; its data is thrown away anyway
        for (let i = 0; i < 3; i++) await compare.stop(i, 'SIGKILL')
        await compare.close()
      }
      if (ours) {
        const mine = nodePeaksMiB(ours)
        oursPeakMiB = Math.max(...mine)
        peaks.unshift(`ours ${mine.map((m) => m.toFixed(0)).join(', ')} MiB`)
        await ours.close()
      }
    }
    printTable(opts, results, compareName)
    printTargets(results)
    if (peaks.length > 0) console.log(`peak sheep RSS (VmHWM) per node: ${peaks.join('; ')}`)
    if (oursPeakMiB !== undefined) {
      console.log(`peak RSS of our sheep ${oursPeakMiB.toFixed(0)} MiB (< ${RSS_BOUND_MIB} MiB) ${oursPeakMiB < RSS_BOUND_MIB ? 'met' : 'NOT met'}`)
    }
    if (opts.cpuProfDir) console.log(`CPU profiles of our sheep: ${opts.cpuProfDir}`)
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}
