// Daemonizing the way the original's programs do, for sheep and sheepfs: the command starts a
// detached copy of itself with the same script path and arguments (so `ps` and `pgrep -f` show
// it as typed) and returns 0 once that copy reports it is ready, or 1 with the reason it gave.
// The copy reports through an extra pipe whose fd is named in an environment variable.
import { spawn } from 'node:child_process'
import fs from 'node:fs'

/** The fd of the readiness pipe in the daemon. */
const READY_FD = 3

/**
 * glibc malloc settings the daemon copy starts with, unless the environment already sets them
 * (read by glibc at process start, so only a new process can have them; `sheep -f` under
 * systemd gets them from the unit, contrib/systemd). By default a buffer of 128 KiB or more is
 * a fresh mmap, and free memory at the heap's top is handed back past 128 KiB: every 1 MiB
 * payload a daemon receives or reads then lands in pages the kernel must fault in and zero
 * anew, 256 faults per MiB, costly in a virtual machine. Kept in the heap and reused instead,
 * 1 MiB sequential writes through 3 sheep went 2x as fast (docs/performance.md, change 7).
 * Buffers of up to 8 MiB (a 4 MiB object and its header) come from the heap; up to 64 MiB of
 * free heap is kept for reuse, which bounds what the setting adds to the resident size.
 */
export const MALLOC_TUNING: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(8 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(64 * 1024 * 1024),
}

/** The daemon copy's environment: the launcher's, the malloc settings where it has none. */
function daemonEnv(spec: DaemonSpec): NodeJS.ProcessEnv {
  return { ...MALLOC_TUNING, ...process.env, [spec.readyEnv]: String(READY_FD) }
}

export interface DaemonSpec {
  /** Program name for messages ("sheep"). */
  name: string
  /** Environment variable that marks the daemon copy and names its readiness fd. */
  readyEnv: string
  /** How long the launcher waits for the daemon's word. */
  startTimeoutMs: number
}

/** True in the detached copy (it must report readiness or failure). */
export function isDaemonCopy(spec: DaemonSpec): boolean {
  return process.env[spec.readyEnv] !== undefined
}

/** In the daemon copy: tell the launcher "OK" or why start-up failed (once). */
export function reportToLauncher(spec: DaemonSpec, message: string): void {
  const fd = process.env[spec.readyEnv]
  if (fd === undefined) return
  try {
    fs.writeSync(Number(fd), message)
    fs.closeSync(Number(fd))
  } catch {
    // the launcher is gone; nothing to tell
  }
  delete process.env[spec.readyEnv]
}

/** In the launcher: start the daemon copy and wait for its word; resolves to the exit status. */
export function launchDaemon(spec: DaemonSpec): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, ...process.argv.slice(2)], {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
      env: daemonEnv(spec),
    })
    let said = ''
    const pipe = child.stdio[READY_FD] as NodeJS.ReadableStream
    pipe.setEncoding('utf8')
    pipe.on('data', (s: string) => {
      said += s
    })
    const timer = setTimeout(() => {
      process.stderr.write(`${spec.name}: the daemon did not report readiness in time\n`)
      resolve(1)
    }, spec.startTimeoutMs)
    pipe.on('end', () => {
      clearTimeout(timer)
      if (said.startsWith('OK')) {
        child.unref()
        resolve(0)
      } else {
        process.stderr.write(said.length > 0 ? said : `${spec.name}: the daemon exited during start-up\n`)
        resolve(1)
      }
    })
  })
}
