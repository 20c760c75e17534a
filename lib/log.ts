// Logger factory over pino. Sheep's `-l format=` chooses how a line looks: `json` (pino's own
// lines), `server` (time, level and message, the default) or `default` (message only), and
// `dst=` where it goes: a file (PATH/sheep.log), stdout, or the system log as the original's
// openlog(ident, LOG_PID, LOG_DAEMON) sends it. Node has no Unix datagram sockets to reach
// /dev/log, so one logger(1) process per daemon carries the lines there, each with its own
// priority. Levels use Sheepdog's names (emerg … debug) mapped onto pino's.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import { pino, type Logger } from 'pino'
import { findOnPath } from './proc.js'

/** Sheepdog log level names in their numeric order 0..7 (cli-and-formats.md §5.7). */
export const LOG_LEVEL_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const
export type SdLogLevel = (typeof LOG_LEVEL_NAMES)[number]

/** Sheepdog level → pino level (pino has fewer, so some share one). */
const TO_PINO: Record<SdLogLevel, string> = {
  emerg: 'fatal',
  alert: 'fatal',
  crit: 'fatal',
  err: 'error',
  warning: 'warn',
  notice: 'info',
  info: 'info',
  debug: 'debug',
}

export function sdLevelToPino(level: number): string {
  return TO_PINO[LOG_LEVEL_NAMES[Math.max(0, Math.min(7, level))]]
}

export type LogFormat = 'json' | 'server' | 'default'

export interface LogOptions {
  /** File to append to; undefined = stdout. With `syslog`, the fallback when there is no logger(1). */
  file?: string
  format?: LogFormat
  level?: number
  name?: string
  /** Send the lines to the system log (facility daemon) under this ident, tagged with the pid. */
  syslog?: { ident: string }
}

const PINO_LEVEL_LABEL: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'EMERG' }
/** pino level → syslog severity (LOG_CRIT … LOG_DEBUG); Sheepdog's levels are syslog's. */
const PINO_LEVEL_SEVERITY: Record<number, number> = { 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 }
/** syslog's LOG_DAEMON, the facility the original's sheep logs under. */
const SYSLOG_FACILITY_DAEMON = 3

/** Where formatted lines go: the text (newline-terminated) and the pino level it was logged at. */
type LineSink = (text: string, pinoLevel: number) => void

/** A synchronous line writer that renders pino's JSON lines in the chosen text format. */
function textStream(sink: LineSink, format: LogFormat): { write(line: string): void } {
  return {
    write(line: string) {
      let rec: Record<string, unknown>
      try {
        rec = JSON.parse(line) as Record<string, unknown>
      } catch {
        sink(line, 30)
        return
      }
      const { level, time, msg, pid: _pid, hostname: _host, name: _name, ...rest } = rec
      if (format === 'json') {
        sink(line, Number(level))
        return
      }
      const extra = Object.keys(rest).length > 0 ? ' ' + JSON.stringify(rest) : ''
      const text =
        format === 'default'
          ? `${String(msg ?? '')}${extra}\n`
          : `${new Date(Number(time)).toISOString()} ${(PINO_LEVEL_LABEL[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${extra}\n`
      sink(text, Number(level))
    },
  }
}

/**
 * The system log through one long-lived `logger --prio-prefix` reading our lines: each line goes
 * out as its own message, `<PRI>` carrying facility daemon and the line's severity, tagged
 * `ident[pid]` with this process's pid. Undefined when there is no logger(1); like the
 * original's syslog(3), lines are dropped silently when no syslog daemon listens.
 */
function syslogSink(ident: string): LineSink | undefined {
  const logger = findOnPath('logger')
  if (logger === undefined) return undefined
  const child = spawn(logger, [`--id=${process.pid}`, '-t', ident, '--prio-prefix'], { stdio: ['pipe', 'ignore', 'ignore'] })
  child.on('error', () => undefined)
  child.stdin.on('error', () => undefined)
  child.unref()
  return (text, pinoLevel) => {
    const priority = SYSLOG_FACILITY_DAEMON * 8 + (PINO_LEVEL_SEVERITY[pinoLevel] ?? 6)
    for (const line of text.split('\n')) if (line !== '') child.stdin.write(`<${priority}>${line}\n`)
  }
}

/** A file (or stdout) to append lines to, and how to open the file again by its name. */
interface FileSink {
  sink: LineSink
  /** Opens the path anew (after logrotate renamed the file) and closes the old descriptor. */
  reopen(): void
}

function fileSink(file: string | undefined): FileSink {
  let fd = file ? fs.openSync(file, 'a') : 1
  return {
    sink: (text) => {
      fs.writeSync(fd, text)
    },
    reopen: () => {
      if (file === undefined) return
      // open first: if the new file cannot be opened, lines keep going to the old one
      const next = fs.openSync(file, 'a')
      const old = fd
      fd = next
      fs.closeSync(old)
    },
  }
}

/** How to reopen each logger's file; a logger to stdout or syslog has nothing to reopen. */
const REOPENERS = new WeakMap<Logger, () => void>()

export function createLogger(opts: LogOptions = {}): Logger {
  const toSyslog = opts.syslog ? syslogSink(opts.syslog.ident) : undefined
  const file = toSyslog ? undefined : fileSink(opts.file)
  const sink = toSyslog ?? (file as FileSink).sink
  const log = pino({ level: sdLevelToPino(opts.level ?? 6), name: opts.name, base: { pid: process.pid } }, textStream(sink, opts.format ?? 'server'))
  if (file && opts.file !== undefined) REOPENERS.set(log, file.reopen)
  if (opts.syslog && !toSyslog) log.warn('no logger(1) to reach the system log with: logging to this file instead')
  return log
}

/**
 * Reopens the log file of a logger made by createLogger (SIGHUP after logrotate moved it):
 * later lines go to a new file at the same path. False when the logger writes to no file.
 * Throws when the path cannot be opened; the old file then stays in use.
 */
export function reopenLogFile(log: Logger): boolean {
  const reopen = REOPENERS.get(log)
  if (reopen === undefined) return false
  reopen()
  return true
}

/** A logger that discards everything (tests, tools that log nothing). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}

export type { Logger }
