// Several "hosts" on one machine for functional tests: network namespaces made by the test,
// joined by veth pairs to a bridge in a hub namespace, with addresses of a benchmark-testing
// range (198.18.0.0/24, RFC 2544) that exist only inside these namespaces. No namespace gets a
// default route and nothing is added to the test's own namespace, so no traffic can leave.
// A host is cut off by setting its link on the hub down, and healed by setting it up again.
// createLoopbackNet makes a single namespace instead, whose loopback addresses can come and go
// one by one (sheep's I/O NIC test).
// Everything made here is removed by `close()` (also registered for process exit), and
// namespaces left by earlier runs of a test that died are removed on the next run.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { isAlive, programEnv, trackPid, waitFor } from '../../harness/sheep.js'

/** Namespace names: `<NETNS_PREFIX><pid>-<role>`. The pid tells whether their maker still runs. */
export const NETNS_PREFIX = 'sdzk'
/** The private range of the test network (198.18.0.0/15 is reserved for benchmark tests). */
export const NETNS_SUBNET = '198.18.0'
export const NETNS_PREFIX_LENGTH = 24
/** Hosts get .10, .11, ...; the hub (bridge) gets .1. */
const FIRST_HOST_OCTET = 10
/** Most hosts in one network (addresses .10–.99). */
export const NETNS_MAX_HOSTS = 90
/** How long an `ip` command may take. */
const IP_COMMAND_TIMEOUT_MS = 10_000
/** How long a process in a namespace may take to exit before it gets SIGKILL. */
const STOP_TIMEOUT_MS = 10_000

export interface NetHost {
  ns: string
  addr: string
  /** The host's veth end in the hub namespace (down = the host is cut off). */
  hubLink: string
}

export interface ExecResult {
  status: number
  stdout: Buffer
  stderr: string
}

