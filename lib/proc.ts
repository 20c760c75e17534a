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
  return startTimeOfLive(stat)
}

/** Field 22 of a /proc/PID/stat line, or undefined if the process is a zombie or dead. */
function startTimeOfLive(stat: string): string | undefined {
  // the command name may contain spaces and parentheses: fields resume after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const state = fields[0]
  if (state === 'Z' || state === 'X' || state === 'x') return undefined
  return fields[19]
}

/** A /proc/PID/stat line is well under this (the command name is at most 64 bytes). */
const PROC_STAT_MAX_BYTES = 4096
/** A probe's descriptor of a process not asked about for this many rounds is closed. */
export const PROBE_IDLE_ROUNDS = 20

/**
 * Liveness of the same few processes asked again and again (a cluster driver's members, every
 * few tens of milliseconds): each process's /proc/PID/stat is opened once, when its start time
 * is checked, and then read through that descriptor, one system call a check instead of open,
 * read and close. The descriptor stays bound to the process it was opened for: once that
 * process is gone its reads fail, even if its pid is reused, so the start time need not be
 * compared again.
 */
export class LivenessProbe {
  private readonly open = new Map<string, { fd: number; round: number }>()
  private readonly buf = Buffer.allocUnsafe(PROC_STAT_MAX_BYTES)
  private round = 0

  /** Processes whose /proc file is held open. */
  get size(): number {
    return this.open.size
  }

  alive(p: ProcessIdentity): boolean {
    const key = `${p.pid}.${p.startTime}`
    const known = this.open.get(key)
    if (known) {
      known.round = this.round
      const stat = this.readStat(known.fd)
      if (stat !== undefined && startTimeOfLive(stat) !== undefined) return true
      this.forget(key, known.fd)
      return false
    }
    let fd: number
    try {
      fd = fs.openSync(`/proc/${p.pid}/stat`, 'r')
    } catch {
      return false
    }
    const stat = this.readStat(fd)
    if (stat === undefined || startTimeOfLive(stat) !== p.startTime) {
      fs.closeSync(fd)
      return false
    }
    this.open.set(key, { fd, round: this.round })
    return true
  }

  /** Ends a round of checks: descriptors of processes nobody asked about for a while are closed. */
  endRound(): void {
    this.round++
    for (const [key, { fd, round }] of this.open) if (this.round - round > PROBE_IDLE_ROUNDS) this.forget(key, fd)
  }

  close(): void {
    for (const [key, { fd }] of this.open) this.forget(key, fd)
  }

  private readStat(fd: number): string | undefined {
    try {
      return this.buf.toString('latin1', 0, fs.readSync(fd, this.buf, 0, PROC_STAT_MAX_BYTES, 0))
    } catch {
      return undefined
    }
  }

  private forget(key: string, fd: number): void {
    this.open.delete(key)
    fs.closeSync(fd)
  }
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
