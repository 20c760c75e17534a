// sheepfs's command line (cli-and-formats.md §8): the option table, parsing with commander, the
// usage text, and the checks that turn bad arguments into a message and exit 1.
import { Command, CommanderError } from 'commander'
import { isIP } from 'node:net'
import { type ListenAddress, parseListenAddress } from '../lib/addr.js'
import { SD_DEFAULT_PORT } from '../lib/proto.js'

export const SHEEPFS_DEFAULT_ADDRESS = '127.0.0.1'
/** Exit status of a bad command line or a failed start. */
export const SHEEPFS_EXIT_FAILURE = 1

interface OptionSpec {
  short: string
  long: string
  arg?: string
  help: string
}

/** The option table, in the order the usage text lists them. */
export const SHEEPFS_OPTIONS: readonly OptionSpec[] = [
  { short: 'a', long: 'address', arg: 'HOST', help: `specify the sheep address (default: ${SHEEPFS_DEFAULT_ADDRESS})` },
  { short: 'p', long: 'port', arg: 'PORT', help: `specify the sheep port (default: ${SD_DEFAULT_PORT})` },
  { short: 'd', long: 'debug', help: 'print FUSE debug output (implies -f)' },
  { short: 'f', long: 'foreground', help: 'run in the foreground, messages to stderr' },
  { short: 'k', long: 'pagecache', help: "use the kernel's page cache for volumes" },
  { short: 'o', long: 'objectcache', help: 'use the object cache of the sheep' },
  { short: 'w', long: 'writethrough', help: 'answer volume writes only once on every replica' },
  { short: 'M', long: 'metrics', arg: '[HOST:]PORT', help: 'serve Prometheus metrics on PORT (default: disabled)' },
  { short: 'h', long: 'help', help: 'display this help and exit' },
]

export interface SheepfsOptions {
  mountpoint: string
  /** The sheep's host name or address as given. */
  host: string
  port: number
  debug: boolean
  foreground: boolean
  pageCache: boolean
  objectCache: boolean
  /** -w: no write-behind; every volume write is on every replica before it is answered. */
  writeThrough: boolean
  /** --metrics: where sheepfs/metrics.ts is served; absent: no metrics. */
  metrics?: ListenAddress
}

export type ParseOutcome = { kind: 'run'; options: SheepfsOptions } | { kind: 'exit'; code: number; stdout?: string; stderr?: string }

export function usageText(): string {
  return (
    [
      'Usage: sheepfs [OPTION]... MOUNTPOINT',
      'Options:',
      ...SHEEPFS_OPTIONS.map((o) => `  -${o.short}, --${o.long.padEnd(20)}${o.help}`),
      '',
      'sheepfs is a FUSE file system that shows the state of a Sheepdog cluster as files',
      'and exports its VDIs (virtual disks) as raw files under MOUNTPOINT/volume.',
    ].join('\n') + '\n'
  )
}

const fail = (message: string): ParseOutcome => ({
  kind: 'exit',
  code: SHEEPFS_EXIT_FAILURE,
  stderr: `sheepfs: ${message}\nTry 'sheepfs --help' for more information.\n`,
})

/** A TCP port 1..65535, or undefined. */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined
  const port = Number(text)
  return port >= 1 && port <= 65535 ? port : undefined
}

/** A plausible host: an IP literal or a DNS name (resolved later). */
export function isHostText(text: string): boolean {
  return isIP(text) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(text)
}

export function parseSheepfsArgs(argv: readonly string[]): ParseOutcome {
  const program = new Command('sheepfs')
  program.helpOption(false).exitOverride().allowExcessArguments(true).argument('[mountpoint...]')
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined })
  for (const o of SHEEPFS_OPTIONS) program.option(`-${o.short}, --${o.long}${o.arg ? ` <${o.arg}>` : ''}`)
  try {
    program.parse([...argv], { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) return fail(error.message.replace(/^error: /, ''))
    throw error
  }
  const o = program.opts<Record<string, string | boolean | undefined>>()
  if (o.help) return { kind: 'exit', code: 0, stdout: usageText() }
  const positional = program.args
  if (positional.length === 0) return fail('no mount point given')
  if (positional.length > 1) return fail(`only one mount point, please (got ${positional.join(' ')})`)

  const options: SheepfsOptions = {
    mountpoint: positional[0] as string,
    host: SHEEPFS_DEFAULT_ADDRESS,
    port: SD_DEFAULT_PORT,
    debug: o.debug === true,
    foreground: o.foreground === true || o.debug === true,
    pageCache: o.pagecache === true,
    objectCache: o.objectcache === true,
    writeThrough: o.writethrough === true,
  }
  if (typeof o.address === 'string') {
    if (!isHostText(o.address)) return fail(`Invalid address '${o.address}'`)
    options.host = o.address
  }
  if (typeof o.port === 'string') {
    const port = parsePort(o.port)
    if (port === undefined) return fail(`Invalid port number '${o.port}'`)
    options.port = port
  }
  if (typeof o.metrics === 'string') {
    const metrics = parseListenAddress(o.metrics)
    if (metrics === undefined) return fail(`Invalid metrics address '${o.metrics}': expected [HOST:]PORT`)
    options.metrics = metrics
  }
  return { kind: 'run', options }
}
