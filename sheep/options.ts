// sheep's command line (cli-and-formats.md §1): the option table, parsing with commander, the
// usage and version texts, and the checks that turn bad arguments into a message and exit 1.
import { Command, CommanderError } from 'commander'
import { LOG_LEVEL_NAMES, type LogFormat } from '../lib/log.js'
import { parseAddr } from '../lib/addr.js'
import { SD_DEFAULT_PORT, SD_MAX_VNODES } from '../lib/proto.js'
import { parseDriverSpec } from './cluster/driver.js'
import { CLUSTER_DRIVERS as DRIVER_KINDS, CLUSTER_DRIVER_NAMES } from './cluster/drivers.js'

export const SHEEP_VERSION = '1.0.0-node'
export const CLUSTER_DRIVERS = CLUSTER_DRIVER_NAMES

interface OptionSpec {
  short: string
  long: string
  arg?: string
  help: string
  /** Extended help printed when the argument is missing. */
  extended?: string
}

/** The option table, in the order the usage text lists them. */
export const SHEEP_OPTIONS: OptionSpec[] = [
  {
    short: 'b',
    long: 'bindaddr',
    arg: 'IP',
    help: 'specify IP address of interface to listen on',
    extended: 'Example:\n\t$ sheep -b 192.168.1.1 ...\nThis tries to listen on 192.168.1.1 only.',
  },
  {
    short: 'c',
    long: 'cluster',
    arg: 'DRIVER',
    help: 'specify the cluster driver (default: local)',
    extended: `Available cluster drivers:\n${CLUSTER_DRIVERS.join('\n')}\nExample:\n\t$ sheep -c local:/tmp/sheepdog_shm ...\n\t$ sheep -c zookeeper:10.0.0.1:2181,10.0.0.2:2181/sheepdog,timeout=30000 ...`,
  },
  { short: 'D', long: 'directio', help: 'use direct IO for backend store' },
  { short: 'f', long: 'foreground', help: 'make the program run in foreground' },
  { short: 'g', long: 'gateway', help: 'make the program run as a gateway mode' },
  { short: 'h', long: 'help', help: 'display this help and exit' },
  {
    short: 'i',
    long: 'ioaddr',
    arg: 'ADDR',
    help: 'use separate network card to handle IO requests',
    extended:
      'Available arguments:\n\thost=: address of interface to listen on\n\tport=: port number to listen on\nExample:\n\t$ sheep -i host=192.168.1.1,port=7002 ...',
  },
  {
    short: 'j',
    long: 'journal',
    arg: 'OPTS',
    help: 'use journal file to log all the write operations',
    extended:
      'Available arguments:\n\tsize=: size of the journal in megabyes\n\tdir=: path to the location of the journal (default: $STORE)\n\tskip: if specified, skip the recovery at startup\nExample:\n\t$ sheep -j dir=/journal,size=1G',
  },
  {
    short: 'l',
    long: 'log',
    arg: 'OPTS',
    help: 'specify the log directory, level, format and destination',
    extended: `Available arguments:\n\tdir=: path to the location of sheep.log\n\tlevel=: log level of sheep.log\n\tformat=: log format type\n\tdst=: log destination type\n\nif dir is not specified, use metastore directory\n\nAvailable log levels:\n  #    Level\n${LOG_LEVEL_NAMES.map((n, i) => `  ${i}    ${n}`).join('\n')}\n\nAvailable log format:\n  FormatType      Description\n  default         raw format\n  server          raw format with timestamp\n  json            json format\n\nAvailable log destination:\n  DestinationType Description\n  default         dedicated file in a directory used by sheep\n  syslog          syslog of the system\n  stdout          standard output\n\nExample:\n\t$ sheep -l dir=/var/log/,level=debug,format=server ...`,
  },
  { short: 'n', long: 'nosync', help: 'drop O_SYNC for write of backend' },
  {
    short: 'N',
    long: 'nbd',
    arg: '[HOST:]PORT',
    help: 'serve VDIs over NBD on PORT (default: disabled)',
    extended:
      'Export name: a VDI name, or NAME:TAG / NAME:SNAPID for a snapshot (read-only).\nHOST defaults to the -b address, else all addresses.\nExample:\n\t$ sheep -N 10809 ...\n\t$ qemu-img info nbd://127.0.0.1:10809/vm1',
  },
  { short: 'p', long: 'port', arg: 'PORT', help: 'specify the TCP port on which to listen (default: 7000)' },
  { short: 'P', long: 'pidfile', arg: 'FILE', help: 'create a pid file' },
  {
    short: 'R',
    long: 'recovery',
    arg: 'OPTS',
    help: 'specify the recovery throttling (max=N,interval=MS)',
    extended:
      'Available arguments:\n\tmax=: max number of objects recovered in one interval\n\tinterval=: interval in milliseconds\nExample:\n\t$ sheep -R max=100,interval=1000 ...',
  },
  { short: 'v', long: 'version', help: 'show the version' },
  {
    short: 'V',
    long: 'vnodes',
    arg: 'N',
    help: 'set number of vnodes',
    extended: 'Example:\n\t$ sheep -V 128\nThis sets the node to use 128 fixed vnodes (1..65535).',
  },
  {
    short: 'y',
    long: 'myaddr',
    arg: 'IP',
    help: 'specify the address advertised to other sheep',
    extended: 'Example:\n\t$ sheep -y 192.168.1.1 ...\nThis tells other nodes to reach this sheep at 192.168.1.1.',
  },
  {
    short: 'z',
    long: 'zone',
    arg: 'ZONE',
    help: 'specify the zone id (default: determined by listen address)',
    extended: 'Example:\n\t$ sheep -z 1 ...\nThis sets the zone id of this node to 1 (0..4294967295).',
  },
]

