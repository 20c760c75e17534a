// sheepfs's messages: with -f they go to stderr as text lines; as a daemon to syslog (facility
// daemon, ident sheepfs) through one long-lived logger(1) that reads `<priority>message` lines.
// Failure reports of the I/O path pass through a limiter so a sheep that is down cannot flood
// the log.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import { pino, type Logger } from 'pino'

export type { Logger }

/** pino level number → syslog priority (facility daemon = 3 << 3) and the word shown on stderr. */
const LEVELS: ReadonlyMap<number, { syslogPriority: number; word: string }> = new Map([
  [10, { syslogPriority: 24 + 7, word: 'TRACE' }],
  [20, { syslogPriority: 24 + 7, word: 'DEBUG' }],
  [30, { syslogPriority: 24 + 6, word: 'INFO' }],
  [40, { syslogPriority: 24 + 4, word: 'WARN' }],
  [50, { syslogPriority: 24 + 3, word: 'ERROR' }],
  [60, { syslogPriority: 24 + 2, word: 'FATAL' }],
])
/** Longest line handed to syslog; longer messages are cut. */
const SYSLOG_LINE_MAX_CHARS = 4000
/** Bytes queued for logger(1) at most; lines beyond are dropped while it is slow. */
const SYSLOG_QUEUE_MAX_BYTES = 1024 * 1024

interface LogRecord {
  level: number
  time: number
  msg?: string
  [key: string]: unknown
}

function render(line: string): { level: number; text: string; time: number } {
  let rec: LogRecord
  try {
    rec = JSON.parse(line) as LogRecord
  } catch {
    return { level: 30, text: line.trimEnd(), time: Date.now() }
  }
  const { level, time, msg, pid: _pid, hostname: _host, name: _name, ...rest } = rec
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : ''
  return { level, text: `${msg ?? ''}${extra}`, time }
}

function stderrStream(): { write(line: string): void } {
  return {
    write(line) {
      const { level, text, time } = render(line)
      fs.writeSync(2, `${new Date(time).toISOString()} ${(LEVELS.get(level)?.word ?? String(level)).padEnd(5)} ${text}\n`)
    },
  }
}

function syslogStream(): { write(line: string): void } {
  let child: ChildProcess | undefined
  try {
    child = spawn('logger', ['--prio-prefix', '-t', 'sheepfs', '--id=' + String(process.pid)], { stdio: ['pipe', 'ignore', 'ignore'] })
    child.on('error', () => {
      child = undefined
    })
    child.stdin?.on('error', () => {
      child = undefined
    })
    child.unref()
    ;(child.stdin as unknown as { unref?: () => void } | null)?.unref?.()
  } catch {
    child = undefined
  }
  return {
    write(line) {
      const stdin = child?.stdin
      if (!stdin || stdin.writableLength > SYSLOG_QUEUE_MAX_BYTES) return
      const { level, text } = render(line)
      const priority = LEVELS.get(level)?.syslogPriority ?? 24 + 6
      stdin.write(`<${priority}>${text.replace(/\n/g, ' ').slice(0, SYSLOG_LINE_MAX_CHARS)}\n`)
    },
  }
}

export function createSheepfsLogger(opts: { foreground: boolean; debug: boolean }): Logger {
  return pino({ level: opts.debug ? 'debug' : 'info', base: undefined }, opts.foreground ? stderrStream() : syslogStream())
}

/** Messages a limiter lets through per window, and the window. */
const FAILURE_REPORTS_PER_WINDOW = 20
const FAILURE_REPORT_WINDOW_MS = 10_000

/** Passes at most FAILURE_REPORTS_PER_WINDOW warnings per window and counts the rest. */
export class ReportLimiter {
  private windowStartMs = 0
  private passed = 0
  private suppressed = 0

  constructor(private readonly log: Logger) {}

  warn(message: string): void {
    const now = Date.now()
    if (now - this.windowStartMs >= FAILURE_REPORT_WINDOW_MS) {
      if (this.suppressed > 0) this.log.warn(`${this.suppressed} similar messages suppressed`)
      this.windowStartMs = now
      this.passed = 0
      this.suppressed = 0
    }
    if (this.passed < FAILURE_REPORTS_PER_WINDOW) {
      this.passed++
      this.log.warn(message)
    } else {
      this.suppressed++
    }
  }
}
