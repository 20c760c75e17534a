// Daemonizing the way the original's programs do, for sheep and sheepfs: the command starts a
// detached copy of itself with the same script path and arguments (so `ps` and `pgrep -f` show
// it as typed) and returns 0 once that copy reports it is ready, or 1 with the reason it gave.
// The copy reports through an extra pipe whose fd is named in an environment variable.
import { spawn } from 'node:child_process'
import fs from 'node:fs'

/** The fd of the readiness pipe in the daemon. */
const READY_FD = 3

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
      env: { ...process.env, [spec.readyEnv]: String(READY_FD) },
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
