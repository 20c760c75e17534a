// sheep's entry point: options → a running node. Unless -f, the command starts a detached copy
// of itself with the same script path and arguments (so `ps` and `pgrep -f` show it as they
// show the original) and returns 0 once that daemon listens, or 1 with the reason it gave.
// libuv sizes its I/O thread pool from UV_THREADPOOL_SIZE when the pool starts, which is before
// any of this runs (loading the program uses it): -w io=N therefore reaches the pool through the
// environment the daemon copy starts with; a sheep started with -f keeps the pool it has.
import fs from 'node:fs'
import path from 'node:path'
import { addrToText, addrFromText } from '../lib/structs.js'
import { SD_ADDR_LEN, defaultZone } from '../lib/addr.js'
import { type DaemonSpec, isDaemonCopy, launchDaemon, MALLOC_TUNING, reportToLauncher } from '../lib/daemon.js'
import { keepBuffersInHeap } from '../lib/malloc.js'
import { type Logger, createLogger } from '../lib/log.js'
import { serveMetrics } from '../lib/metrics-http.js'
import { processAlive } from '../lib/proc.js'
import { SD_DEFAULT_VNODES } from '../lib/proto.js'
import { CLUSTER_DRIVERS } from './cluster/drivers.js'
import { OPS } from './ops.js'
import { type SheepOptions, parseSheepArgs } from './options.js'
import { InProcessConnection } from './in-process-conn.js'
import { NbdServer } from './nbd.js'
import { SheepServer } from './server.js'
import { Sheep, objectDir } from './sheep.js'
import { freeSpaceOf } from './store/disks.js'
import { FileStore } from './store/file-store.js'
import { CSUM_BLOCK_BYTES, CSUM_DIR, ChecksumStore } from './store/checksums.js'
import { CRC32_KERNEL } from './store/crc32.js'
import { notifyReady, reopenLogOnHangup } from './service.js'
import { sheepMetrics } from './metrics.js'

/** How sheep daemonizes (lib/daemon.ts): the launcher waits this long for the listeners. */
const DAEMON: DaemonSpec = { name: 'sheep', readyEnv: 'SHEEP_DAEMON_READY_FD', startTimeoutMs: 60_000 }

/** A directory holding a node's config and epoch log (is_meta_store): never an object disk. */
function isMetaStore(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'config')) && fs.existsSync(path.join(dir, 'epoch'))
}

/**
 * The object disks: the ones after the base directory, else `<base>/obj` (its real path, as the
 * original names it). `<base>/obj` is made either way, as the original makes it.
 */
function objectDisks(baseDir: string, disks: readonly string[]): string[] {
  const obj = objectDir(fs.realpathSync(baseDir))
  fs.mkdirSync(obj, { recursive: true })
  if (disks.length === 0) return [obj]
  for (const disk of disks) if (isMetaStore(disk)) throw new Error(`${disk} is meta-store, abort`)
  return disks.map((d) => path.resolve(d))
}

