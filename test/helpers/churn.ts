// The churn harness of the data-loss tests (docs/recovery.md): real sheep on the local driver
// with real fsync, writers that run the real `dog vdi write` and record a write in a model only
// when dog exits 0, and a killer that SIGKILLs nodes and starts them again on the same
// directory, port and zone (or kills the whole cluster at once). Afterwards every node must read
// back every acknowledged byte, and every object of the VDI must be on exactly `copies` nodes
// with identical bytes. One seed decides every random choice (chunks, data, which node dies,
// pauses), so a failing run can be replayed; the interleaving with the daemons is real and
// varies. Used by test/functional/churn*.test.ts (bounded, in CI) and test/soak/churn.ts (long).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { makeFs } from '../../lib/sheep-api.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { SD_INODE_HEADER_SIZE, oidToVid, vidToDataOid } from '../../lib/oid.js'
import { type TestCluster, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { DOG_BIN, isAlive, programEnv, untrackPid, waitFor } from '../../harness/sheep.js'
import { seededRandom } from './random.js'

const MiB = 1024 * 1024
/** The VDI's object size (the default block_size_shift 22). */
const CHUNK_BYTES = 4 * MiB
/** Bytes a partial write is aligned to and a multiple of. */
const PARTIAL_ALIGN_BYTES = 4096
/** Uncertain (failed) writes are compared at this granularity: each sector is old or new. */
const SECTOR_BYTES = 512
/** A dog that has not finished after this long is killed and its write counts as failed. */
const DOG_TIMEOUT_MS = 120_000
/** Pause after a failed write before the writer goes on. */
const WRITE_RETRY_PAUSE_MS = 300
/** Retries of an admin command (snapshot) that fails while nodes die. */
const ADMIN_RETRIES = 30
/** How long recovery may take to settle after the churn before the run fails. */
const SETTLE_TIMEOUT_MS = 300_000

export interface ChurnOptions {
  seed: number
  /** How long writers and killer run. */
  durationMs: number
  nodes?: number
  copies?: number
  vdiSizeMiB?: number
  /** Nodes the writers send their writes through, one writer each (default [0]). */
  gateways?: number[]
  /** Nodes the killer may kill (default: every node that is not a gateway). */
  killable?: number[]
  /** Time from one kill to the next, ms (uniform in the range). */
  killEveryMs?: [number, number]
  /** How long a killed node stays down, ms. */
  downForMs?: [number, number]
  /** Share of writes that cover part of a chunk instead of all of it (0..1). */
  partialShare?: number
  /** Take a snapshot this long after the start (writers pause while it is taken). */
  snapshotAtMs?: number
  /** Kill every node at once instead of one at a time. */
  wholeCluster?: boolean
  /** Keep the cluster's directories (logs, objects) when the run finds anything wrong. */
  keepFailed?: boolean
  log?: (line: string) => void
}

export interface WrongChunk {
  where: string
  chunk: number
  wrongSectors: number
}

export interface ChurnReport {
  seed: number
  kills: number
  acked: number
  failed: number
  /** Chunks that read back wrong, per node / snapshot. */
  wrong: WrongChunk[]
  wrongBytes: number
  /** Objects of the VDI not on exactly `copies` nodes, or whose replicas differ. */
  replicaProblems: string[]
  /** Nodes whose full read failed outright. */
  readFailures: string[]
  snapshots: number
  settled: boolean
  /** ERROR and FATAL lines the sheep logged, by text with numbers masked, with their counts. */
  logErrors: string[]
  /** Where the cluster's files were kept (a failed run with `keepFailed`). */
  keptAt?: string
}

/** What a chunk must read back as: a certain base plus writes that may or may not have landed. */
interface ChunkModel {
  base: Buffer
  /** Failed writes: each of their sectors may read old or new. */
  maybe: Array<{ offset: number; data: Buffer }>
}

class VdiModel {
  readonly chunks: ChunkModel[]
  constructor(count: number) {
    this.chunks = Array.from({ length: count }, () => ({ base: Buffer.alloc(CHUNK_BYTES), maybe: [] }))
  }

  acked(chunk: number, offset: number, data: Buffer): void {
    const c = this.chunks[chunk]
    data.copy(c.base, offset)
    // a failed write's sectors under this one can no longer show
    const end = offset + data.length
    c.maybe = c.maybe.flatMap((m) => {
      const mEnd = m.offset + m.data.length
      if (mEnd <= offset || m.offset >= end) return [m]
      const parts: Array<{ offset: number; data: Buffer }> = []
      if (m.offset < offset) parts.push({ offset: m.offset, data: m.data.subarray(0, offset - m.offset) })
      if (mEnd > end) parts.push({ offset: end, data: m.data.subarray(end - m.offset) })
      return parts
    })
  }

  failed(chunk: number, offset: number, data: Buffer): void {
    this.chunks[chunk].maybe.push({ offset, data })
  }

  /** Sectors of `actual` that match neither the base nor any failed write over them. */
  wrongSectors(chunk: number, actual: Buffer): number {
    const c = this.chunks[chunk]
    if (actual.equals(c.base)) return 0
    let wrong = 0
    for (let at = 0; at < CHUNK_BYTES; at += SECTOR_BYTES) {
      const got = actual.subarray(at, at + SECTOR_BYTES)
      if (got.equals(c.base.subarray(at, at + SECTOR_BYTES))) continue
      const ok = c.maybe.some(
        (m) => at >= m.offset && at + SECTOR_BYTES <= m.offset + m.data.length && got.equals(m.data.subarray(at - m.offset, at - m.offset + SECTOR_BYTES)),
      )
      if (!ok) wrong++
    }
    return wrong
  }

  clone(): VdiModel {
    const copy = new VdiModel(0)
    for (const c of this.chunks) copy.chunks.push({ base: Buffer.from(c.base), maybe: [...c.maybe] })
    return copy
  }
}

/** Fast seeded bytes (xorshift32): a 4 MiB write costs a few milliseconds. */
function randomFill(length: number, seed: number): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4))
  let x = seed >>> 0 || 0x9e3779b9
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x >>> 0
  }
  return Buffer.from(words.buffer, 0, length)
}

