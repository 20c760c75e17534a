// tgtd for the functional tests and the bench: a real tgtd (Debian's, with its sheepdog backing
// store bs_sheepdog built in) started in the foreground as the caller's child on a control port
// and an iSCSI portal of its own, driven with tgtadm, and stopped by its PID. Also the low ports
// bs_sheepdog needs: Debian's tgt 1.0.85 takes `tcp:HOST:PORT:VDI` or `unix:SOCKET:VDI` only and
// formats the TCP port into 4 digits, so a sheep tgt reaches by TCP must listen below 10000.
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { type ProgramResult, freePort, runProgram, trackPid, untrackPid, waitFor } from './sheep.js'

export const TGTD = '/usr/sbin/tgtd'
export const TGTADM = '/usr/sbin/tgtadm'
/** Where tgtd keeps its control socket `socket.<control port>` and its lock file. */
const TGTD_RUN_DIR = '/run/tgtd'
/** bs_sheepdog formats the TCP port into a 5-byte buffer: only ports of at most 4 digits work. */
const BS_SHEEPDOG_MAX_PORT = 9999
const LOW_PORT_MIN = 2000

/** True when something on 127.0.0.1 can be bound to `port` right now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

/**
 * A free port below 10000 for the sheep tgt connects to over TCP. The kernel hands out
 * ephemeral ports (what freePort and so every other test uses) far above this range, so a
 * random pick here does not clash with parallel tests.
 */
export async function freeLowPort(): Promise<number> {
  for (;;) {
    const port = LOW_PORT_MIN + crypto.randomInt(BS_SHEEPDOG_MAX_PORT - LOW_PORT_MIN + 1)
    if (await canListen(port)) return port
  }
}

/** tgtd's -C takes 0..32767; the number only names its control socket, it is not a TCP port. */
const CONTROL_PORT_MIN = 1024
const CONTROL_PORT_MAX = 32767
/** Attempts at starting tgtd (another tgtd may take the same control port or portal meanwhile). */
const TGTD_START_ATTEMPTS = 3

/** A tgtd control port whose socket no other tgtd has. */
function freeControlPort(): number {
  for (;;) {
    const port = CONTROL_PORT_MIN + crypto.randomInt(CONTROL_PORT_MAX - CONTROL_PORT_MIN + 1)
    if (!fs.existsSync(path.join(TGTD_RUN_DIR, `socket.${port}`))) return port
  }
}

export function connectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

export interface Tgtd {
  pid: number
  control: number
  portal: number
  log: () => string
  exited: Promise<void>
  adm(args: string[]): Promise<ProgramResult>
  stop(): Promise<void>
}

/** Starts tgtd in the foreground as this test's child, on its own control port and portal. */
export async function startTgtd(): Promise<Tgtd> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startTgtdOnce()
    } catch (e) {
      if (attempt >= TGTD_START_ATTEMPTS) throw e
    }
  }
}

async function startTgtdOnce(): Promise<Tgtd> {
  const control = freeControlPort()
  const portal = await freePort()
  const child = spawn(TGTD, ['-f', '-C', String(control), '--iscsi', `portal=127.0.0.1:${portal}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  child.stdout.on('data', (b: Buffer) => (log += b.toString()))
  child.stderr.on('data', (b: Buffer) => (log += b.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let running = true
  void exited.then(() => (running = false))
  /** Set once this tgtd serves its control socket: only then are the socket files its own to remove. */
  let owned = false
  const pid = child.pid
  if (pid === undefined) throw new Error(`${TGTD} did not start`)
  trackPid(pid)
  const adm = (args: string[]) => runProgram(TGTADM, ['-C', String(control), ...args])
  const tgtd: Tgtd = {
    pid,
    control,
    portal,
    exited,
    adm,
    log: () => log,
    async stop() {
      // `delete system` ends tgtd once no target is left (it ignores SIGTERM while it runs)
      if (running) {
        const targets = await adm(['--lld', 'iscsi', '--op', 'show', '--mode', 'target'])
        for (const m of targets.stdout.matchAll(/^Target (\d+):/gm)) {
          await adm(['--lld', 'iscsi', '--op', 'delete', '--mode', 'target', '--tid', m[1] as string, '--force'])
        }
        await adm(['--op', 'delete', '--mode', 'system'])
      }
      if (!(await waitFor(() => !running, 5000))) {
        process.kill(pid, 'SIGKILL')
        await exited
      }
      untrackPid(pid)
      if (owned) for (const suffix of ['', '.lock']) fs.rmSync(path.join(TGTD_RUN_DIR, `socket.${control}${suffix}`), { force: true })
    },
  }
  const up = async () => !running || ((await adm(['--op', 'show', '--mode', 'sys'])).status === 0 && (await connectable(portal)))
  owned = (await waitFor(up, 10_000, 100)) && running
  if (!owned) {
    await tgtd.stop()
    throw new Error(`tgtd did not come up:\n${log}`)
  }
  return tgtd
}
