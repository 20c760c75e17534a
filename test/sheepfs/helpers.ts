// Helpers for the sheepfs tests: a formatted one-sheep cluster of the test's own, and a real
// sheepfs mount under the test's own temp dir (foreground, or daemonized as a user starts it)
// that is unmounted and stopped — by its PID and its own mount point only — in teardown.
import { sheepfsPidsFor } from '../../harness/sheepfs.js'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import { processAlive } from '../../lib/proc.js'
import { REPO, dog, programEnv, startSheep, stopSheep, tempDir, waitFor, type SheepProcess } from '../../harness/sheep.js'

export const SHEEPFS_BIN = path.join(REPO, 'bin/sheepfs')
/** How long a mount may take to appear or disappear. */
const MOUNT_WAIT_MS = 30_000
/** How long sheepfs may take to exit after SIGTERM before it is killed. */
const STOP_WAIT_MS = 15_000

/** True while a sheepfs FUSE mount sits at `mountpoint` (from /proc/self/mountinfo). */
export function isSheepfsMounted(mountpoint: string): boolean {
  const table = fs.readFileSync('/proc/self/mountinfo', 'utf8')
  return table.split('\n').some((line) => {
    const fields = line.split(' ')
    const dash = fields.indexOf('-')
    const at = (fields[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    return dash > 0 && at === mountpoint && (fields[dash + 1] ?? '').startsWith('fuse') && fields[dash + 2] === 'sheepfs'
  })
}

export interface TestSheep {
  sheep: SheepProcess
  port: number
  root: string
  /** Starts the sheep again (same directory and port) after `stop`. */
  restart(): Promise<void>
  stop(): Promise<void>
}

/** A sheep in a cluster of its own, formatted with one copy; stopped in teardown. */
export async function startTestSheep(t: Test): Promise<TestSheep> {
  const root = tempDir('sheepfs-test-')
  const dir = path.join(root, 'sheep')
  const args = ['-c', `local:${path.join(root, 'shm')}`]
  const started = await startSheep({ dir, args })
  const handle: TestSheep = {
    sheep: started,
    port: started.port,
    root,
    async restart() {
      handle.sheep = await startSheep({ dir, args, port: handle.port })
      const running = await waitFor(
        async () => (await dog(['cluster', 'info'], { port: handle.port })).stdout.startsWith('Cluster status: running'),
        30_000,
        200,
      )
      if (!running) throw new Error('the restarted sheep does not run')
    },
    async stop() {
      await stopSheep(handle.sheep)
    },
  }
  t.teardown(async () => {
    await handle.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })
  const formatted = await dog(['cluster', 'format', '-c', '1'], { port: started.port })
  if (formatted.status !== 0) throw new Error(`cluster format failed: ${formatted.stderr}`)
  return handle
}

export interface SheepfsMount {
  mountpoint: string
  pid: number
  /** What a foreground sheepfs printed on stderr so far. */
  stderr(): string
  /** SIGTERM, wait for the exit; then make sure the mount point is free. */
  stop(): Promise<void>
}

export interface MountOptions {
  /** Start it as a user does (it daemonizes); default: -f, kept as the test's child. */
  daemon?: boolean
  args?: string[]
  /** Mount here instead of a fresh temp dir (must belong to the test). */
  mountpoint?: string
}

/** Mounts sheepfs on the sheep at `port`; unmounted and stopped in teardown. */
export async function mountSheepfs(t: Test, port: number, opts: MountOptions = {}): Promise<SheepfsMount> {
  const ownDir = opts.mountpoint === undefined ? tempDir('sheepfs-mnt-') : undefined
  const mountpoint = opts.mountpoint ?? ownDir!
  const argv = [...(opts.daemon ? [] : ['-f']), '-p', String(port), ...(opts.args ?? []), mountpoint]
  let child: ChildProcess | undefined
  let stderr = ''
  let pid: number
  if (opts.daemon) {
    const r = spawnSync(SHEEPFS_BIN, argv, { encoding: 'utf8', timeout: 60_000, env: programEnv() })
    if (r.status !== 0) throw new Error(`sheepfs ${argv.join(' ')} exited ${r.status}: ${r.stderr}`)
    const pids = sheepfsPidsFor(mountpoint)
    if (pids.length !== 1) throw new Error(`expected one sheepfs daemon for ${mountpoint}, found ${pids.join(' ') || 'none'}`)
    pid = pids[0] as number
  } else {
    child = spawn(SHEEPFS_BIN, argv, { env: programEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString('utf8')
    })
    pid = child.pid!
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()))
    const mounted = await Promise.race([waitFor(() => isSheepfsMounted(mountpoint), MOUNT_WAIT_MS), exited.then(() => false)])
    if (!mounted) {
      if (processAlive(pid)) process.kill(pid, 'SIGKILL')
      throw new Error(`sheepfs ${argv.join(' ')} did not mount: ${stderr}`)
    }
  }
  const mount: SheepfsMount = {
    mountpoint,
    pid,
    stderr: () => stderr,
    async stop() {
      if (processAlive(pid)) {
        process.kill(pid, 'SIGTERM')
        if (!(await waitFor(() => !processAlive(pid), STOP_WAIT_MS))) {
          process.kill(pid, 'SIGKILL')
          await waitFor(() => !processAlive(pid), 5_000)
        }
      }
      if (isSheepfsMounted(mountpoint)) spawnSync('fusermount', ['-u', '-z', mountpoint], { timeout: 10_000 })
    },
  }
  t.teardown(async () => {
    await mount.stop()
    if (ownDir !== undefined && !isSheepfsMounted(ownDir)) fs.rmSync(ownDir, { recursive: true, force: true })
  })
  return mount
}

/** Waits until the mount at `mountpoint` is gone. */
export async function waitUnmounted(mountpoint: string): Promise<boolean> {
  return waitFor(() => !isSheepfsMounted(mountpoint), MOUNT_WAIT_MS)
}

/** The errno code a synchronous fs call fails with, or undefined if it succeeds. */
export function errnoOf(call: () => unknown): string | undefined {
  try {
    call()
    return undefined
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? String(error)
  }
}