interface DogRun {
  status: number
  stdout: Buffer
  stderr: string
}

/** Runs the real dog; a dog that hangs is killed after DOG_TIMEOUT_MS (status -1). */
function runDog(args: string[], input?: Buffer): Promise<DogRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(DOG_BIN, args, { env: programEnv(), stdio: ['pipe', 'pipe', 'pipe'], timeout: DOG_TIMEOUT_MS })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ status: code ?? -1, stdout: Buffer.concat(out), stderr }))
    child.stdin.on('error', () => undefined)
    child.stdin.end(input ?? '')
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Runs one churn scenario to its end and reports what read back wrong. The cluster is removed. */
export async function runChurn(opts: ChurnOptions): Promise<ChurnReport> {
  const nodes = opts.nodes ?? 4
  const copies = opts.copies ?? 3
  const vdiSizeMiB = opts.vdiSizeMiB ?? 512
  const gateways = opts.gateways ?? [0]
  const killable = opts.killable ?? [...Array(nodes).keys()].filter((i) => !gateways.includes(i))
  const [killMin, killMax] = opts.killEveryMs ?? [4000, 6000]
  const [downMin, downMax] = opts.downForMs ?? [2000, 3000]
  const partialShare = opts.partialShare ?? 0
  const log = opts.log ?? (() => undefined)
  const random = seededRandom(opts.seed)
  const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))
  const chunkCount = (vdiSizeMiB * MiB) / CHUNK_BYTES
  const model = new VdiModel(chunkCount)
  const report: ChurnReport = {
    seed: opts.seed,
    kills: 0,
    acked: 0,
    failed: 0,
    wrong: [],
    wrongBytes: 0,
    replicaProblems: [],
    readFailures: [],
    snapshots: 0,
    settled: false,
    logErrors: [],
  }

  const cluster = await startCluster(nodes, { nosync: false })
  try {
    await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    const created = await runDog(['vdi', 'create', 'churn', `${vdiSizeMiB}M`, '-p', String(cluster.ports[0])])
    if (created.status !== 0) throw new Error(`dog vdi create failed: ${created.stderr}`)

    const end = Date.now() + opts.durationMs
    const snapshotModels: Array<{ tag: string; model: VdiModel }> = []
    // the snapshotter pauses the writers: each finishes the write in hand and waits at the gate
    let gate: Promise<void> | undefined
    let atGate = 0
    let gateWaiter: (() => void) | undefined
    const arrive = () => {
      atGate++
      if (atGate === gateways.length) gateWaiter?.()
    }

    // the writers: writer k owns the chunks with index ≡ k (mod writers), so the model is exact
    const writer = async (k: number): Promise<void> => {
      const port = cluster.ports[gateways[k]]
      const own = [...Array(chunkCount).keys()].filter((c) => c % gateways.length === k)
      while (Date.now() < end) {
        if (gate) {
          arrive()
          await gate
          atGate--
        }
        const chunk = own[between(0, own.length - 1)]
        let offset = 0
        let length = CHUNK_BYTES
        if (random() < partialShare) {
          length = PARTIAL_ALIGN_BYTES * between(1, 256)
          offset = PARTIAL_ALIGN_BYTES * between(0, (CHUNK_BYTES - length) / PARTIAL_ALIGN_BYTES)
        }
        const data = randomFill(length, between(1, 0x7fffffff))
        const r = await runDog(['vdi', 'write', 'churn', String(chunk * CHUNK_BYTES + offset), String(length), '-p', String(port)], data)
        if (r.status === 0) {
          model.acked(chunk, offset, data)
          report.acked++
        } else {
          model.failed(chunk, offset, data)
          report.failed++
          log(`write to chunk ${chunk} through node ${gateways[k]} failed (${r.status}): ${r.stderr.trim().split('\n')[0]}`)
          // the gateway is down or the cluster is waiting: give it a moment
          await sleep(WRITE_RETRY_PAUSE_MS)
        }
      }
      arrive()
    }

    const kill = async (i: number): Promise<void> => {
      const s = cluster.nodes[i]
      if (!s) return
      untrackPid(s.pid)
      try {
        process.kill(s.pid, 'SIGKILL')
      } catch {
        // already gone
      }
      await waitFor(() => !isAlive(s.pid), 10_000)
      cluster.nodes[i] = undefined
      report.kills++
    }

    // a kill every killEveryMs (from one kill to the next), each victim back after downForMs:
    // the next kill often lands while the last victim's recovery is still running
    const killer = async (): Promise<void> => {
      const restarts: Array<Promise<unknown>> = []
      let lastKill = Date.now()
      while (Date.now() < end) {
        await sleep(Math.max(0, lastKill + between(killMin, killMax) - Date.now()))
        if (Date.now() >= end) break
        lastKill = Date.now()
        const alive = (opts.wholeCluster ? [...Array(nodes).keys()] : killable).filter((i) => cluster.nodes[i])
        if (alive.length === 0) continue
        const victims = opts.wholeCluster ? alive : [alive[between(0, alive.length - 1)]]
        log(`kill ${victims.join(',')}`)
        await Promise.all(victims.map(kill))
        const down = between(downMin, downMax)
        restarts.push(
          sleep(down).then(async () => {
            for (const i of victims) await cluster.start(i)
          }),
        )
      }
      await Promise.all(restarts)
    }

    const snapshotter = async (): Promise<void> => {
      if (opts.snapshotAtMs === undefined) return
      await sleep(opts.snapshotAtMs)
      let open!: () => void
      gate = new Promise<void>((r) => {
        open = r
      })
      if (atGate < gateways.length)
        await new Promise<void>((r) => {
          gateWaiter = r
        })
      for (let attempt = 1; attempt <= ADMIN_RETRIES; attempt++) {
        const tag = `snap${attempt}`
        const r = await runDog(['vdi', 'snapshot', '-s', tag, 'churn', '-p', String(cluster.ports[gateways[0]])])
        snapshotModels.push({ tag, model: model.clone() })
        if (r.status === 0) {
          report.snapshots++
          log(`snapshot ${tag} taken`)
          break
        }
        log(`snapshot ${tag} failed: ${r.stderr.trim()}`)
        await sleep(1000)
      }
      gate = undefined
      gateWaiter = undefined
      open()
    }

    await Promise.all([...gateways.map((_, k) => writer(k)), killer(), snapshotter()])

    // every node up again, recovery settled, then read everything through every node
    for (let i = 0; i < nodes; i++) if (!cluster.nodes[i]) await cluster.start(i)
    report.settled = await waitForRecovery(cluster, SETTLE_TIMEOUT_MS)
    log(`settled: ${report.settled}; ${report.acked} acked, ${report.failed} failed writes, ${report.kills} kills`)
    for (let i = 0; i < nodes; i++) {
      await checkRead(cluster, i, [], model, `node ${i}`, report)
      for (const s of snapshotModels) await checkRead(cluster, i, ['-s', s.tag], s.model, `node ${i} snapshot ${s.tag}`, report, true)
    }
    const uncertain = new Set<number>()
    for (const m of [model, ...snapshotModels.map((s) => s.model)])
      m.chunks.forEach((c, i) => {
        if (c.maybe.length > 0) uncertain.add(i)
      })
    checkReplicas(cluster, copies, chunkCount, uncertain, report)
    report.logErrors = logErrors(cluster)
    return report
  } finally {
    const keep = opts.keepFailed === true && !churnPassed(report)
    if (keep) report.keptAt = cluster.root
    await cluster.close({ keepFiles: keep })
  }
}