/** Takes PATH/lock: refuses when a live sheep already holds it. */
function takeLock(baseDir: string): void {
  const file = path.join(baseDir, 'lock')
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    if (pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw new Error(`another sheep daemon (pid ${pid}) is using ${baseDir}`)
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  fs.writeFileSync(file, `${process.pid}\n`)
}

async function runDaemon(opts: SheepOptions): Promise<void> {
  const baseDir = path.resolve(opts.baseDir)
  fs.mkdirSync(baseDir, { recursive: true })
  takeLock(baseDir)
  const logDir = opts.log.dir ?? baseDir
  fs.mkdirSync(logDir, { recursive: true })
  const log = createLogger({
    file: opts.log.dst === 'stdout' ? undefined : path.join(logDir, 'sheep.log'),
    syslog: opts.log.dst === 'syslog' ? { ident: 'sheep' } : undefined,
    format: opts.log.format,
    level: opts.log.level,
  })
  reopenLogOnHangup(log)
  logCrashes(log)
  for (const notice of opts.notices) log[notice.level](notice.message)
  logIoThreadPool(log, opts.ioThreadPoolSize)
  tuneMalloc(log)
  if (opts.pidfile) fs.writeFileSync(opts.pidfile, `${process.pid}\n`)

  const kind = CLUSTER_DRIVERS[opts.cluster.name]
  const myAddr = opts.myAddr ?? kind.defaultAddress(opts.bindAddr)
  const addr = addrFromText(myAddr)!
  const disks = objectDisks(baseDir, opts.disks)
  const files = new FileStore({ disks, nosync: opts.nosync, log })
  // checksums beside the objects, in a directory the original skips when it scans a disk
  const checksums = opts.checksums ? new ChecksumStore(files, { dir: path.join(disks[0] as string, CSUM_DIR), nosync: opts.nosync, log }) : undefined
  if (checksums) log.info(`checksums: CRC-32 per ${CSUM_BLOCK_BYTES} bytes by ${CRC32_KERNEL}`)
  const store = checksums ?? files
  const driver = kind.create(opts.cluster.option, log)
  const sheep = new Sheep({
    baseDir,
    log,
    store,
    checksums,
    integrity: { scrubRateMiB: opts.scrub.rateMiB, scrubEveryHours: opts.scrub.everyHours },
    driver,
    nosync: opts.nosync,
    gateway: opts.gateway,
    fixedVnodes: opts.vnodes !== undefined,
    self: {
      addr,
      port: opts.port,
      // zero without -i: other sheep then use the main address for everything
      ioAddr: opts.io ? addrFromText(opts.io.host)! : Buffer.alloc(SD_ADDR_LEN),
      ioPort: opts.io?.port ?? 0,
      nrVnodes: opts.gateway ? 0 : (opts.vnodes ?? SD_DEFAULT_VNODES),
      zone: opts.zone ?? defaultZone(addr),
      space: 0n,
    },
    clusterMain: (opcode) => {
      const op = OPS.get(opcode)
      return op?.kind === 'cluster' ? op.main : undefined
    },
  })
  sheep.logLevel = opts.log.level
  if (opts.recovery) sheep.recovery.throttle = { maxExecCount: opts.recovery.max, intervalMs: opts.recovery.intervalMs }
  await sheep.load(() => store.recordedSpace() || freeSpaceOf(baseDir))
  const server = new SheepServer(sheep, { adminFrom: opts.adminFrom })
  const socketPath = path.join(baseDir, 'sock')
  await server.listen({ host: opts.bindAddr, port: opts.port, socketPath, io: opts.io })
  // the NBD server's requests run through this server's op table as dog's do, without a socket
  const nbd = opts.nbd ? new NbdServer({ host: opts.nbd.host, port: opts.nbd.port, conn: new InProcessConnection(server), log }) : undefined
  if (nbd) {
    try {
      await nbd.listen()
    } catch (e) {
      throw new Error(`cannot serve NBD on ${opts.nbd!.host ?? '*'}:${opts.nbd!.port}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  if (opts.metrics) await startMetrics(sheep, server, opts.metrics)
  let stopping = false
  const stop = (reason: string) => {
    if (stopping) return
    stopping = true
    log.info(`stopping: ${reason}`)
    // NBD clients first: their requests come back to this sheep through `server`
    void (nbd?.close() ?? Promise.resolve())
      .then(() => server.close())
      .then(() => sheep.close())
      .finally(() => {
        if (opts.pidfile) fs.rmSync(opts.pidfile, { force: true })
        log.flush?.()
        process.exit(0)
      })
  }
  sheep.onStop = stop
  process.on('SIGTERM', () => sheep.kill())
  process.on('SIGINT', () => sheep.kill())
  await sheep.join()
  const io = opts.io ? `; I/O NIC ${opts.io.host}:${opts.io.port}` : ''
  log.info(`sheep ${addrToText(addr)}:${opts.port} started in ${baseDir}; epoch ${sheep.epoch}${io}${nbd ? `; NBD on port ${nbd.port}` : ''}`)
  reportToLauncher(DAEMON, 'OK\n')
  await notifyReady(log, `serving on port ${opts.port}, epoch ${sheep.epoch}`)
}

/**
 * An exception nothing caught (or a promise rejection nothing handled) ends the daemon, as a
 * crash signal ends the original, whose crash handler logs "sheep exits unexpectedly" and a
 * backtrace first: the daemon's stderr goes nowhere, so the log is the one place the reason can
 * be read (the fault suite looks for the line).
 */
function logCrashes(log: Logger): void {
  process.on('uncaughtException', (e, origin) => {
    log.fatal(`sheep exits unexpectedly (${origin}): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    log.flush?.()
    process.exit(1)
  })
}

/** --metrics: the request observer on the server and the HTTP endpoint (sheep/metrics.ts). */
async function startMetrics(sheep: Sheep, server: SheepServer, listen: { host?: string; port: number }): Promise<void> {
  const metrics = sheepMetrics(sheep, server)
  server.observer = metrics.observe
  try {
    await serveMetrics(metrics.registry, listen)
  } catch (e) {
    throw new Error(`cannot serve metrics on ${listen.host ?? '*'}:${listen.port}: ${e instanceof Error ? e.message : String(e)}`)
  }
  sheep.log.info(`metrics at http://${listen.host ?? '*'}:${listen.port}/metrics`)
}

/**
 * The malloc settings the daemon copy gets in its environment (lib/daemon.ts): `-f` without them
 * in its environment sets them with mallopt (lib/malloc.ts), or says they are missing when it
 * cannot (the storeio addon not built) or the environment sets only one.
 */
function tuneMalloc(log: Logger): void {
  if (keepBuffersInHeap()) {
    log.info('malloc: large buffers kept in the heap (set with mallopt: the environment names neither setting)')
    return
  }
  const missing = Object.keys(MALLOC_TUNING).filter((name) => process.env[name] === undefined)
  if (missing.length > 0) log.info(`${missing.join(' and ')} not set: large requests run slower (sheep(8), ENVIRONMENT)`)
}

/** The environment variable libuv reads once, when its I/O thread pool starts. */
const THREAD_POOL_ENV = 'UV_THREADPOOL_SIZE'

/** Says what became of -w io=N / -x N: the pool has that size only if the process started with it. */
function logIoThreadPool(log: Logger, size: number | undefined): void {
  if (size === undefined) return
  if (process.env[THREAD_POOL_ENV] === String(size)) log.info(`I/O thread pool: ${size} threads`)
  else
    log.warn(`I/O thread pool: the pool started before the options were read; start sheep without -f, or with ${THREAD_POOL_ENV}=${size}, for ${size} threads`)
}

export async function main(argv: string[]): Promise<void> {
  const parsed = parseSheepArgs(argv)
  if (parsed.kind === 'exit') {
    if (parsed.stdout) process.stdout.write(parsed.stdout)
    if (parsed.stderr) process.stderr.write(parsed.stderr)
    process.exit(parsed.code)
  }
  const opts = parsed.options
  if (!opts.foreground && !isDaemonCopy(DAEMON)) {
    // the daemon copy starts with this environment, so its pool has the size asked for
    if (opts.ioThreadPoolSize !== undefined) process.env[THREAD_POOL_ENV] = String(opts.ioThreadPoolSize)
    process.exit(await launchDaemon(DAEMON))
  }
  try {
    await runDaemon(opts)
  } catch (e) {
    const message = `sheep: ${e instanceof Error ? e.message : String(e)}\n`
    if (isDaemonCopy(DAEMON)) reportToLauncher(DAEMON, message)
    else process.stderr.write(message)
    process.exit(1)
  }
}
