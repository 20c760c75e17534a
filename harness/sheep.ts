// The process harness shared by the functional tests and the bench: start real sheep daemons on
// 127.0.0.1 in temp dirs, with ports that do not clash between parallel test files, run the real
// dog, and stop only the processes a test started, by PID. Everything runs the built programs in
// dist/ through bin/.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { processAlive } from '../lib/proc.js'

/** The repository root (the nearest folder above this file with package.json; works from dist/ too). */
export const REPO = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, 'package.json')) || path.basename(dir) === 'dist') dir = path.dirname(dir)
  return dir
})()
export const SHEEP_BIN = path.join(REPO, 'bin/sheep')
export const DOG_BIN = path.join(REPO, 'bin/dog')

/**
 * The environment for the programs under test: the test runner's loader hooks (NODE_OPTIONS)
 * are not passed on, so sheep and dog run exactly as a user starts them.
 */
export function programEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_OPTIONS
  for (const key of Object.keys(env)) if (key.startsWith('TAP')) delete env[key]
  return env
}

/** Ports freePort handed out in this process: none is handed out twice (a test picks several before starting anything). */
const handedOut = new Set<number>()

/**
 * A TCP port nobody listens on right now (the kernel picks it), and not one this process was
 * given before: two picks before anything listens could otherwise get the same port.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port
        srv.close(() => resolve(p))
      })
    })
    // leave room for the port's neighbours, which some tests use for a second node
    if (port < 65000 && !handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
}

export function tempDir(prefix = 'sheep-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/**
 * Daemons this test process started and has not stopped yet. If the test process ends early
 * (a failure, or the runner's timeout), they are killed on the way out, so no sheep outlives
 * the test that started it.
 */
const started = new Set<number>()
function killStarted(): void {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  started.clear()
}
process.on('exit', killStarted)
process.once('SIGTERM', () => {
  killStarted()
  process.exit(143)
})

/** Remember a daemon this test started (sheep, sheepfs, ZooKeeper …) for the exit hook. */
export function trackPid(pid: number): void {
  started.add(pid)
}

export function untrackPid(pid: number): void {
  started.delete(pid)
}

export interface SheepProcess {
  port: number
  dir: string
  pid: number
  args: string[]
}

export interface StartOptions {
  port?: number
  dir?: string
  args?: string[]
  /** Tests run with -n (no fsync) unless this is false (benchmarks measure real durability). */
  nosync?: boolean
  /** Object disks after the base directory (`DIR,DISK1,DISK2…`); none: objects in DIR/obj. */
  disks?: string[]
  /**
   * Another sheep program (the bench's --compare-sheep, e.g. the original C sheep); it is told
   * to write a pid file (-P), since only ours writes its pid into DIR/lock.
   */
  bin?: string
  /**
   * Node arguments for our sheep (e.g. `--cpu-prof`, which NODE_OPTIONS may not carry): node
   * runs bin/sheep with them, and the daemon copy inherits them (lib/daemon.ts passes execArgv).
   */
  nodeArgs?: string[]
}

