// A real ZooKeeper for functional tests, from Debian's `zookeeper` package: one standalone
// server (ZooKeeperServerMain) on a port and address of the test's choosing — loopback, or an
// address inside a network namespace the test made — with a temp data dir; it can be stopped
// and started again on the same data (an outage). Plus a cluster of sheep on 127.0.0.1 that
// use it, shaped like the local-driver TestCluster so the same recovery helpers apply.
import { spawn, execFile } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { type TestCluster, startCluster } from '../../harness/cluster.js'
import { freePort, isAlive, tempDir, trackPid, untrackPid, waitFor } from '../../harness/sheep.js'

/** The server jar; its manifest's Class-Path names the dependencies in /usr/share/java. */
export const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar'
/** An slf4j binding, when installed, so the server's log lands in DIR/zookeeper.log. */
const SLF4J_SIMPLE_JAR = '/usr/share/java/slf4j-simple.jar'

export function zookeeperClasspath(): string {
  return [ZOOKEEPER_JAR, ...(fs.existsSync(SLF4J_SIMPLE_JAR) ? [SLF4J_SIMPLE_JAR] : [])].join(':')
}
/** How long a starting server may take to answer `ruok` (JVM start is 1–3 s; slow machines more). */
export const ZOOKEEPER_START_TIMEOUT_MS = 30_000
/** How long a stopped server may take to exit before it gets SIGKILL. */
export const ZOOKEEPER_STOP_TIMEOUT_MS = 10_000
/** Ticks of 200 ms let sessions as short as 1 s be negotiated (minimum = 2 ticks). */
export const ZOOKEEPER_TICK_MS = 200
/** Session timeout the tests use: a killed or cut-off node is seen to leave after about this. */
export const TEST_SESSION_TIMEOUT_MS = 3_000

export function zookeeperAvailable(): boolean {
  return fs.existsSync(ZOOKEEPER_JAR) && fs.existsSync('/usr/bin/java')
}

export interface ZkServer {
  host: string
  port: number
  dir: string
  /** Namespace the server runs in (undefined: the test's own). */
  netns?: string
  /** `host:port` for `-c zookeeper:...`. */
  readonly connect: string
  pid: number | undefined
  start(): Promise<void>
  stop(signal?: NodeJS.Signals): Promise<void>
  close(): Promise<void>
}

/** Runs `bash -c script`, inside `netns` when given; resolves with stdout (never rejects). */
function bash(script: string, netns: string | undefined, timeoutMs: number): Promise<string> {
  const [cmd, args] = netns ? (['ip', ['netns', 'exec', netns, 'bash', '-c', script]] as const) : (['bash', ['-c', script]] as const)
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: timeoutMs }, (_err, stdout) => resolve(String(stdout ?? '')))
  })
}

/** ZooKeeper's four-letter `ruok` answered with `imok`. */
async function answersRuok(host: string, port: number, netns: string | undefined): Promise<boolean> {
  const out = await bash(`exec 3<>/dev/tcp/${host}/${port} && printf ruok >&3 && timeout 2 cat <&3`, netns, 3_000)
  return out.includes('imok')
}