/** Nothing acknowledged was lost and the cluster came back whole. */
export function churnPassed(report: ChurnReport): boolean {
  return report.settled && report.wrong.length === 0 && report.readFailures.length === 0 && report.replicaProblems.length === 0
}

/** The ERROR and FATAL lines of every node's sheep.log, numbers masked, counted. */
function logErrors(cluster: TestCluster): string[] {
  const counts = new Map<string, number>()
  for (let i = 0; i < cluster.ports.length; i++) {
    const file = path.join(cluster.root, `n${i}`, 'sheep.log')
    if (!fs.existsSync(file)) continue
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!/ (ERROR|FATAL) /.test(line)) continue
      const text = line
        .replace(/^\S+ /, '')
        .replace(/[0-9a-f]{16}/g, 'OID')
        .replace(/\d+/g, 'N')
      counts.set(text, (counts.get(text) ?? 0) + 1)
    }
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([text, n]) => `${n}× ${text}`)
}

/** Reads the whole VDI (or a snapshot) through node `i` and compares it with the model. */
async function checkRead(
  cluster: TestCluster,
  i: number,
  extra: string[],
  model: VdiModel,
  where: string,
  report: ChurnReport,
  mayBeMissing = false,
): Promise<void> {
  const r = await runDog(['vdi', 'read', ...extra, 'churn', '-p', String(cluster.ports[i])])
  if (r.status !== 0) {
    // a snapshot whose attempt failed may not exist; that is no data loss
    if (mayBeMissing && /not found|No VDI/i.test(r.stderr)) return
    report.readFailures.push(`${where}: dog vdi read exited ${r.status}: ${r.stderr.trim()}`)
    return
  }
  for (let c = 0; c < model.chunks.length; c++) {
    const actual = r.stdout.subarray(c * CHUNK_BYTES, (c + 1) * CHUNK_BYTES)
    const wrongSectors = actual.length === CHUNK_BYTES ? model.wrongSectors(c, actual) : CHUNK_BYTES / SECTOR_BYTES
    if (wrongSectors > 0) {
      report.wrong.push({ where, chunk: c, wrongSectors })
      report.wrongBytes += wrongSectors * SECTOR_BYTES
    }
  }
}

