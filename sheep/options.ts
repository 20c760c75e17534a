// sheep's command line (cli-and-formats.md §1): the option table, parsing with commander, the
// usage and version texts, and the checks that turn bad arguments into a message and exit 1.
// Options of the original that have no counterpart here (-j, -w, -W, -x, -u, -D) are checked as
// the original checks them and then accepted: each leaves a notice that sheep logs at start.
import { Command, CommanderError } from 'commander'
import { LOG_LEVEL_NAMES, type LogFormat } from '../lib/log.js'
import { parseAddr, parseListenAddress } from '../lib/addr.js'
import { SD_DEFAULT_PORT, SD_MAX_VNODES } from '../lib/proto.js'
import { type AdminNetworks, parseAdminNetworks } from './admin-access.js'
import { parseDriverSpec } from './cluster/driver.js'
import { CLUSTER_DRIVERS as DRIVER_KINDS, CLUSTER_DRIVER_NAMES, defaultClusterDriver } from './cluster/drivers.js'

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
    short: 'A',
    long: 'admin-from',
    arg: 'NETS',
    help: 'accept cluster-wide and destructive requests only from these networks (default: all)',
    extended:
      'NETS is a comma-separated list of networks (ADDR/PREFIX) or single addresses, IPv4 or IPv6.\nOthers are answered "Operation is not supported"; the unix socket is always accepted.\nExample:\n\t$ sheep --admin-from 127.0.0.0/8,10.0.0.0/24 ...',
  },
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
    help: `specify the cluster driver (default: ${defaultClusterDriver()})`,
    extended: `Available cluster drivers:\n${CLUSTER_DRIVERS.join('\n')}\nExample:\n\t$ sheep -c local:/tmp/sheepdog_shm ...\n\t$ sheep -c zookeeper:10.0.0.1:2181,10.0.0.2:2181/sheepdog,timeout=30000 ...`,
  },
  {
    short: 'C',
    long: 'no-checksums',
    help: 'keep no checksums of stored objects and verify none (default: a CRC-32 per 4 KiB, verified on every read)',
  },
  { short: 'D', long: 'directio', help: 'use direct IO for backend store' },
  { short: 'f', long: 'foreground', help: 'make the program run in foreground' },
  { short: 'g', long: 'gateway', help: 'make the program run as a gateway mode' },
  { short: 'h', long: 'help', help: 'display this help and exit' },
  {
    short: 'i',
    long: 'ioaddr',
    arg: 'ADDR',
    help: 'use separate network card to handle IO requests (default: disabled)',
    extended:
      'Example:\n\t$ sheep -i host=192.168.1.1,port=7002 ...\nThis tries to add a dedicated IO NIC of 192.168.1.1:7002 to transfer data.\nIf IO NIC is down, sheep will fallback to non IO NIC to transfer data.',
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
  {
    short: 'M',
    long: 'metrics',
    arg: '[HOST:]PORT',
    help: 'serve Prometheus metrics over HTTP on PORT (default: disabled)',
    extended:
      'The metrics are at http://HOST:PORT/metrics.\nHOST defaults to the -b address, else all addresses.\nExample:\n\t$ sheep --metrics 9100 ...\n\t$ curl http://127.0.0.1:9100/metrics',
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
  {
    short: 'S',
    long: 'scrub',
    arg: 'OPTS',
    help: 'the scrubber: rate=MiB/s (default 16), every=HOURS (default: only when asked)',
    extended:
      'The scrubber reads every object this node stores, verifies its checksums, compares the replicas\nof objects without checksums and repairs what it finds (dog node scrub, dog cluster scrub).\nExample:\n\t$ sheep --scrub rate=32,every=168 ...\nThis scrubs at 32 MiB/s, and starts a scrub every week.',
  },
  { short: 'u', long: 'upgrade', help: 'upgrade to the latest data layout' },
  { short: 'v', long: 'version', help: 'show the version' },
  {
    short: 'V',
    long: 'vnodes',
    arg: 'N',
    help: 'set number of vnodes',
    extended: 'Example:\n\t$ sheep -V 128\nThis sets the node to use 128 fixed vnodes (1..65535).',
  },
  { short: 'w', long: 'wq-threads', arg: 'OPTS', help: 'specify a number of threads for workqueue' },
  { short: 'W', long: 'wildcard-recovery', help: 'wildcard recovery for first time' },
  { short: 'x', long: 'max-dynamic-threads', arg: 'N', help: 'specify the maximum number of threads for dynamic workqueue' },
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
  /** Object disks after the base directory (`PATH,DISK1,DISK2…`); none: objects in `PATH/obj`. */
  disks: string[]
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
  /**
   * The dedicated I/O NIC (-i): a second listener, announced in the node record (io_addr,
   * io_port) so that other sheep send their object traffic there; absent: none.
   */
  io?: { host: string; port: number }
  /** The NBD server's listen address (sheep/nbd.ts); absent: no NBD server. */
  nbd?: { host?: string; port: number }
  /** The metrics endpoint's listen address (sheep/metrics.ts); absent: no metrics. */
  metrics?: { host?: string; port: number }
  /** Where admin ops are accepted from besides the unix socket (--admin-from); absent: anywhere. */
  adminFrom?: AdminNetworks
  /** Threads of libuv's I/O pool asked for with -w io=N or -x N (main.ts sizes the daemon's pool). */
  ioThreadPoolSize?: number
  /** Whether stored objects carry checksums (-C, --no-checksums turns them off). */
  checksums: boolean
  /** The scrubber (-S, --scrub): its rate in MiB/s and how often it starts by itself (0: never). */
  scrub: { rateMiB: number; everyHours: number }
  /** Lines sheep logs at start about options it accepted but that change nothing here. */
  notices: StartNotice[]
}

/** A line for the log about an option accepted for compatibility. */
export interface StartNotice {
  level: 'warn' | 'info'
  message: string
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

const MAX_PORT = 65535
const UINT32_MAX = 0xffffffff

/**
 * A number in 0..max as the original's str_to_u16 / str_to_u32 read it (strtoll over the whole
 * text: leading space and a sign allowed); undefined when it is not one.
 */
function parseUnsigned(text: string, max: number): number | undefined {
  if (!/^\s*[-+]?\d+$/.test(text)) return undefined
  const value = Number(text.trim())
  return value >= 0 && value <= max ? value : undefined
}

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
  const [baseDir, ...disks] = pathArg.split(',')
  const options: SheepOptions = {
    baseDir,
    disks: disks.filter(Boolean),
    port: SD_DEFAULT_PORT,
    gateway: o.gateway === true,
    foreground: o.foreground === true,
    nosync: o.nosync === true,
    directio: o.directio === true,
    checksums: o.checksums !== false,
    scrub: { rateMiB: 0, everyHours: 0 },
    cluster: { name: defaultClusterDriver(), option: '' },
    log: { level: 6, format: 'server', dst: 'default' },
    notices: [],
  }
  if (typeof o.port === 'string') {
    const port = parseUnsigned(o.port, MAX_PORT)
    if (port === undefined || port < 1) return fail(`Invalid port number '${o.port}'`)
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
    const zone = parseUnsigned(o.zone, UINT32_MAX)
    if (zone === undefined) return fail(`Invalid zone id '${o.zone}': must be an integer between 0 and 4294967295`)
    options.zone = zone
  }
  if (typeof o.vnodes === 'string') {
    const v = parseUnsigned(o.vnodes, SD_MAX_VNODES)
    if (v === undefined || v < 1) {
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
    if (options.log.dir !== undefined && options.log.dst !== 'default') {
      return fail(`logdir (${options.log.dir}) is specified but logging destination is ${options.log.dst}`)
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
    const nbd = parseListenAddress(o.nbd)
    if (!nbd) return fail(`Invalid NBD address '${o.nbd}': expected [HOST:]PORT`)
    nbd.host ??= options.bindAddr
    if (nbd.port === options.port) return fail(`NBD port ${nbd.port} is the sheep port`)
    options.nbd = nbd
  }
  if (typeof o.ioaddr === 'string') {
    const io = parseIoNic(o.ioaddr)
    if (typeof io === 'string') return fail(io)
    options.io = io
  }
  if (typeof o.metrics === 'string') {
    const metrics = parseListenAddress(o.metrics)
    if (!metrics) return fail(`Invalid metrics address '${o.metrics}': expected [HOST:]PORT`)
    metrics.host ??= options.bindAddr
    if (metrics.port === options.port || metrics.port === options.nbd?.port) return fail(`metrics port ${metrics.port} is already in use by this sheep`)
    options.metrics = metrics
  }
  if (typeof o.scrub === 'string') {
    for (const [key, value] of subOptions(o.scrub)) {
      const n = Number(value)
      if (!(value !== '' && Number.isFinite(n) && n > 0)) return fail(`Invalid scrub option '${key}=${value}': a positive number is expected`)
      if (key === 'rate') options.scrub.rateMiB = n
      else if (key === 'every') options.scrub.everyHours = n
      else return fail(`Invalid scrub option '${key}'`)
    }
  }
  if (typeof o.adminFrom === 'string') {
    const networks = parseAdminNetworks(o.adminFrom)
    if (typeof networks === 'string') return fail(networks)
    options.adminFrom = networks
  }
  const problem = applyCompatibilityOptions(o, options)
  if (problem !== undefined) return fail(problem)
  return { kind: 'run', options }
}

// ---- -i: the dedicated I/O NIC ------------------------------------------------------------------

const IONIC_KEYS = ['host=', 'port='] as const
/** The I/O port when -i names none: the original's default, the main port's default. */
export const DEFAULT_IO_PORT = SD_DEFAULT_PORT

/**
 * -i host=ADDR[,port=PORT] as the original reads it (option_parse, then str_to_addr and
 * sscanf("%u")): the address is required, the port defaults to 7000 and is read up to its first
 * non-digit. Two differences: the address must be an IP address (no name lookup), and a port
 * outside 1..65535 is refused rather than cut to 16 bits. Returns the error message otherwise.
 */
export function parseIoNic(text: string): { host: string; port: number } | string {
  const words = keyedWords(text, IONIC_KEYS)
  if (typeof words === 'string') return words
  // the last word of a kind wins, as each of the original's parsers overwrites its value
  const value = (key: (typeof IONIC_KEYS)[number]) => words.filter(([k]) => k === key).pop()?.[1]
  const host = value('host=')
  const portText = value('port=')
  if (host === undefined || !parseAddr(host)) return `Bad addr: '${host ?? '(null)'}'`
  if (portText === undefined) return { host, port: DEFAULT_IO_PORT }
  const m = /^\s*\+?(\d+)/.exec(portText)
  const port = m ? Number(m[1]) : 0
  if (port < 1 || port > MAX_PORT) return `Bad port '${portText}'`
  return { host, port }
}

// ---- options of the original without a counterpart here ---------------------------------------

/** The smallest journal the original accepts (its MIN_JOURNAL_SIZE). */
const MIN_JOURNAL_BYTES = 64 * 1024 * 1024
/** libuv's largest I/O thread pool (MAX_THREADPOOL_SIZE). */
const MAX_IO_THREAD_POOL_SIZE = 1024
/** The work queues `-w` names, as the original's option words. */
const WORK_QUEUE_KEYS = ['net=', 'gway=', 'io=', 'peer=', 'reclaim=', 'gway_fwd=', 'remove=', 'remove_peer=', 'recovery=', 'async='] as const
const JOURNAL_KEYS = ['dir=', 'size=', 'skip'] as const
const SIZE_SUFFIX_SHIFTS: Readonly<Record<string, bigint>> = { '': 0n, b: 0n, k: 10n, m: 20n, g: 30n, t: 40n, p: 50n }

/**
 * The original's option_parse: comma-separated words, each taken by the first key it starts
 * with (the rest of the word is the value); an unknown word is `invalid option WORD`.
 */
function keyedWords<Key extends string>(text: string, keys: readonly Key[]): Array<[Key, string]> | string {
  const entries: Array<[Key, string]> = []
  for (const word of text.split(',').filter(Boolean)) {
    const key = keys.find((k) => word.startsWith(k))
    if (key === undefined) return `invalid option ${word}`
    entries.push([key, word.slice(key.length)])
  }
  return entries
}

/** A size as the original's option_parse_size reads it (strtod, then at most one suffix letter); undefined when invalid. */
function parseOptionSize(text: string): number | undefined {
  const m = /^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)?(.?)$/.exec(text)
  const shift = m ? SIZE_SUFFIX_SHIFTS[m[2].toLowerCase()] : undefined
  if (!m || shift === undefined) return undefined
  return Math.max(0, Number(m[1] ?? 0)) * 2 ** Number(shift)
}

/** -j: checked as the original checks it (size mandatory, at least 64 MiB); undefined when valid. */
function journalProblem(text: string): string | undefined {
  const words = keyedWords(text, JOURNAL_KEYS)
  if (typeof words === 'string') return words
  let size = 0
  for (const [key, value] of words) {
    if (key !== 'size=') continue
    const parsed = parseOptionSize(value)
    if (parsed === undefined) {
      return `Invalid size '${value}'\nYou may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.`
    }
    if (parsed < MIN_JOURNAL_BYTES) return `invalid size ${value}, must be bigger than ${MIN_JOURNAL_BYTES / 1024 / 1024}(M)`
    size = parsed
  }
  return size === 0 ? 'you must specify size for journal' : undefined
}

/** C atoi: the leading decimal integer, 0 when there is none. */
function atoi(text: string): number {
  const m = /^\s*([-+]?\d+)/.exec(text)
  return m ? Number(m[1]) : 0
}

/** -w: the I/O pool size of `io=N` (0: default); the queues named that have no meaning here. */
function parseWorkQueueThreads(text: string): { io: number; others: string[] } | string {
  const words = keyedWords(text, WORK_QUEUE_KEYS)
  if (typeof words === 'string') return words
  const io = words.filter(([key]) => key === 'io=').reduce((_, [, value]) => atoi(value), 0)
  const others = words.filter(([key, value]) => key !== 'io=' && atoi(value) > 0).map(([key, value]) => `${key}${value}`)
  return { io, others }
}

/**
 * -j, -w, -W, -x, -u and -D: refused where the original refuses them, else accepted with a
 * notice for the log. The I/O pool (-w io=N, else -x N) is the one thread count with a meaning
 * here. Returns the error message of a refused value.
 */
function applyCompatibilityOptions(o: Record<string, string | boolean | undefined>, options: SheepOptions): string | undefined {
  const notices = options.notices
  if (typeof o.journal === 'string') {
    const problem = journalProblem(o.journal)
    if (problem) return problem
    notices.push({ level: 'warn', message: 'this sheep has no journal (-j): it runs without one, and a write is acknowledged once it is durable (unless -n)' })
  }
  let poolSize = 0
  if (typeof o.maxDynamicThreads === 'string') {
    const text = o.maxDynamicThreads
    const value = parseUnsigned(text, UINT32_MAX)
    if (value === undefined || value < 1) return `Invalid number of threads '${text}': must be an integer between 1 and ${UINT32_MAX}`
    poolSize = value
  }
  if (typeof o.wqThreads === 'string') {
    const threads = parseWorkQueueThreads(o.wqThreads)
    if (typeof threads === 'string') return threads
    if (threads.io > 0) poolSize = threads.io
    if (threads.others.length > 0) {
      notices.push({
        level: 'warn',
        message: `work queue threads (-w ${threads.others.join(',')}) have no meaning here: requests are served by one event loop`,
      })
    }
  }
  if (poolSize > 0) options.ioThreadPoolSize = Math.min(poolSize, MAX_IO_THREAD_POOL_SIZE)
  if (o.wildcardRecovery === true) {
    notices.push({ level: 'warn', message: 'wildcard recovery (-W) is not supported: recovery asks the nodes of the earlier epochs for each object' })
  }
  if (o.directio === true) {
    notices.push({ level: 'warn', message: 'direct I/O (-D) is not supported by the plain store: objects are read and written through the page cache' })
  }
  if (o.upgrade === true) notices.push({ level: 'info', message: 'upgrade (-u): the store already has the only data layout this sheep knows' })
  return undefined
}
