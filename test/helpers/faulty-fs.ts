// A disk that fails on demand, for the fault suite (test/functional/faults/disk-eio.test.ts): a
// FUSE pass-through of a backing directory (test/helpers/faulty-fs-child.ts, in a process of its
// own) whose reads, writes, creates … answer EIO when armed, as a failing drive does. The test
// gives the mount point to sheep as an object disk and looks at the backing directory itself.
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { trackPid, untrackPid } from '../../harness/sheep.js'
import type { ChildMessage, FaultRule, ParentMessage } from './faulty-fs-child.js'

export type { FaultRule }

/** How long mounting and each control message may take. */
const CONTROL_TIMEOUT_MS = 30_000

const CHILD = fileURLToPath(new URL('./faulty-fs-child.ts', import.meta.url))

export interface FaultyDisk {
  /** Where sheep sees the disk. */
  mountpoint: string
  /** The files behind it (read them here: no FUSE in the way). */
  backing: string
  /** EIO for the operations the rule names from now on. */
  arm(rule: FaultRule): Promise<void>
  /** No more faults; answers how many were injected since the disk was mounted. */
  disarm(): Promise<number>
  /** Unmounts (lazily if busy) and ends the FUSE process. Never throws. */
  close(): Promise<void>
}

/** Mounts a pass-through of `backing` (created) at `mountpoint` (created). */
export async function mountFaultyDisk(backing: string, mountpoint: string): Promise<FaultyDisk> {
  fs.mkdirSync(backing, { recursive: true })
  fs.mkdirSync(mountpoint, { recursive: true })
  // the child runs TypeScript as this process does (tsx's loader)
  const child: ChildProcess = fork(CHILD, [backing, mountpoint], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  trackPid(child.pid as number)
  const next = (want: (m: ChildMessage) => boolean): Promise<ChildMessage> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the faulty disk did not answer')), CONTROL_TIMEOUT_MS)
      const onMessage = (m: ChildMessage) => {
        if (!want(m)) return
        clearTimeout(timer)
        child.off('message', onMessage)
        child.off('exit', onExit)
        resolve(m)
      }
      const onExit = (code: number | null) => {
        clearTimeout(timer)
        reject(new Error(`the faulty disk's process exited (${code})`))
      }
      child.on('message', onMessage)
      child.once('exit', onExit)
    })
  const tell = (m: ParentMessage) => child.send(m)
  await next((m) => 'mounted' in m)
  let closed = false
  return {
    mountpoint,
    backing,
    async arm(rule) {
      const armed = next((m) => 'armed' in m)
      tell({ arm: rule })
      await armed
    },
    async disarm() {
      const answer = next((m) => 'injected' in m)
      tell({ disarm: true })
      const m = await answer
      return 'injected' in m ? m.injected : 0
    },
    async close() {
      if (closed) return
      closed = true
      try {
        const gone = next((m) => 'unmounted' in m)
        tell({ unmount: true })
        await gone
      } catch {
        // busy or gone: lazily below
      }
      try {
        execFileSync('fusermount', ['-u', '-z', mountpoint], { stdio: 'ignore' })
      } catch {
        // unmounted already
      }
      if (child.exitCode === null) child.kill('SIGKILL')
      untrackPid(child.pid as number)
    },
  }
}

/** The object files (16 hex digits) directly in a directory. */
export function objectFilesIn(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => /^[0-9a-f]{16}$/.test(n)) : []
}