/** Starts a sheep the way a user does (it daemonizes); resolves once it listens. */
export async function startSheep(opts: StartOptions = {}): Promise<SheepProcess> {
  const port = opts.port ?? (await freePort())
  const dir = opts.dir ?? tempDir()
  const extra = opts.args ?? []
  // each test's sheep get an event file of their own unless told otherwise: parallel tests
  // must never join each other's clusters through the default /tmp/sheepdog_shm
  const driver = extra.includes('-c') ? [] : ['-c', `local:${path.join(dir, 'shm')}`]
  const pidFile = opts.bin ? path.join(dir, 'sheep.pid') : undefined
  // the original creates only the last level of its base directory
  if (opts.bin) fs.mkdirSync(dir, { recursive: true })
  // a killed original leaves its pid file behind: the wait below must see the new one
  if (pidFile) fs.rmSync(pidFile, { force: true })
  const args = [
    '-p',
    String(port),
    ...(opts.nosync === false ? [] : ['-n']),
    ...driver,
    ...(pidFile ? ['-P', pidFile] : []),
    ...extra,
    [dir, ...(opts.disks ?? [])].join(','),
  ]
  // not spawnSync: sheep started together (Promise.all) start at the same instant, as a script's
  // `sheep … &` lines do, and the test's own event loop keeps running meanwhile
  const [cmd, cmdArgs] = opts.nodeArgs ? [process.execPath, [...opts.nodeArgs, SHEEP_BIN, ...args]] : [opts.bin ?? SHEEP_BIN, args]
  const r = await runProgram(cmd, cmdArgs, { timeoutMs: 60_000, env: programEnv() })
  if (r.status !== 0) throw new Error(`sheep ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
  // the original writes its pid file after its parent has returned: wait for it
  if (pidFile) await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 20_000)
  const pid = Number(fs.readFileSync(pidFile ?? path.join(dir, 'lock'), 'utf8').trim())
  trackPid(pid)
  return { port, dir, pid, args }
}

/** Alive and not a zombie (daemons are reparented and may never be reaped here). */
export function isAlive(pid: number): boolean {
  return processAlive(pid)
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 20_000, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return true
    await new Promise((r) => setTimeout(r, stepMs))
  }
  return check()
}

/** What a `vdi read` that should have given `data` gave: its status and error, or where its bytes first differ. */
export function readOutcome(r: { status: number; stderr: string; stdoutBytes: Buffer }, data: Buffer): string {
  if (r.status !== 0) return `exit ${r.status}: ${r.stderr.trim()}`
  if (r.stdoutBytes.length !== data.length) return `${r.stdoutBytes.length} bytes, not ${data.length}`
  const at = r.stdoutBytes.findIndex((b, k) => b !== data[k])
  if (at < 0) return 'the data'
  const zeros = r.stdoutBytes.subarray(at, at + 4096).every((b) => b === 0)
  return `bytes differ from offset ${at} (object ${Math.floor(at / (4 << 20))}${zeros ? ', zeros there' : ''})`
}

/** Stops one sheep this test started: SIGTERM, then SIGKILL if it lingers. */
export async function stopSheep(s: SheepProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  untrackPid(s.pid)
  if (!isAlive(s.pid)) return
  process.kill(s.pid, signal)
  if (!(await waitFor(() => !isAlive(s.pid), 10_000))) {
    process.kill(s.pid, 'SIGKILL')
    await waitFor(() => !isAlive(s.pid), 5_000)
  }
}

/** The largest peak resident memory of these processes, in MiB (0 for those that are gone). */
export function peakRssMiB(pids: number[]): number {
  let peak = 0
  for (const pid of pids) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (m) peak = Math.max(peak, Number(m[1]) / 1024)
    } catch {
      // the process is gone
    }
  }
  return peak
}

export interface DogResult {
  status: number
  stdout: string
  stderr: string
  stdoutBytes: Buffer
}

/** Runs the real dog (or another dog program: `bin`, e.g. the original's) with `args`; `input` is fed to stdin. */
export function dog(args: string[], opts: { port?: number; input?: Buffer | string; env?: NodeJS.ProcessEnv; bin?: string } = {}): Promise<DogResult> {
  const full = opts.port !== undefined ? [...args, '-p', String(opts.port)] : args
  return new Promise((resolve, reject) => {
    const child = spawn(opts.bin ?? DOG_BIN, full, { env: programEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', reject)
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out)
      // decoded only when asked for: `vdi read` prints hundreds of MiB of binary data
      let stdout: string | undefined
      resolve({
        status: code ?? -1,
        get stdout() {
          stdout ??= stdoutBytes.toString('utf8')
          return stdout
        },
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBytes,
      })
    })
    child.stdin.on('error', () => undefined)
    child.stdin.end(opts.input ?? '')
  })
}

/** What a program printed and how it ended. */
export interface ProgramResult {
  status: number
  stdout: string
  stderr: string
}

/** Runs a program (qemu-img, tgtadm …) to its end — killed after `timeoutMs` if given — and collects its output. */
export function runProgram(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs, env: opts.env, cwd: opts.cwd })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }))
  })
}

/** Replaces dates printed by dog with fixed markers, for snapshot comparisons. */
export function filterDates(text: string): string {
  return text
    .replace(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/g, 'YYYY-MM-DD HH:MM:SS')
    .replace(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}/g, 'YYYY-MM-DD HH:MM')
    .replace(/[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}/g, 'Www Mmm dd hh:mm:ss yyyy')
}
