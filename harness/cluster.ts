// A local cluster for functional tests and the bench: N real sheep on 127.0.0.1 sharing one event file of
// their own (`-c local:DIR/shm`), each in its own zone, plus helpers to wait for recovery to
// settle and to count object files on disk.
import fs from 'node:fs'
import path from 'node:path'
import { SheepConnection } from '../lib/client.js'
import { HashRing } from '../lib/ring.js'
import { getNodeList, statRecovery } from '../lib/sheep-api.js'
import { type SheepProcess, freePort, isAlive, startSheep, stopSheep, tempDir, waitFor } from './sheep.js'

export interface TestCluster {
  root: string
  eventFile: string
  nodes: Array<SheepProcess | undefined>
  ports: number[]
  conn(i: number): SheepConnection
  /** Starts node i; `disks`: its object disks after its base directory (default: the cluster's `disks`). */
  start(i: number, extraArgs?: string[], disks?: string[]): Promise<SheepProcess>
  stop(i: number, signal?: NodeJS.Signals): Promise<void>
  /** Stops every node; the files stay when `keepFiles` (a failed run kept for a post-mortem). */
  close(opts?: { keepFiles?: boolean }): Promise<void>
}

/** Tries at starting a node whose picked port was taken meanwhile. */
const START_PORT_ATTEMPTS = 3

export interface ClusterOptions {
  extraArgs?: string[]
  /** How many nodes to start now (default: all). */
  start?: number
  nosync?: boolean
  root?: string
  /** The cluster-driver arguments of every node; default the local driver on ROOT/shm. */
  driverArgs?: string[]
  /** Object disks of node i after its base directory (multi-disk); none: objects in its obj/. */
  disks?: (i: number) => string[] | undefined
  /** Another sheep program for every node (StartOptions.bin). */
  bin?: string
  /** Node arguments for every node (StartOptions.nodeArgs). */
  nodeArgs?: string[]
}

export async function startCluster(count: number, opts: ClusterOptions = {}): Promise<TestCluster> {
  const root = opts.root ?? tempDir('sheep-cluster-')
  const eventFile = path.join(root, 'shm')
  const driverArgs = opts.driverArgs ?? ['-c', `local:${eventFile}`]
  const ports: number[] = []
  for (let i = 0; i < count; i++) ports.push(await freePort())
  const conns = new Map<number, SheepConnection>()
  const everStarted = new Set<number>()
  const cluster: TestCluster = {
    root,
    eventFile,
    nodes: [],
    ports,
    conn(i) {
      let c = conns.get(i)
      if (!c) {
        c = new SheepConnection({ host: '127.0.0.1', port: ports[i] }, { timeoutMs: 60_000 })
        conns.set(i, c)
      }
      return c
    },
    async start(i, extraArgs = opts.extraArgs ?? [], disks = opts.disks?.(i)) {
      if (i >= ports.length) ports[i] = await freePort()
      // the port was free when it was picked; a parallel test's outgoing connection may have
      // taken it since (ephemeral ports overlap): pick another and try again — on a node's first
      // start only, since a restarted node must keep its address to be the same node
      const firstStart = !everStarted.has(i)
      everStarted.add(i)
      let s: SheepProcess | undefined
      for (let attempt = 1; s === undefined; attempt++) {
        try {
          s = await startSheep({
            port: ports[i],
            dir: path.join(root, `n${i}`),
            args: [...driverArgs, '-z', String(i), ...extraArgs],
            nosync: opts.nosync,
            disks,
            bin: opts.bin,
            nodeArgs: opts.nodeArgs,
          })
        } catch (e) {
          if (!firstStart || attempt >= START_PORT_ATTEMPTS || !String(e).includes('EADDRINUSE')) throw e
          ports[i] = await freePort()
        }
      }
      cluster.nodes[i] = s
      return s
    },
    async stop(i, signal = 'SIGTERM') {
      conns.get(i)?.close()
      conns.delete(i)
      const s = cluster.nodes[i]
      if (s) await stopSheep(s, signal)
      cluster.nodes[i] = undefined
    },
    async close(closeOpts = {}) {
      for (const c of conns.values()) c.close()
      conns.clear()
      for (let i = 0; i < cluster.nodes.length; i++) {
        const s = cluster.nodes[i]
        // a stopped (SIGSTOP) node must be woken to die of SIGTERM
        if (s && isAlive(s.pid)) process.kill(s.pid, 'SIGCONT')
        await cluster.stop(i)
      }
      if (!closeOpts.keepFiles) fs.rmSync(root, { recursive: true, force: true })
    },
  }
  for (let i = 0; i < (opts.start ?? count); i++) await cluster.start(i)
  return cluster
}

/**
 * Waits until recovery has settled: every running node is at the same epoch, none is
 * recovering and no stale copies are left — seen twice in a row, so a membership change that
 * some node has not applied yet cannot pass for a settled cluster.
 */
export async function waitForRecovery(cluster: TestCluster, timeoutMs = 120_000): Promise<boolean> {
  let settledOnce = false
  const unsettled = (): boolean => {
    settledOnce = false
    return false
  }
  return waitFor(
    async () => {
      const epochs = new Set<number>()
      for (let i = 0; i < cluster.nodes.length; i++) {
        const node = cluster.nodes[i]
        if (!node) continue
        try {
          const st = await statRecovery(cluster.conn(i))
          if (st.inRecovery) return unsettled()
          epochs.add((await getNodeList(cluster.conn(i))).epoch)
        } catch {
          return unsettled()
        }
        const stale = path.join(node.dir, 'obj', '.stale')
        if (fs.existsSync(stale) && fs.readdirSync(stale).length > 0) return unsettled()
      }
      if (epochs.size > 1) return unsettled()
      if (settledOnce) return true
      settledOnce = true
      return false
    },
    timeoutMs,
    250,
  )
}

/** oid file name → how many running nodes store it (live objects, not stale copies). */
export function objectCopies(cluster: TestCluster): Map<string, number> {
  const counts = new Map<string, number>()
  for (const node of cluster.nodes) {
    if (!node) continue
    const dir = path.join(node.dir, 'obj')
    if (!fs.existsSync(dir)) continue
    for (const name of fs.readdirSync(dir)) {
      if (!/^[0-9a-f]{16}$/.test(name)) continue
      counts.set(name, (counts.get(name) ?? 0) + 1)
    }
  }
  return counts
}

/**
 * Objects not stored exactly where the ring of the current members puts them: oid file name →
 * the ports that hold it and the ports that should (every running node's live objects).
 */
export async function misplacedObjects(cluster: TestCluster, copies: number): Promise<Map<string, { held: number[]; wanted: number[] }>> {
  const first = cluster.nodes.findIndex((n) => n !== undefined)
  const { nodes } = await getNodeList(cluster.conn(first))
  const ring = new HashRing(nodes)
  const held = new Map<string, number[]>()
  for (const node of cluster.nodes) {
    if (!node) continue
    const dir = path.join(node.dir, 'obj')
    if (!fs.existsSync(dir)) continue
    for (const name of fs.readdirSync(dir)) if (/^[0-9a-f]{16}$/.test(name)) held.set(name, [...(held.get(name) ?? []), node.port])
  }
  const misplaced = new Map<string, { held: number[]; wanted: number[] }>()
  for (const [name, ports] of held) {
    const wanted = ring.replicasFor(BigInt(`0x${name}`), copies).map((n) => n.port)
    const same = ports.length === wanted.length && wanted.every((p) => ports.includes(p))
    if (!same) misplaced.set(name, { held: ports.sort(), wanted: wanted.sort() })
  }
  return misplaced
}