export interface SheepOptions {
  baseDir: string
  port: number
  bindAddr?: string
  myAddr?: string
  zone?: number
  vnodes?: number
  gateway: boolean
  foreground: boolean
  nosync: boolean
  directio: boolean
  cluster: { name: string; option: string }
  log: { dir?: string; level: number; format: LogFormat; dst: 'default' | 'stdout' | 'syslog' }
  pidfile?: string
  recovery?: { max: number; intervalMs: number }
  /** The NBD server's listen address (sheep/nbd.ts); absent: no NBD server. */
  nbd?: { host?: string; port: number }
}

export type ParseOutcome = { kind: 'run'; options: SheepOptions } | { kind: 'exit'; code: number; stdout?: string; stderr?: string }

export function usageText(): string {
  const lines = [
    `Sheepdog daemon (version ${SHEEP_VERSION})`,
    'Usage: sheep [OPTION]... [PATH] (default: /tmp)',
    'Options:',
    ...SHEEP_OPTIONS.map((o) => `  -${o.short}, --${o.long.padEnd(18)}${o.help}`),
    '',
    "Try 'sheep --help' for more information.",
  ]
  return lines.join('\n') + '\n'
}

export function versionText(): string {
  return `Sheepdog daemon version ${SHEEP_VERSION}\n\nSupported features:\n\tCluster drivers: ${CLUSTER_DRIVERS.join(' ')}\n\tMiscellaneous: none\n`
}

const fail = (message: string): ParseOutcome => ({ kind: 'exit', code: 1, stderr: `${message}\n` })

/** key=value,key=value → entries (a bare word is a key with an empty value). */
function subOptions(text: string): Array<[string, string]> {
  return text
    .split(',')
    .filter(Boolean)
    .map((part) => {
      const eq = part.indexOf('=')
      return eq < 0 ? [part, ''] : [part.slice(0, eq), part.slice(eq + 1)]
    })
}

/** `PORT`, `HOST:PORT` or `[IPV6]:PORT` → the NBD listen address (HOST an IP address). */
export function parseNbdListen(text: string): { host?: string; port: number } | undefined {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d+)$/.exec(text)
  if (!m) return undefined
  const port = Number(m[3])
  if (port < 1 || port > 65535) return undefined
  const host = m[1] ?? m[2]
  if (host !== undefined && !parseAddr(host)) return undefined
  return host === undefined ? { port } : { host, port }
}