export interface TestNet {
  hub: string
  hubAddr: string
  hosts: NetHost[]
  /** Runs `argv` inside `ns`; `input` goes to stdin. */
  exec(ns: string, argv: string[], opts?: { input?: Buffer | string; timeoutMs?: number }): Promise<ExecResult>
  cut(i: number): void
  heal(i: number): void
  /** Records a pid started inside one of the namespaces: close() stops it. */
  track(pid: number): void
  close(): Promise<void>
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_COMMAND_TIMEOUT_MS })
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`)
}

function listNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: IP_COMMAND_TIMEOUT_MS })
  return r.status === 0
    ? r.stdout
        .split('\n')
        .map((l) => l.split(' ')[0]!)
        .filter(Boolean)
    : []
}

function pidsIn(ns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: IP_COMMAND_TIMEOUT_MS })
  return r.status === 0
    ? r.stdout
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .filter((n) => n > 0)
    : []
}

/** True when this process may make namespaces (root with iproute2 and namespace support). */
export function netnsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false
  const probe = `${NETNS_PREFIX}${process.pid}-probe`
  try {
    ip(['netns', 'add', probe])
    ip(['netns', 'del', probe])
    return true
  } catch {
    return false
  }
}

/** Kills, by pid, what still runs in namespaces of ours, then deletes them (synchronous: usable on exit). */
function removeNamespaces(names: string[], pids: Iterable<number>): void {
  for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
  for (const ns of names) {
    // anything else left inside was started there by the test (e.g. a dog that hung)
    for (const pid of pidsIn(ns)) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
    try {
      ip(['netns', 'del', ns])
    } catch {
      // already gone
    }
  }
}

/** Namespaces of earlier runs whose test process is gone (killed before it could clean up). */
function removeOrphans(): void {
  const pattern = new RegExp(`^${NETNS_PREFIX}(\\d+)-`)
  const orphans = listNamespaces().filter((ns) => {
    const m = pattern.exec(ns)
    return m !== null && !isAlive(Number(m[1]))
  })
  removeNamespaces(orphans, [])
}

/** Runs `argv` inside `ns`, its pid in `pids` while it runs; killed after `timeoutMs`. */
function execIn(pids: Set<number>, ns: string, argv: string[], opts: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: programEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    if (child.pid) pids.add(child.pid)
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (child.pid) pids.delete(child.pid)
      resolve({ status: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') })
    })
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}

/** SIGTERM to each pid still alive, SIGKILL to one that lingers. */
async function stopAll(pids: Iterable<number>): Promise<void> {
  for (const pid of pids) {
    if (!isAlive(pid)) continue
    process.kill(pid, 'SIGTERM')
    if (!(await waitFor(() => !isAlive(pid), STOP_TIMEOUT_MS))) process.kill(pid, 'SIGKILL')
  }
}

export async function createTestNet(count: number): Promise<TestNet> {
  if (count < 1 || count > NETNS_MAX_HOSTS) throw new Error(`createTestNet: ${count} hosts (1..${NETNS_MAX_HOSTS})`)
  removeOrphans()
  const base = `${NETNS_PREFIX}${process.pid}-`
  const made: string[] = []
  const pids = new Set<number>()
  let closed = false
  const onExit = () => {
    if (!closed) removeNamespaces(made, pids)
  }
  process.on('exit', onExit)
  const hub = `${base}hub`
  const hubAddr = `${NETNS_SUBNET}.1`
  const hosts: NetHost[] = []
  try {
    ip(['netns', 'add', hub])
    made.push(hub)
    ip(['-n', hub, 'link', 'set', 'lo', 'up'])
    ip(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
    ip(['-n', hub, 'addr', 'add', `${hubAddr}/${NETNS_PREFIX_LENGTH}`, 'dev', 'br0'])
    ip(['-n', hub, 'link', 'set', 'br0', 'up'])
    for (let i = 0; i < count; i++) {
      const ns = `${base}h${i}`
      const addr = `${NETNS_SUBNET}.${FIRST_HOST_OCTET + i}`
      const hubLink = `h${i}`
      ip(['netns', 'add', ns])
      made.push(ns)
      ip(['-n', ns, 'link', 'set', 'lo', 'up'])
      // made inside the hub, the host end moved straight into the host: never in our namespace
      ip(['-n', hub, 'link', 'add', hubLink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      ip(['-n', hub, 'link', 'set', hubLink, 'master', 'br0'])
      ip(['-n', hub, 'link', 'set', hubLink, 'up'])
      ip(['-n', ns, 'addr', 'add', `${addr}/${NETNS_PREFIX_LENGTH}`, 'dev', 'eth0'])
      ip(['-n', ns, 'link', 'set', 'eth0', 'up'])
      hosts.push({ ns, addr, hubLink })
    }
  } catch (e) {
    removeNamespaces(made, pids)
    process.off('exit', onExit)
    throw e
  }

  const net: TestNet = {
    hub,
    hubAddr,
    hosts,
    exec: (ns, argv, opts) => execIn(pids, ns, argv, opts),
    cut(i) {
      ip(['-n', hub, 'link', 'set', hosts[i]!.hubLink, 'down'])
    },
    heal(i) {
      ip(['-n', hub, 'link', 'set', hosts[i]!.hubLink, 'up'])
    },
    track(pid) {
      pids.add(pid)
    },
    async close() {
      if (closed) return
      await stopAll(pids)
      removeNamespaces(made, pids)
      closed = true
      process.off('exit', onExit)
      const left = listNamespaces().filter((ns) => made.includes(ns))
      if (left.length > 0) throw new Error(`namespaces left behind: ${left.join(' ')}`)
    },
  }
  return net
}

/**
 * One namespace of the test's own whose loopback has only 127.0.0.1 and `extraAddrs` (each a
 * /32 of 127.0.0.0/8, instead of the usual 127.0.0.0/8): an address that is deleted is then
 * really gone — connecting to it fails with "Network is unreachable" and connections open to it
 * stall — while the rest of the namespace goes on. Everything runs inside: sheep, dog, ss.
 */
export interface LoopbackNet {
  ns: string
  exec: TestNet['exec']
  track: TestNet['track']
  addAddr(addr: string): void
  delAddr(addr: string): void
  close(): Promise<void>
}

export async function createLoopbackNet(extraAddrs: string[]): Promise<LoopbackNet> {
  removeOrphans()
  const ns = `${NETNS_PREFIX}${process.pid}-lo`
  const pids = new Set<number>()
  let closed = false
  const onExit = () => {
    if (!closed) removeNamespaces([ns], pids)
  }
  process.on('exit', onExit)
  try {
    ip(['netns', 'add', ns])
    ip(['-n', ns, 'link', 'set', 'lo', 'up'])
    ip(['-n', ns, 'addr', 'del', '127.0.0.1/8', 'dev', 'lo'])
    for (const addr of ['127.0.0.1', ...extraAddrs]) ip(['-n', ns, 'addr', 'add', `${addr}/32`, 'dev', 'lo'])
  } catch (e) {
    removeNamespaces([ns], pids)
    process.off('exit', onExit)
    throw e
  }
  return {
    ns,
    exec: (target, argv, opts) => execIn(pids, target, argv, opts),
    track: (pid) => pids.add(pid),
    addAddr: (addr) => ip(['-n', ns, 'addr', 'add', `${addr}/32`, 'dev', 'lo']),
    delAddr: (addr) => ip(['-n', ns, 'addr', 'del', `${addr}/32`, 'dev', 'lo']),
    async close() {
      if (closed) return
      await stopAll(pids)
      removeNamespaces([ns], pids)
      closed = true
      process.off('exit', onExit)
      if (listNamespaces().includes(ns)) throw new Error(`namespace left behind: ${ns}`)
    },
  }
}

/** Starts a sheep daemon inside `host`'s namespace the way a user would; resolves with its pid once it listens. */
export async function startSheepIn(
  net: Pick<TestNet, 'exec' | 'track'>,
  host: Pick<NetHost, 'ns'>,
  dir: string,
  args: string[],
  sheepBin: string,
): Promise<number> {
  fs.mkdirSync(dir, { recursive: true })
  const r = await net.exec(host.ns, [sheepBin, ...args, dir], { timeoutMs: 90_000 })
  if (r.status !== 0) throw new Error(`sheep ${args.join(' ')} in ${host.ns} exited ${r.status}: ${r.stderr}`)
  const pid = Number(fs.readFileSync(path.join(dir, 'lock'), 'utf8').trim())
  net.track(pid)
  trackPid(pid)
  return pid
}
