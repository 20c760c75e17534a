// A real corosync for functional tests, from Debian's `corosync` package: one instance with a
// configuration of its own in a temp dir (knet over UDP on a port of the test's choosing, its
// state and log in that dir), started in the foreground and stopped by its pid. corosync keeps
// a lock in /run (corosync.pid): the instance gets a private /run in a mount namespace of its
// own (unshare -m), so it neither sees nor blocks another corosync's lock. Its IPC (libqb) is
// reached through abstract sockets of its network namespace and /dev/shm, which stay shared:
// sheep in the same network namespace reach it, and only one instance can run per network
// namespace — a multi-host test gives each instance a namespace (`netns`).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { freePort, isAlive, tempDir, trackPid, untrackPid, waitFor } from '../../harness/sheep.js'

export const COROSYNC_BIN = '/usr/sbin/corosync'
/** The libcpg binding the corosync driver needs (scripts/build-native.mjs). */
export const CPG_ADDON = path.resolve(import.meta.dirname, '../../native/corosync/build/Release/sheepdog_cpg.node')
/** How long a starting corosync may take to form its membership. */
export const COROSYNC_START_TIMEOUT_MS = 20_000
export const COROSYNC_STOP_TIMEOUT_MS = 10_000
/** Totem token timeout: a host that stops answering is declared gone after about this (plus consensus). */
export const COROSYNC_TOKEN_MS = 1_000
/** The log line of a corosync that serves clients. */
const READY_LINE = 'ready to provide service'

/** Why corosync functional tests cannot run here, or false. */
export function corosyncUnavailable(): string | false {
  if (!fs.existsSync(COROSYNC_BIN)) return 'Debian corosync package not installed'
  if (!fs.existsSync(CPG_ADDON)) return 'the libcpg binding was not built (libcpg-dev missing at npm install)'
  return false
}

export interface CorosyncNode {
  nodeid: number
  addr: string
}

export interface CorosyncInstance {
  dir: string
  port: number
  pid: number | undefined
  netns?: string
  start(): Promise<void>
  stop(signal?: NodeJS.Signals): Promise<void>
  close(): Promise<void>
}

export interface CorosyncOptions {
  dir?: string
  /** UDP port of the knet link (every instance of one cluster uses the same). */
  port?: number
  /** The cluster's hosts; default one host, 127.0.0.1. */
  nodes?: CorosyncNode[]
  /** Network namespace to run in (the host with this instance's address). */
  netns?: string
}

function config(dir: string, port: number, nodes: CorosyncNode[]): string {
  const nodelist = nodes.map((n) => `  node {\n    ring0_addr: ${n.addr}\n    nodeid: ${n.nodeid}\n    name: n${n.nodeid}\n  }`).join('\n')
  return `totem {
  version: 2
  cluster_name: sheepdog-test
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  token: ${COROSYNC_TOKEN_MS}
  interface {
    linknumber: 0
    knet_transport: udp
    mcastport: ${port}
  }
}
nodelist {
${nodelist}
}
system {
  state_dir: ${dir}
}
logging {
  to_logfile: yes
  logfile: ${path.join(dir, 'corosync.log')}
  to_syslog: no
  to_stderr: no
  timestamp: on
}
`
}

function logText(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'corosync.log'), 'utf8')
  } catch {
    return ''
  }
}

export async function startCorosync(opts: CorosyncOptions = {}): Promise<CorosyncInstance> {
  const dir = opts.dir ?? tempDir('sheep-corosync-')
  fs.mkdirSync(dir, { recursive: true })
  const port = opts.port ?? (await freePort())
  const conf = path.join(dir, 'corosync.conf')
  fs.writeFileSync(conf, config(dir, port, opts.nodes ?? [{ nodeid: 1, addr: '127.0.0.1' }]))
  const startedPids: number[] = []
  const instance: CorosyncInstance = {
    dir,
    port,
    pid: undefined,
    netns: opts.netns,
    async start() {
      if (instance.pid !== undefined && isAlive(instance.pid)) return
      const readyBefore = logText(dir).split(READY_LINE).length
      const out = fs.openSync(path.join(dir, 'corosync.out'), 'a')
      // unshare and `ip netns exec` exec the next program: the pid is corosync's
      const inner = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs none /run && exec ${COROSYNC_BIN} -f -c ${conf}`]
      const [cmd, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...inner] : inner
      const child = spawn(cmd!, args, { stdio: ['ignore', out, out], detached: true })
      fs.closeSync(out)
      child.unref()
      instance.pid = child.pid
      if (child.pid !== undefined) {
        trackPid(child.pid)
        startedPids.push(child.pid)
      }
      const up = await waitFor(
        () => {
          if (instance.pid === undefined || !isAlive(instance.pid)) throw new Error(`corosync exited during start-up; see ${dir}/corosync.log and corosync.out`)
          return logText(dir).split(READY_LINE).length > readyBefore
        },
        COROSYNC_START_TIMEOUT_MS,
        50,
      )
      if (!up) throw new Error(`corosync did not become ready within ${COROSYNC_START_TIMEOUT_MS} ms; see ${dir}/corosync.log`)
    },
    async stop(signal = 'SIGTERM') {
      const pid = instance.pid
      if (pid === undefined) return
      untrackPid(pid)
      if (isAlive(pid)) {
        process.kill(pid, signal)
        if (!(await waitFor(() => !isAlive(pid), COROSYNC_STOP_TIMEOUT_MS))) {
          process.kill(pid, 'SIGKILL')
          await waitFor(() => !isAlive(pid), COROSYNC_STOP_TIMEOUT_MS)
        }
      }
      instance.pid = undefined
    },
    async close() {
      await instance.stop()
      // libqb leaves corosync's blackbox in /dev/shm, named by its pid
      for (const pid of startedPids) for (const part of ['data', 'header']) fs.rmSync(`/dev/shm/qb-corosync-${pid}-blackbox-${part}`, { force: true })
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  await instance.start()
  return instance
}
