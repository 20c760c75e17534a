// Process liveness from /proc: a pid counts as alive only while its process exists and is not a
// zombie (a killed daemon whose parent never reaps it still answers kill(pid, 0)). The start
// time tells a reused pid from the process that first had it. And where a program is on PATH.
import fs from 'node:fs'
import path from 'node:path'

export interface ProcessIdentity {
  pid: number
  /** Start time in clock ticks since boot (field 22 of /proc/PID/stat). */
  startTime: string
}

/** The start time of a live, non-zombie process, or undefined. */
export function processStartTime(pid: number): string | undefined {
  let stat: string
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // the command name may contain spaces and parentheses: fields resume after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  if (state === 'Z' || state === 'X' || state === 'x') return undefined
  return fields[19]
}

export function processAlive(pid: number): boolean {
  return processStartTime(pid) !== undefined
}

export function sameProcessAlive(p: ProcessIdentity): boolean {
  return processStartTime(p.pid) === p.startTime
}

/** The first executable `name` on PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue
    const candidate = path.join(dir, name)
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}
