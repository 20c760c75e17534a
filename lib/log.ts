// Logger factory over pino. Sheep's `-l format=` chooses how a line looks: `json` (pino's own
// lines), `server` (time, level and message, the default) or `default` (message only), and
// `dst=` where it goes: a file (PATH/sheep.log), stdout, or syslog (not supported here: falls
// back to the file). Levels use Sheepdog's names (emerg … debug) mapped onto pino's.
import fs from 'node:fs'
import { pino, type Logger } from 'pino'

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
  /** File to append to; undefined = stdout. */
  file?: string
  format?: LogFormat
  level?: number
  name?: string
}

const PINO_LEVEL_LABEL: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'EMERG' }

/** A synchronous line writer that renders pino's JSON lines in the chosen text format. */
function textStream(fd: number, format: LogFormat): { write(line: string): void } {
  return {
    write(line: string) {
      if (format === 'json') {
        fs.writeSync(fd, line)
        return
      }
      let rec: Record<string, unknown>
      try {
        rec = JSON.parse(line) as Record<string, unknown>
      } catch {
        fs.writeSync(fd, line)
        return
      }
      const { level, time, msg, pid: _pid, hostname: _host, name: _name, ...rest } = rec
      const extra = Object.keys(rest).length > 0 ? ' ' + JSON.stringify(rest) : ''
      const text =
        format === 'default'
          ? `${String(msg ?? '')}${extra}\n`
          : `${new Date(Number(time)).toISOString()} ${(PINO_LEVEL_LABEL[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${extra}\n`
      fs.writeSync(fd, text)
    },
  }
}

export function createLogger(opts: LogOptions = {}): Logger {
  const fd = opts.file ? fs.openSync(opts.file, 'a') : 1
  return pino({ level: sdLevelToPino(opts.level ?? 6), name: opts.name, base: { pid: process.pid } }, textStream(fd, opts.format ?? 'server'))
}

/** A logger that discards everything (tests, tools that log nothing). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}

export type { Logger }