export function parseSheepArgs(argv: string[]): ParseOutcome {
  const program = new Command('sheep')
  program.helpOption(false).exitOverride().allowExcessArguments(false).argument('[path]')
  program.configureOutput({ writeErr: () => undefined, writeOut: () => undefined })
  for (const o of SHEEP_OPTIONS) program.option(`-${o.short}, --${o.long}${o.arg ? ` <${o.arg}>` : ''}`)
  try {
    program.parse(argv, { from: 'user' })
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.optionMissingArgument') {
        const spec = SHEEP_OPTIONS.find((o) => e.message.includes(`--${o.long}`))
        if (spec?.extended) return { kind: 'exit', code: 1, stdout: `${spec.extended}\n` }
      }
      return { kind: 'exit', code: 1, stderr: `${e.message.replace(/^error: /, 'sheep: ')}\nTry 'sheep --help' for more information.\n` }
    }
    throw e
  }
  const o = program.opts<Record<string, string | boolean | undefined>>()
  if (o.help) return { kind: 'exit', code: 0, stdout: usageText() }
  if (o.version) return { kind: 'exit', code: 0, stdout: versionText() }

  const pathArg = (program.args[0] as string | undefined) ?? '/tmp'
  const baseDir = pathArg.split(',')[0]
  const options: SheepOptions = {
    baseDir,
    port: SD_DEFAULT_PORT,
    gateway: o.gateway === true,
    foreground: o.foreground === true,
    nosync: o.nosync === true,
    directio: o.directio === true,
    cluster: { name: 'local', option: '' },
    log: { level: 6, format: 'server', dst: 'default' },
  }
  if (typeof o.port === 'string') {
    const port = Number(o.port)
    if (!/^\d+$/.test(o.port) || port < 1 || port > 65535) return fail(`Invalid port number '${o.port}'`)
    options.port = port
  }
  if (typeof o.bindaddr === 'string') {
    if (!parseAddr(o.bindaddr)) return fail(`Invalid address: '${o.bindaddr}'`)
    options.bindAddr = o.bindaddr
  }
  if (typeof o.myaddr === 'string') {
    if (!parseAddr(o.myaddr)) return fail(`Invalid address: '${o.myaddr}'`)
    options.myAddr = o.myaddr
  }
  if (typeof o.zone === 'string') {
    const zone = Number(o.zone)
    if (!/^\d+$/.test(o.zone) || zone > 0xffffffff) return fail(`Invalid zone id '${o.zone}': must be an integer between 0 and 4294967295`)
    options.zone = zone
  }
  if (typeof o.vnodes === 'string') {
    const v = Number(o.vnodes)
    if (!/^\d+$/.test(o.vnodes) || v < 1 || v > SD_MAX_VNODES) {
      return fail(`Invalid number of vnodes '${o.vnodes}': must be an integer between 1 and ${SD_MAX_VNODES}`)
    }
    options.vnodes = v
  }
  if (options.gateway && options.vnodes !== undefined) return fail("Options '-g' and '-V' can not be both specified")
  if (typeof o.cluster === 'string') {
    const spec = parseDriverSpec(o.cluster)
    if (!(CLUSTER_DRIVERS as readonly string[]).includes(spec.name)) {
      return fail(`Invalid cluster driver '${spec.name}'\nSupported drivers: ${CLUSTER_DRIVERS.join(' ')}`)
    }
    const problem = DRIVER_KINDS[spec.name].check(spec.option)
    if (problem) return fail(problem)
    options.cluster = spec
  }
  if (typeof o.log === 'string') {
    for (const [key, value] of subOptions(o.log)) {
      if (key === 'dir') options.log.dir = value
      else if (key === 'level') {
        const byName = (LOG_LEVEL_NAMES as readonly string[]).indexOf(value)
        const level = byName >= 0 ? byName : /^\d$/.test(value) ? Number(value) : -1
        if (level < 0 || level > 7) return fail(`Invalid log level '${value}'`)
        options.log.level = level
      } else if (key === 'format') {
        if (!['default', 'server', 'json'].includes(value)) return fail(`Invalid log format '${value}'`)
        options.log.format = value as LogFormat
      } else if (key === 'dst') {
        if (!['default', 'stdout', 'syslog'].includes(value)) return fail(`Invalid log destination '${value}'`)
        options.log.dst = value as SheepOptions['log']['dst']
        if (value === 'stdout') options.foreground = true
      } else return fail(`Invalid log option '${key}'`)
    }
  }
  if (typeof o.pidfile === 'string') options.pidfile = o.pidfile
  if (typeof o.recovery === 'string') {
    let max = 0
    let interval = 0
    for (const [key, value] of subOptions(o.recovery)) {
      if (key === 'max') max = Number(value)
      else if (key === 'interval') interval = Number(value)
      else return fail(`Invalid recovery option '${key}'`)
    }
    if (!(max > 0 && interval > 0 && Number.isInteger(max) && Number.isInteger(interval))) {
      return fail('Invalid recovery throttling: both max and interval must be positive integers')
    }
    options.recovery = { max, intervalMs: interval }
  }
  if (typeof o.nbd === 'string') {
    const nbd = parseNbdListen(o.nbd)
    if (!nbd) return fail(`Invalid NBD address '${o.nbd}': expected [HOST:]PORT`)
    nbd.host ??= options.bindAddr
    if (nbd.port === options.port) return fail(`NBD port ${nbd.port} is the sheep port`)
    options.nbd = nbd
  }
  for (const unsupported of ['ioaddr', 'journal'] as const) {
    if (o[unsupported] !== undefined) return fail(`Option --${unsupported} is not supported by this sheep`)
  }
  return { kind: 'run', options }
}