export async function startZookeeper(opts: { host?: string; port?: number; netns?: string; dir?: string } = {}): Promise<ZkServer> {
  const host = opts.host ?? '127.0.0.1'
  const port = opts.port ?? (await freePort())
  const dir = opts.dir ?? tempDir('sheep-zk-')
  fs.mkdirSync(dir, { recursive: true })
  const config = path.join(dir, 'zoo.cfg')
  fs.writeFileSync(
    config,
    [
      `tickTime=${ZOOKEEPER_TICK_MS}`,
      `dataDir=${path.join(dir, 'data')}`,
      `clientPort=${port}`,
      `clientPortAddress=${host}`,
      'admin.enableServer=false',
      `minSessionTimeout=${2 * ZOOKEEPER_TICK_MS}`,
      'maxSessionTimeout=60000',
      '4lw.commands.whitelist=ruok,srvr,stat',
      'maxClientCnxns=0',
      '',
    ].join('\n'),
  )
  const server: ZkServer = {
    host,
    port,
    dir,
    netns: opts.netns,
    pid: undefined,
    get connect() {
      return `${host}:${port}`
    },
    async start() {
      if (server.pid !== undefined && isAlive(server.pid)) return
      const log = fs.openSync(path.join(dir, 'zookeeper.log'), 'a')
      const java = [
        'java',
        '-Xmx256m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-cp',
        zookeeperClasspath(),
        'org.apache.zookeeper.server.ZooKeeperServerMain',
        config,
      ]
      // `ip netns exec` execs the command: the pid is java's
      const [cmd, ...args] = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...java] : java
      const child = spawn(cmd!, args, { stdio: ['ignore', log, log], detached: true })
      fs.closeSync(log)
      child.unref()
      server.pid = child.pid
      if (child.pid !== undefined) trackPid(child.pid)
      const started = Date.now()
      const up = await waitFor(
        async () => {
          if (server.pid === undefined || !isAlive(server.pid)) throw new Error(`ZooKeeper exited during start-up; see ${dir}/zookeeper.log`)
          return answersRuok(host, port, opts.netns)
        },
        ZOOKEEPER_START_TIMEOUT_MS,
        100,
      )
      if (!up) throw new Error(`ZooKeeper did not answer on ${host}:${port} within ${ZOOKEEPER_START_TIMEOUT_MS} ms`)
      fs.appendFileSync(path.join(dir, 'starts.log'), `ready after ${Date.now() - started} ms\n`)
    },
    async stop(signal = 'SIGTERM') {
      const pid = server.pid
      if (pid === undefined) return
      untrackPid(pid)
      if (isAlive(pid)) {
        process.kill(pid, signal)
        if (!(await waitFor(() => !isAlive(pid), ZOOKEEPER_STOP_TIMEOUT_MS))) {
          process.kill(pid, 'SIGKILL')
          await waitFor(() => !isAlive(pid), ZOOKEEPER_STOP_TIMEOUT_MS)
        }
      }
      server.pid = undefined
    },
    async close() {
      await server.stop('SIGKILL')
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}

/** How long the test's own ZooKeeper look-ups may take. */
const ZK_LOOKUP_TIMEOUT_MS = 10_000

interface ZkLookupClient {
  connect(): void
  close(): void
  once(event: 'connected', listener: () => void): void
  getChildren(path: string, cb: (e: Error | null, children: string[]) => void): void
}

/** The children of `znode` on `server` (reachable from the test's namespace only). */
export function zkChildren(server: ZkServer, znode: string): Promise<string[]> {
  const lib = createRequire(import.meta.url)('node-zookeeper-client') as { createClient(cs: string, o: object): ZkLookupClient }
  const client = lib.createClient(server.connect, { sessionTimeout: ZK_LOOKUP_TIMEOUT_MS })
  return new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ZooKeeper look-up of ${znode} timed out`)), ZK_LOOKUP_TIMEOUT_MS)
    client.once('connected', () => {
      client.getChildren(znode, (e, children) => {
        clearTimeout(timer)
        if (e) reject(e)
        else resolve(children)
      })
    })
    client.connect()
  }).finally(() => client.close())
}

export interface ZkCluster extends TestCluster {
  zk: ZkServer
  /** The `-c` argument every node gets. */
  driverArg: string
  /** The znode under which the cluster lives. */
  clusterId: string
}

/**
 * N sheep on 127.0.0.1 (each bound to it and in its own zone) using `zk` under a cluster id of
 * their own, so parallel tests never meet.
 */
export async function startZkCluster(zk: ZkServer, count: number, opts: { timeoutMs?: number; start?: number } = {}): Promise<ZkCluster> {
  const root = tempDir('sheep-zkcluster-')
  const clusterId = `/${path.basename(root)}`
  const driverArg = `zookeeper:${zk.connect}${clusterId},timeout=${opts.timeoutMs ?? TEST_SESSION_TIMEOUT_MS}`
  const base = await startCluster(count, { root, start: opts.start, driverArgs: ['-c', driverArg, '-b', '127.0.0.1'] })
  const closeBase = base.close.bind(base)
  return Object.assign(base, {
    zk,
    driverArg,
    clusterId,
    async close() {
      // SHEEP_TEST_KEEP_LOGS=DIR keeps each node's sheep.log there
      const keep = process.env.SHEEP_TEST_KEEP_LOGS
      for (const s of base.nodes) if (s && isAlive(s.pid)) process.kill(s.pid, 'SIGCONT')
      await Promise.all(base.nodes.map((_, i) => base.stop(i)))
      for (let i = 0; keep && i < base.ports.length; i++) {
        const log = path.join(root, `n${i}`, 'sheep.log')
        if (fs.existsSync(log)) fs.cpSync(log, path.join(keep, `${path.basename(root)}-n${i}.log`))
      }
      await closeBase()
    },
  })
}
