// sheepfs processes for the harness: finding the daemon that serves a mountpoint (sheepfs
// daemonizes, so its PID is found from /proc by its command line).
import fs from 'node:fs'
import { processAlive } from '../lib/proc.js'

/** PIDs of live sheepfs processes whose command line names `mountpoint` (it is a unique temp dir). */
export function sheepfsPidsFor(mountpoint: string): number[] {
  const pids: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let cmdline: string[]
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
    } catch {
      continue
    }
    if (cmdline.some((arg) => arg.endsWith('bin/sheepfs')) && cmdline.includes(mountpoint) && processAlive(Number(entry))) pids.push(Number(entry))
  }
  return pids
}
