// sheepfs's entry point: options → a mounted file system. Unless -f (or -d), the command starts
// a detached copy of itself with the same script path and arguments and returns 0 once that
// daemon has mounted, or 1 with the reason it gave (as sheep does). The daemon unmounts and
// exits 0 on SIGTERM / SIGINT / SIGHUP, and exits 0 when the mount is taken away with
// `fusermount -u`.
import { lookup } from 'node:dns/promises'
import fs from 'node:fs'
import { isIP } from 'node:net'
import path from 'node:path'
import { type DaemonSpec, isDaemonCopy, launchDaemon, reportToLauncher } from '../lib/daemon.js'
import { keepBuffersInHeap } from '../lib/malloc.js'
import { serveMetrics } from '../lib/metrics-http.js'
import { SheepFs } from './fs.js'
import { sheepfsMetrics } from './metrics.js'
import { type Logger, createSheepfsLogger } from './log.js'
import { findSheepfsMount, mountFuse, recoverStaleMount, watchMount } from './mount.js'
import { SHEEPFS_EXIT_FAILURE, type SheepfsOptions, parseSheepfsArgs } from './options.js'

/** How sheepfs daemonizes (lib/daemon.ts): the launcher waits this long for the mount. */
const DAEMON: DaemonSpec = { name: 'sheepfs', readyEnv: 'SHEEPFS_DAEMON_READY_FD', startTimeoutMs: 60_000 }
/** Signals that unmount and end sheepfs. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']

/** The sheep's host must resolve (an IP literal is kept as is). */
async function checkHost(host: string): Promise<void> {
  if (isIP(host) !== 0) return
  try {
    await lookup(host)
  } catch {
    throw new Error(`Invalid address '${host}': it does not resolve`)
  }
}

async function runSheepfs(opts: SheepfsOptions, log: Logger): Promise<void> {
  await checkHost(opts.host)
  const given = path.resolve(opts.mountpoint)
  if (recoverStaleMount(given)) log.warn(`${given} was left mounted by a sheepfs that is gone; unmounted it`)
  let mountpoint: string
  try {
    mountpoint = fs.realpathSync(given)
  } catch (error) {
    throw new Error(`bad mount point ${given}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (error as Error).message}`)
  }
  if (!fs.statSync(mountpoint).isDirectory()) throw new Error(`bad mount point ${mountpoint}: Not a directory`)
  if (findSheepfsMount(mountpoint)) throw new Error(`${mountpoint} is already a sheepfs mount point`)

  const sheepfs = new SheepFs(
    { host: opts.host, port: opts.port, pageCache: opts.pageCache, objectCache: opts.objectCache, writeBehind: !opts.writeThrough },
    log,
  )
  // before the mount: a metrics port that is taken fails the start with nothing mounted
  if (opts.metrics) {
    try {
      await serveMetrics(sheepfsMetrics(sheepfs), opts.metrics)
    } catch (e) {
      throw new Error(`cannot serve metrics on ${opts.metrics.host ?? '*'}:${opts.metrics.port}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  const mounted = await mountFuse(mountpoint, sheepfs.operations(), { debug: opts.debug, pageCache: opts.pageCache })
  log.info(
    `mounted on ${mountpoint}; sheep ${opts.host}:${opts.port}; ${opts.pageCache ? 'page cache' : 'direct I/O'}${opts.objectCache ? ', object cache' : ''}${opts.writeThrough ? ', write-through' : ', write-behind'}`,
  )

  let stopping = false
  const stop = async (reason: string, stillMounted: boolean, exitCode = 0): Promise<void> => {
    if (stopping) return
    stopping = true
    watcher?.stop()
    log.info(`stopping: ${reason}`)
    if (stillMounted) {
      const problem = await mounted.unmount()
      if (problem !== undefined && findSheepfsMount(mountpoint)?.id === mounted.mountId) log.error(`unmount of ${mountpoint} failed: ${problem}`)
    }
    await sheepfs.close()
    log.flush?.()
    process.exit(exitCode)
  }
  const watcher = mounted.mountId === undefined ? undefined : watchMount(mounted.mountId, () => void stop(`${mountpoint} was unmounted`, false))
  for (const signal of STOP_SIGNALS) process.on(signal, () => void stop(signal, true))
  // a bug must not leave a dead mount point behind: report it, unmount, exit 1
  process.on('uncaughtException', (error) => {
    log.fatal(`internal error: ${error.stack ?? error.message}`)
    void stop('internal error', true, SHEEPFS_EXIT_FAILURE)
  })
  if (!opts.foreground) process.chdir('/')
}

export async function main(argv: readonly string[]): Promise<void> {
  const parsed = parseSheepfsArgs(argv)
  if (parsed.kind === 'exit') {
    if (parsed.stdout) process.stdout.write(parsed.stdout)
    if (parsed.stderr) process.stderr.write(parsed.stderr)
    process.exit(parsed.code)
  }
  const opts = parsed.options
  if (!opts.foreground && !isDaemonCopy(DAEMON)) {
    process.exit((await launchDaemon(DAEMON)) === 0 ? 0 : SHEEPFS_EXIT_FAILURE)
  }
  const log = createSheepfsLogger({ foreground: opts.foreground, debug: opts.debug })
  // -f: the settings the daemon copy gets from its environment, set with mallopt (lib/malloc.ts)
  if (opts.foreground) keepBuffersInHeap()
  try {
    await runSheepfs(opts, log)
    reportToLauncher(DAEMON, 'OK\n')
  } catch (error) {
    const message = `sheepfs: ${error instanceof Error ? error.message : String(error)}\n`
    if (isDaemonCopy(DAEMON)) {
      log.error(message.trimEnd())
      reportToLauncher(DAEMON, message)
    } else {
      process.stderr.write(message)
    }
    process.exit(SHEEPFS_EXIT_FAILURE)
  }
}
