// What sheep does for a service manager (issue 17): SIGHUP reopens sheep.log, so logrotate's
// postrotate can move the file away and have sheep start a new one; and readiness is reported
// to systemd (sd_notify READY=1) when it started sheep with NOTIFY_SOCKET set (Type=notify).
// Node has no Unix datagram sockets, so the notification goes out through systemd-notify(1)
// (or, without it, a python3 one-liner), sent in sheep's name with --pid.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { type Logger, reopenLogFile } from '../lib/log.js'
import { findOnPath } from '../lib/proc.js'

/** How long the notifier may take before sheep stops waiting for it (it never delays serving). */
const NOTIFY_TIMEOUT_MS = 5_000

/** The environment variable systemd passes the notification socket in (sd_notify(3)). */
export const NOTIFY_SOCKET_ENV = 'NOTIFY_SOCKET'

/** SIGHUP → reopen the log file at its path (logrotate renamed the old one). */
export function reopenLogOnHangup(log: Logger): void {
  process.on('SIGHUP', () => {
    try {
      if (reopenLogFile(log)) log.info('log file reopened (SIGHUP)')
    } catch (e) {
      log.error(`cannot reopen the log file: ${e instanceof Error ? e.message : String(e)}; still logging to the old one`)
    }
  })
}

/** python3 sending `message` to the socket in argv[1] (an abstract name starts with '@'). */
const PYTHON_NOTIFY = [
  'import socket,sys',
  'a=sys.argv[1]',
  "a='\\0'+a[1:] if a.startswith('@') else a",
  's=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)',
  's.sendto(sys.argv[2].encode(),a)',
].join('\n')

/** The command that delivers READY=1 with `status`, or undefined when there is none here. */
function notifyCommand(socketName: string, status: string): { cmd: string; args: string[] } | undefined {
  const systemdNotify = findOnPath('systemd-notify')
  if (systemdNotify) return { cmd: systemdNotify, args: ['--ready', `--pid=${process.pid}`, `--status=${status}`] }
  const python = findOnPath('python3')
  if (python) return { cmd: python, args: ['-c', PYTHON_NOTIFY, socketName, `READY=1\nSTATUS=${status}\nMAINPID=${process.pid}\n`] }
  return undefined
}

/**
 * Tells systemd that sheep serves (READY=1, with a status line) when NOTIFY_SOCKET is set;
 * does nothing otherwise. Like sd_notify(3) with unset_environment, the variable is removed so
 * that programs sheep starts later do not talk to systemd in its name.
 */
export async function notifyReady(log: Logger, status: string): Promise<void> {
  const socketName = process.env[NOTIFY_SOCKET_ENV]
  if (socketName === undefined || socketName === '') return
  const how = notifyCommand(socketName, status)
  if (how === undefined) {
    log.warn(`${NOTIFY_SOCKET_ENV} is set but neither systemd-notify nor python3 is on PATH: readiness not reported`)
    return
  }
  const code = await new Promise<number | string>((resolve) => {
    const child = spawn(how.cmd, how.args, { stdio: 'ignore', timeout: NOTIFY_TIMEOUT_MS, env: process.env })
    child.on('error', (e) => resolve(e.message))
    child.on('close', (c, signal) => resolve(c ?? signal ?? -1))
  })
  delete process.env[NOTIFY_SOCKET_ENV]
  if (code === 0) log.info(`readiness reported to the service manager (${path.basename(how.cmd)})`)
  else log.warn(`readiness could not be reported to the service manager: ${path.basename(how.cmd)} ended with ${code}`)
}