/**
 * Every object the VDI's inodes name, and the inodes themselves, must be stored on exactly
 * `copies` running nodes. Replicas must hold the same bytes — except where a write failed
 * (`uncertain` chunks): such a write may have reached some replicas and not others, which loses
 * nothing acknowledged, so those data objects and index slots are not compared.
 */
function checkReplicas(cluster: TestCluster, copies: number, chunkCount: number, uncertain: Set<number>, report: ChurnReport): void {
  const dirs = cluster.nodes.filter((n) => n !== undefined).map((n) => path.join(n.dir, 'obj'))
  const name = (oid: bigint) => oid.toString(16).padStart(16, '0')
  const replicas = (oid: bigint) => dirs.map((d) => path.join(d, name(oid))).filter((f) => fs.existsSync(f))
  const inodes = new Set<string>()
  for (const d of dirs) for (const f of fs.readdirSync(d)) if (/^8[0-9a-f]{15}$/.test(f)) inodes.add(f)
  /** Checks the replica count; compares the replicas' bytes outside the `skip` ranges. */
  const check = (oid: bigint, skip: Array<[number, number]> = []): Buffer | undefined => {
    const files = replicas(oid)
    if (files.length !== copies) report.replicaProblems.push(`${name(oid)}: ${files.length} replica(s), want ${copies}`)
    const contents = files.map((f) => {
      const b = fs.readFileSync(f)
      for (const [from, to] of skip) b.fill(0, from, Math.min(to, b.length))
      return b
    })
    if (contents.some((c) => !c.equals(contents[0]))) report.replicaProblems.push(`${name(oid)}: replicas differ (${files.join(' ')})`)
    return files.length > 0 ? fs.readFileSync(files[0]) : undefined
  }
  for (const f of inodes) {
    const oid = BigInt('0x' + f)
    const slots = [...uncertain].map((c): [number, number] => [SD_INODE_HEADER_SIZE + c * 4, SD_INODE_HEADER_SIZE + c * 4 + 4])
    const inode = check(oid, slots)
    if (!inode) continue
    const vid = oidToVid(oid)
    for (let idx = 0; idx < chunkCount; idx++) {
      const at = SD_INODE_HEADER_SIZE + idx * 4
      if (at + 4 > inode.length) break
      if (inode.readUInt32LE(at) === vid) check(vidToDataOid(vid, idx), uncertain.has(idx) ? [[0, CHUNK_BYTES]] : [])
    }
  }
}
