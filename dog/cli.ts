// dog's command-line framework: the command/subcommand tables' types, the
// option letters of every command family, getopt_long-compatible option
// parsing, name-prefix dispatch, the exact usage/help texts of the original
// dog, exit codes, argument parsers (sizes, redundancy, snapshots, indexes)
// and the confirmation prompt. No wire code: handlers plug into the tables.

import { spawn } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import { appendFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { performance } from 'node:perf_hooks'

import { formatDogLogTime, formatFixed, padRight } from '../lib/format.js'
import { SD_DEFAULT_PORT } from '../lib/proto.js'

// ---------------------------------------------------------------------------
// Exit codes (spec cli-and-formats §2.7)

export const EXIT_SUCCESS = 0
export const EXIT_FAILURE = 1
export const EXIT_SYSFAIL = 2
export const EXIT_EXISTS = 3
export const EXIT_FULL = 4
export const EXIT_MISSING = 5
export const EXIT_USAGE = 64

/**
 * Exit status for an unknown nested subcommand (`dog node log level foo`).
 * The original exits 1 there but 64 for every other misuse; this project
 * treats every misuse alike.
 */
export const EXIT_UNKNOWN_NESTED_SUBCOMMAND = EXIT_USAGE

export const DOG_PROGRAM_NAME = 'dog'
export const DEFAULT_DOG_ADDRESS = '127.0.0.1'
export const DEFAULT_DOG_PORT = SD_DEFAULT_PORT
/** Version shown in the title line of `dog --help` unless runDog is told otherwise. */
export const DEFAULT_DOG_VERSION = '1.0.1'

/** Tokens that ask for help instead of naming a command or subcommand. */
const HELP_TOKENS = new Set(['help', '--help', '-h'])

// ---------------------------------------------------------------------------
// Option values

/** `-s` / `-F`: a snapshot id (whole decimal number > 0) or a tag. */
export type SnapshotSelector = { snapid: number } | { tag: string }

/** `-c N` or `-c D:P` (spec §2.3). `copies` is N, or D + P for erasure coding. */
export interface Redundancy {
  copies: number
  /** 0 for full copies, else ((D / 2) << 4) + P. */
  copyPolicy: number
  dataStrips?: number
  parityStrips?: number
}

/**
 * Every parsed option, named by meaning. Global fields are always set; the
 * others only when their letter was given (families reuse letters with
 * different meanings, so each meaning has its own field).
 */
export interface DogOptions {
  // global: -a -p -r -v -T
  address: string
  port: number
  raw: boolean
  verbose: boolean
  time: boolean
  // vdi
  prealloc?: boolean // -P
  noShare?: boolean // -n
  index?: bigint // -i
  snapshot?: SnapshotSelector // -s
  exclusive?: boolean // -x
  delete?: boolean // -d
  writeback?: boolean // -w
  redundancy?: Redundancy // -c (vdi and cluster)
  fromSnapshot?: SnapshotSelector // -F
  force?: boolean // -f (vdi, node, cluster, benchmark)
  hyper?: boolean // -y
  oid?: bigint // -o
  exist?: boolean // -e
  blockSizeShift?: number // -z (vdi and cluster)
  reduceIdenticalSnapshots?: boolean // -R
  nrBatchedReclamation?: number // -B
  reclamationInterval?: number // -I
  maxReclaim?: number // -m
  // node
  allNodes?: boolean // -A
  progress?: boolean // -P
  watch?: boolean // -w
  local?: boolean // -l
  // cluster
  store?: string // -b
  avoidDiskfull?: boolean // -F
  lock?: boolean // -l
  multithread?: boolean // -m
  recycleVid?: boolean // -R
  strict?: boolean // -t
  fixedVnodes?: boolean // -V
  diff?: boolean // -d
  // benchmark
  workqueue?: string // -w
  total?: number // -t
  nrThreads?: number // -n
  // upgrade
  origVersion?: 'v0.7' | 'v0.8' // -o
}

/** Why an option value was refused: stderr lines and the exit status. */
export interface OptionRejection {
  messages: string[]
  exitCode: number
}

/** What option handlers may need from outside. */
export interface OptionServices {
  /** Resolves a host name to an address; undefined when it cannot. */
  resolveHost: (host: string) => Promise<string | undefined>
}

/** One option letter of a family (or a global one). */
export interface DogOptionSpec {
  letter: string
  longName: string
  takesArgument: boolean
  description: string
  /** `-h`: print the subcommand usage and exit 0 right away. */
  showsUsage?: boolean
  /** Stores the option into opts; returns a rejection when the value is invalid. */
  apply?: (opts: DogOptions, argument: string, services: OptionServices) => OptionRejection | undefined | Promise<OptionRejection | undefined>
}

export type DogOptionFamily = 'vdi' | 'node' | 'cluster' | 'benchmark' | 'upgrade'

function setFlag(field: keyof DogOptions): DogOptionSpec['apply'] {
  return (opts) => {
    ;(opts as unknown as Record<string, unknown>)[field] = true
    return undefined
  }
}

function reject(exitCode: number, ...messages: string[]): OptionRejection {
  return { messages, exitCode }
}

/** Options every subcommand may list (spec §2.1). Looked up before the family's. */
export const GLOBAL_OPTIONS: readonly DogOptionSpec[] = [
  {
    letter: 'a',
    longName: 'address',
    takesArgument: true,
    description: 'specify the daemon address (default: localhost)',
    apply: async (opts, argument, services) => {
      const address = await resolveDaemonAddress(argument, services)
      if (address === undefined) return reject(EXIT_FAILURE, `Invalid ip address ${argument}`)
      opts.address = address
      return undefined
    },
  },
  {
    letter: 'p',
    longName: 'port',
    takesArgument: true,
    description: 'specify the daemon port',
    apply: (opts, argument) => {
      const port = parsePort(argument)
      if (port === undefined) return reject(EXIT_USAGE, `Invalid port number '${argument}'`)
      opts.port = port
      return undefined
    },
  },
  {
    letter: 'r',
    longName: 'raw',
    takesArgument: false,
    description: 'raw output mode: omit headers, separate fields with\n' + '                          single spaces and print all sizes in decimal bytes',
    apply: setFlag('raw'),
  },
  { letter: 'v', longName: 'verbose', takesArgument: false, description: 'print more information than default', apply: setFlag('verbose') },
  { letter: 'h', longName: 'help', takesArgument: false, description: 'display this help and exit', showsUsage: true },
  { letter: 'T', longName: 'time', takesArgument: false, description: 'show elapsed time', apply: setFlag('time') },
]

const INVALID_RECLAMATION_NUMBER: Record<'nrBatchedReclamation' | 'reclamationInterval' | 'maxReclaim', string> = {
  nrBatchedReclamation: 'The number of batched reclamation',
  reclamationInterval: 'The interval of batched reclamation',
  maxReclaim: 'The maximum number of reclamation',
}

/** -B / -I / -m: strtol, then > 0 (the original's messages, missing space included). */
function applyReclamationNumber(field: 'nrBatchedReclamation' | 'reclamationInterval' | 'maxReclaim'): DogOptionSpec['apply'] {
  return (opts, argument) => {
    const value = parseCLong(argument, 10)
    const subject = INVALID_RECLAMATION_NUMBER[field]
    if (value === undefined) return reject(EXIT_FAILURE, `${subject} is invalid: ${argument}`)
    if (value <= 0n) return reject(EXIT_FAILURE, `${subject} must bepositive integer`)
    opts[field] = Number(value)
    return undefined
  }
}

function applyRedundancy(opts: DogOptions, argument: string): OptionRejection | undefined {
  const redundancy = parseRedundancy(argument)
  if (redundancy === undefined) return reject(EXIT_FAILURE, ...invalidRedundancyMessages(argument))
  opts.redundancy = redundancy
  return undefined
}

function applyBlockSizeShift(opts: DogOptions, argument: string): OptionRejection | undefined {
  const shift = parseBlockSizeShift(argument)
  const problem = blockSizeShiftProblem(shift)
  if (problem !== undefined) return reject(EXIT_FAILURE, problem)
  opts.blockSizeShift = shift
  return undefined
}

const HYPER_AND_SHIFT_CONFLICT = "Don't specify both -y and -z options, please"
const SNAPSHOT_ID_NOT_POSITIVE = 'The snapshot id must be larger than zero'

export const VDI_OPTIONS: readonly DogOptionSpec[] = [
  { letter: 'P', longName: 'prealloc', takesArgument: false, description: 'preallocate all the data objects', apply: setFlag('prealloc') },
  { letter: 'n', longName: 'no-share', takesArgument: false, description: 'share nothing with its parent', apply: setFlag('noShare') },
  {
    letter: 'i',
    longName: 'index',
    takesArgument: true,
    description: 'specify the index of data objects',
    apply: (opts, argument) => {
      const index = parseIndex(argument)
      if (index === undefined) {
        return reject(EXIT_FAILURE, 'The index must be a decimal integer or a hexadecimal integer started with 0x')
      }
      opts.index = index
      return undefined
    },
  },
  {
    letter: 's',
    longName: 'snapshot',
    takesArgument: true,
    description: 'specify a snapshot id or tag name',
    apply: (opts, argument) => {
      const selector = parseSnapshotSelector(argument)
      if (selector === undefined) return reject(EXIT_FAILURE, SNAPSHOT_ID_NOT_POSITIVE)
      opts.snapshot = selector
      return undefined
    },
  },
  { letter: 'x', longName: 'exclusive', takesArgument: false, description: 'write in an exclusive mode', apply: setFlag('exclusive') },
  { letter: 'd', longName: 'delete', takesArgument: false, description: 'delete a key', apply: setFlag('delete') },
  { letter: 'w', longName: 'writeback', takesArgument: false, description: 'use writeback mode', apply: setFlag('writeback') },
  { letter: 'c', longName: 'copies', takesArgument: true, description: 'specify the data redundancy level', apply: applyRedundancy },
  {
    letter: 'F',
    longName: 'from',
    takesArgument: true,
    description: 'create a differential backup from the snapshot',
    apply: (opts, argument) => {
      const selector = parseSnapshotSelector(argument)
      if (selector === undefined) return reject(EXIT_FAILURE, SNAPSHOT_ID_NOT_POSITIVE)
      opts.fromSnapshot = selector
      return undefined
    },
  },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'do operation forcibly', apply: setFlag('force') },
  {
    letter: 'y',
    longName: 'hyper',
    takesArgument: false,
    description: 'create a hyper volume',
    apply: (opts) => {
      if (opts.blockSizeShift !== undefined) return reject(EXIT_FAILURE, HYPER_AND_SHIFT_CONFLICT)
      opts.hyper = true
      return undefined
    },
  },
  {
    letter: 'o',
    longName: 'oid',
    takesArgument: true,
    description: 'specify the object id of the tracking object',
    apply: (opts, argument) => {
      const oid = parseOid(argument)
      if (oid === undefined) return reject(EXIT_FAILURE, 'object id must be a hex integer')
      opts.oid = oid
      return undefined
    },
  },
  {
    letter: 'e',
    longName: 'exist',
    takesArgument: false,
    description: 'only check objects exist or not,\n                          neither comparing nor repairing',
    apply: setFlag('exist'),
  },
  {
    letter: 'z',
    longName: 'block_size_shift',
    takesArgument: true,
    description: 'specify the bit shift num for data object size',
    apply: (opts, argument) => {
      const rejection = applyBlockSizeShift(opts, argument)
      if (rejection !== undefined) return rejection
      if (opts.hyper) return reject(EXIT_FAILURE, HYPER_AND_SHIFT_CONFLICT)
      return undefined
    },
  },
  {
    letter: 'R',
    longName: 'reduce-identical-snapshots',
    takesArgument: false,
    description: "do not create snapshot if working VDI doesn't have its own objects",
    apply: setFlag('reduceIdenticalSnapshots'),
  },
  {
    letter: 'B',
    longName: 'nr-batched-reclamation',
    takesArgument: true,
    description: 'specify a number of batched reclamation during VDI deletion',
    apply: applyReclamationNumber('nrBatchedReclamation'),
  },
  {
    letter: 'I',
    longName: 'reclamation-interval',
    takesArgument: true,
    description: 'specify how long (unit: second) in reclamation loop during VDI deletion',
    apply: applyReclamationNumber('reclamationInterval'),
  },
  {
    letter: 'm',
    longName: 'max-reclaim',
    takesArgument: true,
    description: "specify the maximum number of reclaimed objects (if this option is specified, an inode object won't be reclaimed)",
    apply: applyReclamationNumber('maxReclaim'),
  },
]

export const NODE_OPTIONS: readonly DogOptionSpec[] = [
  { letter: 'A', longName: 'all', takesArgument: false, description: 'show md information of all the nodes', apply: setFlag('allNodes') },
  { letter: 'P', longName: 'progress', takesArgument: false, description: 'show progress of recovery in the node', apply: setFlag('progress') },
  { letter: 'w', longName: 'watch', takesArgument: false, description: 'watch the stat every second', apply: setFlag('watch') },
  { letter: 'l', longName: 'local', takesArgument: false, description: 'issue request to local node', apply: setFlag('local') },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'ignore the confirmation', apply: setFlag('force') },
]

export const CLUSTER_OPTIONS: readonly DogOptionSpec[] = [
  {
    letter: 'b',
    longName: 'store',
    takesArgument: true,
    description: 'specify backend store',
    apply: (opts, argument) => {
      opts.store = argument
      return undefined
    },
  },
  { letter: 'c', longName: 'copies', takesArgument: true, description: 'specify the default data redundancy (number of copies)', apply: applyRedundancy },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'do not prompt for confirmation', apply: setFlag('force') },
  {
    letter: 'F',
    longName: 'avoid-diskfull',
    takesArgument: false,
    description: 'skip recovery if recovery process can cause disk full',
    apply: setFlag('avoidDiskfull'),
  },
  { letter: 'l', longName: 'lock', takesArgument: false, description: 'Lock vdi to exclude multiple users', apply: setFlag('lock') },
  {
    // The original also turned on -t here (a missing break); -m means multithread only.
    letter: 'm',
    longName: 'multithread',
    takesArgument: false,
    description: "use multi-thread for 'cluster snapshot save'",
    apply: setFlag('multithread'),
  },
  { letter: 'R', longName: 'recyclevid', takesArgument: false, description: 'enable recycling of VID', apply: setFlag('recycleVid') },
  {
    letter: 't',
    longName: 'strict',
    takesArgument: false,
    description: 'do not serve write request if number of nodes is not sufficient',
    apply: setFlag('strict'),
  },
  {
    letter: 'z',
    longName: 'block_size_shift',
    takesArgument: true,
    description: 'specify the shift num of default data object size',
    apply: applyBlockSizeShift,
  },
  { letter: 'V', longName: 'fixedvnodes', takesArgument: false, description: 'disable automatic vnodes calculation', apply: setFlag('fixedVnodes') },
  {
    letter: 'd',
    longName: 'diff',
    takesArgument: false,
    description: 'just output the changes between the two adjacent epoches for cluster info',
    apply: setFlag('diff'),
  },
]

export const BENCHMARK_OPTIONS: readonly DogOptionSpec[] = [
  {
    letter: 'w',
    longName: 'workqueue',
    takesArgument: true,
    description: 'specify workqueue type',
    apply: (opts, argument) => {
      opts.workqueue = argument
      return undefined
    },
  },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'do not prompt for confirmation', apply: setFlag('force') },
  {
    letter: 't',
    longName: 'total',
    takesArgument: true,
    description: 'a number of total operation (e.g. I/O request)',
    apply: (opts, argument) => {
      opts.total = parseCInt(argument)
      return undefined
    },
  },
  {
    letter: 'n',
    longName: 'nr-threads',
    takesArgument: true,
    description: 'a number of threads of the fixed workqueue',
    apply: (opts, argument) => {
      opts.nrThreads = parseCInt(argument)
      return undefined
    },
  },
]

export const UPGRADE_OPTIONS: readonly DogOptionSpec[] = [
  {
    letter: 'o',
    longName: 'orig-version',
    takesArgument: true,
    description: 'version of converting file',
    apply: (opts, argument) => {
      if (argument !== 'v0.7' && argument !== 'v0.8') {
        return reject(EXIT_FAILURE, `unknown original version: ${argument}`, 'valid versions are v0.7 or v0.8')
      }
      opts.origVersion = argument
      return undefined
    },
  },
]

/** The option letters of each command family (spec §3.2). */
export const OPTION_FAMILIES: Readonly<Record<DogOptionFamily, readonly DogOptionSpec[]>> = {
  vdi: VDI_OPTIONS,
  node: NODE_OPTIONS,
  cluster: CLUSTER_OPTIONS,
  benchmark: BENCHMARK_OPTIONS,
  upgrade: UPGRADE_OPTIONS,
}

// ---------------------------------------------------------------------------
// Command tables

/** A handler: returns the exit status (EXIT_USAGE prints the usage), may throw UsageError or DogExit. */
export type DogHandler = (ctx: DogContext) => Promise<number>

/** One subcommand (or nested subcommand) of a dog command. */
export interface DogSubcommand {
  name: string
  /**
   * Argument spec for the usage line, e.g. '<vdiname> <size>'. As in the
   * original, only the first-level subcommand's spec is printed.
   */
  args?: string
  description: string
  /**
   * Accepted option letters in usage order, e.g. 'PycaphrvzT' (spaces are
   * ignored). Only the first-level subcommand's letters count: nested
   * subcommands inherit them.
   */
  options?: string
  /** Call RunDogOptions.loadNodeList before this level runs (before its minArgs check). */
  needsNodeList?: boolean
  /** Fewer positional arguments than this prints the usage and exits 64. */
  minArgs?: number
  /** Nested subcommands, chosen by the next positional argument. */
  subcommands?: DogSubcommand[]
  /** Nested subcommand to run when no positional argument names one (`node recovery` → info). */
  defaultSubcommand?: string
  /** Runs a leaf. Levels with subcommands have none. */
  handler?: DogHandler
  /**
   * An abbreviation this subcommand owns although other names share it (`l` for `vdi list`
   * rather than `lock`): the table says so, so no prefix becomes ambiguous by accident.
   */
  shortcut?: string
}

/** A dog command group: vdi, node, cluster, upgrade, benchmark. */
export interface DogCommand {
  name: string
  /** Family whose option letters the subcommands may list; defaults to the name when it is a family. */
  family?: DogOptionFamily
  subcommands: DogSubcommand[]
}

// ---------------------------------------------------------------------------
// I/O and context

/** Where output goes: process.stdout / process.stderr or a test buffer. */
export interface DogOutputStream {
  write(chunk: string | Uint8Array): unknown
}

export interface DogIo {
  stdout: DogOutputStream
  stderr: DogOutputStream
  env: Record<string, string | undefined>
  /** For confirmation prompts and `vdi write` / `vdi restore`. */
  stdin?: NodeJS.ReadableStream
  /** argv[0] as typed, used in getopt-style errors and the argument log; default 'dog'. */
  argv0?: string
  /** Whether stdout is a terminal (bold tree labels, progress bars). Default false. */
  stdoutIsTty?: boolean
  /** Terminal width for progress bars. Default 80. */
  columns?: number
}

/** What a handler gets. */
export interface DogContext {
  command: DogCommand
  /** The resolved subcommand chain: [first-level, nested, ...]. */
  path: DogSubcommand[]
  /** Positional arguments after the subcommand names, options removed. */
  args: string[]
  opts: DogOptions
  io: DogIo
  /** stdout is a terminal and not raw mode (the original's `highlight`). */
  highlight: boolean
  /** Terminal width for progress bars. */
  columns: number
  /** Per-run scratch space for hooks and handlers (e.g. the node list). */
  state: Record<string, unknown>
  /** Writes text to stdout as is. */
  printStdout(text: string | Uint8Array): void
  /** Writes one line (newline appended) to stderr, like the original's sd_err/sd_info. */
  printStderrLine(message: string): void
}

/**
 * Thrown by a handler for a misuse: the messages go to stderr, then the
 * subcommand usage is printed and dog exits 64 (same as returning EXIT_USAGE).
 */
export class UsageError extends Error {
  readonly messages: string[]
  constructor(...messages: string[]) {
    super(messages.join('\n') || 'usage error')
    this.name = 'UsageError'
    this.messages = messages
  }
}

/**
 * Thrown to end dog at once with a status, like the original's exit(): no
 * usage text and no -T elapsed-time line.
 */
export class DogExit extends Error {
  readonly exitCode: number
  constructor(exitCode: number) {
    super(`dog exits with ${exitCode}`)
    this.name = 'DogExit'
    this.exitCode = exitCode
  }
}

export interface RunDogOptions {
  /** Shown in `dog --help`'s title line. */
  version?: string
  /** Host name resolution for -a and SHEEPDOG_DOG_ADDR; default dns.lookup. */
  resolveHost?: (host: string) => Promise<string | undefined>
  /**
   * Called for each resolved level with needsNodeList, in order, before the
   * level's minArgs check. Prints its own errors; a non-zero result ends dog
   * with that status (e.g. EXIT_SYSFAIL after `Failed to get node list`).
   */
  loadNodeList?: (ctx: DogContext) => Promise<number | undefined>
  /** Current time in Unix seconds, for the argument log; default Date.now. */
  nowSeconds?: () => number
}

// ---------------------------------------------------------------------------
// Usage texts

function familyOf(command: DogCommand): DogOptionFamily | undefined {
  if (command.family !== undefined) return command.family
  return Object.hasOwn(OPTION_FAMILIES, command.name) ? (command.name as DogOptionFamily) : undefined
}

/** The spec of an option letter for a command: global table first, then the family's. */
export function findOptionSpec(command: DogCommand, letter: string): DogOptionSpec {
  const family = familyOf(command)
  const spec =
    GLOBAL_OPTIONS.find((option) => option.letter === letter) ??
    (family === undefined ? undefined : OPTION_FAMILIES[family].find((option) => option.letter === letter))
  if (spec === undefined) throw new Error(`dog ${command.name}: option letter '${letter}' is in no option table`)
  return spec
}

function optionLettersOf(subcommand: DogSubcommand): string[] {
  return [...(subcommand.options ?? '').replace(/\s+/g, '')]
}

/** One `  %-24s%s` help line. */
function helpLine(label: string, description: string): string {
  return `  ${padRight(label, 24)}${description}\n`
}

/** `dog`, `dog help`, `dog -h`, `dog --help` (stdout, exit 0). */
export function mainUsageText(commands: readonly DogCommand[], version: string = DEFAULT_DOG_VERSION): string {
  let text = `Sheepdog administrator utility (version ${version})\n`
  text += `Usage: ${DOG_PROGRAM_NAME} <command> <subcommand> [options]\n`
  text += '\nAvailable commands:\n'
  for (const command of commands) {
    for (const subcommand of command.subcommands) {
      text += helpLine(`${command.name} ${subcommand.name}`, subcommand.description)
    }
  }
  text += '\n'
  text += `For more information, run '${DOG_PROGRAM_NAME} <command> <subcommand> --help'.\n`
  return text
}

/**
 * Subcommand usage (spec §2.2) for a resolved chain: `Usage: dog <cmd> <sub>
 * [nested...]`, the next level's names, the first level's options and
 * argument spec, `Available subcommands:` and `Options:`.
 */
export function subcommandUsageText(command: DogCommand, path: readonly DogSubcommand[]): string {
  const [firstLevel, ...nestedLevels] = path
  if (firstLevel === undefined) throw new Error('subcommandUsageText: empty subcommand path')
  const deepest = path[path.length - 1] as DogSubcommand
  const nextLevel = deepest.subcommands
  let text = `Usage: ${DOG_PROGRAM_NAME} ${command.name} ${firstLevel.name}`
  for (const nested of nestedLevels) text += ` ${nested.name}`
  if (nextLevel !== undefined && nextLevel.length === 1) text += ` ${(nextLevel[0] as DogSubcommand).name}`
  else if (nextLevel !== undefined && nextLevel.length > 1) text += ` {${nextLevel.map((entry) => entry.name).join('|')}}`
  const optionSpecs = optionLettersOf(firstLevel).map((letter) => findOptionSpec(command, letter))
  for (const spec of optionSpecs) {
    text += spec.takesArgument ? ` [-${spec.letter} ${spec.longName}]` : ` [-${spec.letter}]`
  }
  if (firstLevel.args) text += ` ${firstLevel.args}`
  text += '\n'
  if (nextLevel !== undefined) {
    text += 'Available subcommands:\n'
    for (const entry of nextLevel) text += helpLine(entry.name, entry.description)
  }
  text += 'Options:\n'
  for (const spec of optionSpecs) text += helpLine(`-${spec.letter}, --${spec.longName}`, spec.description)
  return text
}

// ---------------------------------------------------------------------------
// Name matching

/**
 * The entry named `token`, the one whose `shortcut` it is, or the only one whose name starts
 * with it (`v` → `vdi`). Undefined when none or several match, or for an empty or option-like
 * token.
 */
export function findByNameOrPrefix<Entry extends { name: string; shortcut?: string }>(entries: readonly Entry[], token: string): Entry | undefined {
  const exact = entries.find((entry) => entry.name === token)
  if (exact !== undefined) return exact
  if (token === '' || token.startsWith('-')) return undefined
  const owner = entries.find((entry) => entry.shortcut === token)
  if (owner !== undefined) return owner
  const candidates = entries.filter((entry) => entry.name.startsWith(token))
  return candidates.length === 1 ? candidates[0] : undefined
}

// ---------------------------------------------------------------------------
// getopt_long emulation (GNU: permuting, clustered short options, long
// options with unique-prefix matching, `--` ends options)

type ScannedOption = { kind: 'option'; spec: DogOptionSpec; argument: string } | { kind: 'error'; message: string }

interface ScanResult {
  /** Options and the first error, in command-line order. */
  options: ScannedOption[]
  positional: string[]
}

interface LongOptionScan {
  scanned: ScannedOption
  /** The option took the next token as its argument. */
  consumedNextToken: boolean
}

function scannedError(message: string): LongOptionScan {
  return { scanned: { kind: 'error', message }, consumedNextToken: false }
}

/** One `--name`, `--name=value` or `--name value` (unique prefixes of names accepted). */
function scanLongOption(token: string, nextToken: string | undefined, specs: readonly DogOptionSpec[], argv0: string): LongOptionScan {
  const body = token.slice(2)
  const equals = body.indexOf('=')
  const name = equals >= 0 ? body.slice(0, equals) : body
  const inlineArgument = equals >= 0 ? body.slice(equals + 1) : undefined
  let spec = specs.find((candidate) => candidate.longName === name)
  if (spec === undefined) {
    const candidates = specs.filter((candidate) => candidate.longName.startsWith(name))
    if (candidates.length === 0) return scannedError(`${argv0}: unrecognized option '--${body}'`)
    if (candidates.length > 1) {
      const possibilities = candidates.map((candidate) => ` '--${candidate.longName}'`).join('')
      return scannedError(`${argv0}: option '--${body}' is ambiguous; possibilities:${possibilities}`)
    }
    spec = candidates[0] as DogOptionSpec
  }
  if (!spec.takesArgument) {
    if (inlineArgument !== undefined) return scannedError(`${argv0}: option '--${spec.longName}' doesn't allow an argument`)
    return { scanned: { kind: 'option', spec, argument: '' }, consumedNextToken: false }
  }
  if (inlineArgument !== undefined) return { scanned: { kind: 'option', spec, argument: inlineArgument }, consumedNextToken: false }
  if (nextToken !== undefined) return { scanned: { kind: 'option', spec, argument: nextToken }, consumedNextToken: true }
  return scannedError(`${argv0}: option '--${spec.longName}' requires an argument`)
}

/** Splits tokens into options (with arguments) and positional arguments; stops at the first error. */
function scanOptions(tokens: readonly string[], specs: readonly DogOptionSpec[], argv0: string): ScanResult {
  const options: ScannedOption[] = []
  const positional: string[] = []
  for (let position = 0; position < tokens.length; position++) {
    const token = tokens[position] as string
    if (token === '--') {
      positional.push(...tokens.slice(position + 1))
      break
    }
    if (token.startsWith('--')) {
      const { scanned, consumedNextToken } = scanLongOption(token, tokens[position + 1], specs, argv0)
      options.push(scanned)
      if (scanned.kind === 'error') return { options, positional }
      if (consumedNextToken) position++
      continue
    }
    if (!token.startsWith('-') || token === '-') {
      positional.push(token)
      continue
    }
    for (let letterPosition = 1; letterPosition < token.length; letterPosition++) {
      const letter = token[letterPosition] as string
      const spec = specs.find((candidate) => candidate.letter === letter)
      if (spec === undefined) {
        options.push({ kind: 'error', message: `${argv0}: invalid option -- '${letter}'` })
        return { options, positional }
      }
      if (!spec.takesArgument) {
        options.push({ kind: 'option', spec, argument: '' })
        continue
      }
      const attached = token.slice(letterPosition + 1)
      if (attached !== '') {
        options.push({ kind: 'option', spec, argument: attached })
      } else if (position + 1 < tokens.length) {
        position++
        options.push({ kind: 'option', spec, argument: tokens[position] as string })
      } else {
        options.push({ kind: 'error', message: `${argv0}: option requires an argument -- '${letter}'` })
        return { options, positional }
      }
      break
    }
  }
  return { options, positional }
}

// ---------------------------------------------------------------------------
// Address, port and the argument log

function parsePort(text: string): number | undefined {
  if (!/^\d+$/.test(text)) return undefined
  const port = Number(text)
  return port >= 1 && port <= 65535 ? port : undefined
}

async function defaultResolveHost(host: string): Promise<string | undefined> {
  try {
    return (await lookup(host, { order: 'ipv4first' })).address
  } catch {
    return undefined
  }
}

/** Numeric forms the resolver would take (inet_aton: `1.2.3`, `0x7f.1`) but that are no IP address. */
const NUMERIC_NON_ADDRESS = /^(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+))*\.?$/i

/** An IPv4/IPv6 literal as is, or a resolvable host name's address (IPv4 preferred). */
async function resolveDaemonAddress(text: string, services: OptionServices): Promise<string | undefined> {
  if (isIP(text) !== 0) return text
  if (text === '' || /\s/.test(text) || NUMERIC_NON_ADDRESS.test(text)) return undefined
  return services.resolveHost(text)
}

const STRERROR_TEXTS: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EROFS: 'Read-only file system',
  ENOSPC: 'No space left on device',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
}

function strerrorOf(error: unknown): string {
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string') return STRERROR_TEXTS[code] ?? code
  return String(error)
}

/**
 * SHEEPDOG_DOG_LOG: log the invocation's arguments (argv[0] included, each
 * preceded by a space) to SHEEPDOG_DOG_LOG_PATH as `<%Y %b %2d %H:%M:%S >: <args>`,
 * or to syslog (facility user, ident `sheepdog admin operation`) via logger(1).
 */
async function logDogOperation(argv: readonly string[], io: DogIo, nowSeconds: () => number): Promise<void> {
  if (io.env.SHEEPDOG_DOG_LOG === undefined) return
  const message = [io.argv0 ?? DOG_PROGRAM_NAME, ...argv].map((argument) => ` ${argument}`).join('')
  const logPath = io.env.SHEEPDOG_DOG_LOG_PATH
  if (logPath !== undefined) {
    try {
      await appendFile(logPath, `${formatDogLogTime(nowSeconds())}: ${message}\n`, { mode: 0o600 })
    } catch (error) {
      io.stderr.write(`error at opening log file of dog(${logPath}): ${strerrorOf(error)}\n`)
    }
    return
  }
  try {
    const logger = spawn('logger', ['-i', '-t', 'sheepdog admin operation', '-p', 'user.info', '--', message], {
      stdio: 'ignore',
      detached: true,
    })
    logger.on('error', () => undefined)
    logger.unref()
  } catch {
    // syslog is best effort, as in the original
  }
}

// ---------------------------------------------------------------------------
// The dispatcher

function normalizeExitStatus(code: number): number {
  return ((Math.trunc(code) % 256) + 256) % 256
}

/**
 * Runs one dog invocation. `argv` is what follows the program name
 * (process.argv.slice(2)). Returns the exit status (0..255). Everything is
 * written to io.stdout / io.stderr.
 */
export async function runDog(argv: readonly string[], commands: readonly DogCommand[], io: DogIo, options: RunDogOptions = {}): Promise<number> {
  const startedAt = performance.now()
  const nowSeconds = options.nowSeconds ?? (() => Date.now() / 1000)
  const services: OptionServices = { resolveHost: options.resolveHost ?? defaultResolveHost }
  const printStdout = (text: string | Uint8Array): void => {
    io.stdout.write(text)
  }
  const printStderrLine = (message: string): void => {
    io.stderr.write(`${message}\n`)
  }

  await logDogOperation(argv, io, nowSeconds)

  const commandToken = argv[0]
  if (commandToken === undefined) {
    printStdout(mainUsageText(commands, options.version))
    return EXIT_SUCCESS
  }
  const command = findByNameOrPrefix(commands, commandToken)
  if (command === undefined) {
    if (HELP_TOKENS.has(commandToken)) {
      printStdout(mainUsageText(commands, options.version))
      return EXIT_SUCCESS
    }
    printStderrLine(`Invalid command '${commandToken}'`)
    printStderrLine(`Try '${DOG_PROGRAM_NAME} --help' for more information.`)
    return EXIT_USAGE
  }

  const subcommandToken = argv[1]
  const firstLevel = subcommandToken === undefined ? undefined : findByNameOrPrefix(command.subcommands, subcommandToken)
  if (firstLevel === undefined) {
    if (subcommandToken !== undefined && !HELP_TOKENS.has(subcommandToken)) {
      printStderrLine(`Invalid command '${commandToken} ${subcommandToken}'`)
    }
    printStderrLine(`Available ${command.name} commands:`)
    for (const subcommand of command.subcommands) printStderrLine(`  ${command.name} ${subcommand.name}`)
    return EXIT_USAGE
  }

  const opts: DogOptions = { address: DEFAULT_DOG_ADDRESS, port: DEFAULT_DOG_PORT, raw: false, verbose: false, time: false }
  const addressFromEnv = io.env.SHEEPDOG_DOG_ADDR
  if (addressFromEnv !== undefined) {
    const address = await resolveDaemonAddress(addressFromEnv, services)
    if (address === undefined) {
      printStderrLine(`Invalid ip address ${addressFromEnv}`)
      return EXIT_FAILURE
    }
    opts.address = address
  }
  const portFromEnv = io.env.SHEEPDOG_DOG_PORT
  if (portFromEnv !== undefined) {
    const port = parsePort(portFromEnv)
    if (port === undefined) {
      printStderrLine(`Invalid port number '${portFromEnv}'`)
      return EXIT_USAGE
    }
    opts.port = port
  }

  const optionSpecs = optionLettersOf(firstLevel).map((letter) => findOptionSpec(command, letter))
  const scanned = scanOptions(argv.slice(2), optionSpecs, io.argv0 ?? DOG_PROGRAM_NAME)
  for (const item of scanned.options) {
    if (item.kind === 'error') {
      printStderrLine(item.message)
      printStderrLine(`Try '${DOG_PROGRAM_NAME} --help' for more information.`)
      return EXIT_USAGE
    }
    if (item.spec.showsUsage) {
      printStdout(subcommandUsageText(command, [firstLevel]))
      return EXIT_SUCCESS
    }
    const rejection = await item.spec.apply?.(opts, item.argument, services)
    if (rejection !== undefined) {
      for (const message of rejection.messages) printStderrLine(message)
      return rejection.exitCode
    }
  }

  const ctx: DogContext = {
    command,
    path: [firstLevel],
    args: [...scanned.positional],
    opts,
    io,
    highlight: (io.stdoutIsTty ?? false) && !opts.raw,
    columns: io.columns ?? 80,
    state: {},
    printStdout,
    printStderrLine,
  }
  const printUsage = (): void => printStdout(subcommandUsageText(command, ctx.path))

  let level = firstLevel
  for (;;) {
    if (level.needsNodeList && options.loadNodeList !== undefined) {
      const status = await options.loadNodeList(ctx)
      if (status !== undefined && status !== EXIT_SUCCESS) return normalizeExitStatus(status)
    }
    const nested = level.subcommands
    if (nested === undefined) break
    let next: DogSubcommand | undefined
    if (ctx.args.length === 0) {
      next = level.defaultSubcommand === undefined ? undefined : nested.find((entry) => entry.name === level.defaultSubcommand)
      if (next === undefined) {
        printUsage()
        return EXIT_USAGE
      }
    } else {
      next = findByNameOrPrefix(nested, ctx.args[0] as string)
      if (next === undefined) {
        printUsage()
        return EXIT_UNKNOWN_NESTED_SUBCOMMAND
      }
      ctx.args.shift()
    }
    ctx.path.push(next)
    level = next
  }

  if (ctx.args.length < (level.minArgs ?? 0)) {
    printUsage()
    return EXIT_USAGE
  }
  const handler = level.handler
  if (handler === undefined) throw new Error(`dog ${command.name} ${ctx.path.map((entry) => entry.name).join(' ')}: no handler`)

  let status: number
  try {
    status = await handler(ctx)
  } catch (error) {
    if (error instanceof DogExit) return normalizeExitStatus(error.exitCode)
    if (!(error instanceof UsageError)) throw error
    for (const message of error.messages) printStderrLine(message)
    status = EXIT_USAGE
  }
  if (status === EXIT_USAGE) {
    printUsage()
    return EXIT_USAGE
  }
  if (opts.time) {
    const elapsedSeconds = (performance.now() - startedAt) / 1000
    printStdout(`\nElapsed time: ${formatFixed(elapsedSeconds, 3)} seconds\n`)
  }
  return normalizeExitStatus(status)
}

// ---------------------------------------------------------------------------
// Argument parsers (spec §2.3)

const SIZE_SUFFIX_POWERS: Readonly<Record<string, number>> = {
  '': 0,
  B: 0,
  b: 0,
  K: 1,
  k: 1,
  M: 2,
  m: 2,
  G: 3,
  g: 3,
  T: 4,
  t: 4,
  P: 5,
  p: 5,
}

const SIZE_PATTERN = /^\s*\+?((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([BbKkMmGgTtPp]?)$/

/**
 * A size argument: a decimal number (fractions and exponents allowed) with at
 * most one suffix letter B/b K/k M/m G/g T/t P/p (×1, ×2^10 … ×2^50),
 * truncated to whole bytes. Undefined when invalid or ≥ 2^64.
 */
export function parseSize(text: string): bigint | undefined {
  const match = SIZE_PATTERN.exec(text)
  if (match === null) return undefined
  let size = Number.parseFloat(match[1] as string)
  const power = SIZE_SUFFIX_POWERS[match[2] as string] ?? 0
  for (let step = 0; step < power; step++) size *= 1024
  if (!Number.isFinite(size) || size >= 2 ** 64) return undefined
  return BigInt(Math.trunc(size))
}

/** The stderr lines for an invalid size argument. */
export function invalidSizeMessages(text: string): string[] {
  return [`Invalid size '${text}'`, 'You may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.']
}

/** parseSize for a handler: an invalid size throws UsageError with the spec's two stderr lines. */
export function requireSize(text: string): bigint {
  const size = parseSize(text)
  if (size === undefined) throw new UsageError(...invalidSizeMessages(text))
  return size
}

export const SD_MAX_COPIES = 31
const ERASURE_DATA_STRIPS = new Set([2, 4, 8, 16])
const ERASURE_MAX_PARITY_STRIPS = 15

/** `N` (1..31 full copies) or `D:P` (D ∈ {2,4,8,16}, 1 ≤ P ≤ 15); undefined when invalid. */
export function parseRedundancy(text: string): Redundancy | undefined {
  const match = /^(\d+)(?::(\d+))?$/.exec(text)
  if (match === null) return undefined
  const first = Number(match[1])
  if (match[2] === undefined) {
    return first >= 1 && first <= SD_MAX_COPIES ? { copies: first, copyPolicy: 0 } : undefined
  }
  const parity = Number(match[2])
  if (!ERASURE_DATA_STRIPS.has(first) || parity < 1 || parity > ERASURE_MAX_PARITY_STRIPS) return undefined
  return { copies: first + parity, copyPolicy: ((first / 2) << 4) + parity, dataStrips: first, parityStrips: parity }
}

/** The stderr lines for an invalid -c value (then exit 1). */
export function invalidRedundancyMessages(text: string): string[] {
  return [
    `Invalid parameter ${text}`,
    'To create replicated vdi, set -c x',
    `  x(1 to ${SD_MAX_COPIES})   - number of replicated copies`,
    'To create erasure coded vdi, set -c x:y',
    '  x(2,4,8,16)  - number of data strips',
    '  y(1 to 15)   - number of parity strips',
  ]
}

/** The redundancy as `vdi list` / `cluster info` print it: `N` or `D:P`. */
export function formatRedundancy(copies: number, copyPolicy: number): string {
  if (copyPolicy === 0) return String(copies)
  const dataStrips = (copyPolicy >> 4) * 2
  const parityStrips = copyPolicy & 0x0f
  return `${dataStrips}:${parityStrips}`
}

/**
 * `-s` / `-F`: text that is wholly a decimal integer is a snapshot id,
 * anything else a tag. Undefined for an id that is not in 1..2^32−1.
 */
export function parseSnapshotSelector(text: string): SnapshotSelector | undefined {
  if (!/^\s*[-+]?\d+$/.test(text)) return { tag: text }
  const snapid = Number(text.trim())
  return snapid >= 1 && snapid <= 0xffffffff ? { snapid } : undefined
}

/** The snapshot id a selector names, 0 for a tag or none (as sent in requests). */
export function snapshotIdOf(selector: SnapshotSelector | undefined): number {
  return selector !== undefined && 'snapid' in selector ? selector.snapid : 0
}

/** The tag a selector names, '' for an id or none. */
export function snapshotTagOf(selector: SnapshotSelector | undefined): string {
  return selector !== undefined && 'tag' in selector ? selector.tag : ''
}

/** C strtol(text, &end, base) over 64 bits; undefined when no digits were read. Trailing text is ignored. */
function parseCLong(text: string, base: 10 | 16): bigint | undefined {
  const digitClass = base === 16 ? '[0-9a-fA-F]' : '[0-9]'
  const prefix = base === 16 ? '(?:0[xX](?=[0-9a-fA-F]))?' : ''
  const match = new RegExp(`^\\s*([-+]?)${prefix}(${digitClass}+)`).exec(text)
  if (match === null) return undefined
  let value = BigInt(`${base === 16 ? '0x' : ''}${match[2]}`)
  if (match[1] === '-') value = -value
  const longMax = (1n << 63n) - 1n
  const longMin = -(1n << 63n)
  return value > longMax ? longMax : value < longMin ? longMin : value
}

/** C atoi(): the leading integer, 0 when there is none. */
function parseCInt(text: string): number {
  const value = parseCLong(text, 10)
  return value === undefined ? 0 : Number(BigInt.asIntN(32, value))
}

/**
 * `-i`: decimal, or hexadecimal after a leading `0x` (strtol: leading space
 * and sign accepted, trailing text ignored). Undefined when there are no digits.
 */
export function parseIndex(text: string): bigint | undefined {
  const value = text.startsWith('0x') ? parseCLong(text, 16) : parseCLong(text, 10)
  return value === undefined ? undefined : BigInt.asUintN(64, value)
}

/** `-o`: an object id in hex, `0x` optional (strtoull). Undefined when there are no digits. */
export function parseOid(text: string): bigint | undefined {
  const match = /^\s*([-+]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)/.exec(text)
  if (match === null) return undefined
  let value = BigInt(`0x${match[2]}`)
  if (value >= 1n << 64n) value = (1n << 64n) - 1n
  return match[1] === '-' ? BigInt.asUintN(64, -value) : value
}

export const MIN_BLOCK_SIZE_SHIFT = 20
export const MAX_BLOCK_SIZE_SHIFT = 31

/** `-z`: the number as atoi() reads it (range checked by blockSizeShiftProblem). */
export function parseBlockSizeShift(text: string): number {
  return parseCInt(text)
}

/** The stderr line for a block_size_shift outside 20..31, else undefined. */
export function blockSizeShiftProblem(shift: number): string | undefined {
  if (shift > MAX_BLOCK_SIZE_SHIFT || shift < 0) {
    return 'Object Size is limited to 2^31. Please set shift bit lower than 31'
  }
  if (shift < MIN_BLOCK_SIZE_SHIFT) {
    return 'Object Size is larger than 2^20. Please set shift bit larger than 20'
  }
  return undefined
}

// ---------------------------------------------------------------------------
// Confirmation prompt (spec §2.5)

/**
 * Reads one line as C fgets(buffer, maxBytes + 1) does: up to and including
 * a newline, at most maxBytes bytes. Null at end of input. Unread input is
 * pushed back, and the stream is paused afterwards.
 */
export function readInputLine(stream: NodeJS.ReadableStream, maxBytes: number): Promise<string | null> {
  const readable = stream as NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean }
  if (readable.readableEnded || readable.destroyed) return Promise.resolve(null)
  return new Promise((resolve) => {
    let collected = Buffer.alloc(0)
    const finish = (line: string | null, rest?: Buffer): void => {
      stream.removeListener('data', onData)
      stream.removeListener('end', onEnd)
      stream.removeListener('error', onError)
      stream.pause()
      if (rest !== undefined && rest.length > 0) stream.unshift(rest)
      resolve(line)
    }
    const onData = (chunk: Buffer | string): void => {
      collected = Buffer.concat([collected, typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk])
      const newline = collected.indexOf(0x0a)
      let lineLength = -1
      if (newline >= 0) lineLength = Math.min(newline + 1, maxBytes)
      else if (collected.length >= maxBytes) lineLength = maxBytes
      if (lineLength >= 0) finish(collected.subarray(0, lineLength).toString('latin1'), collected.subarray(lineLength))
    }
    const onEnd = (): void => finish(collected.length > 0 ? collected.toString('latin1') : null)
    const onError = (): void => finish(null)
    stream.on('data', onData)
    stream.on('end', onEnd)
    stream.on('error', onError)
    stream.resume()
  })
}

/**
 * Prints `prompt` (no newline added) to stdout and reads one answer line of
 * at most 7 characters from stdin: true only if it starts with `yes`, any
 * case. End of input (or no stdin) means no. A handler returns EXIT_SUCCESS
 * when this is false.
 */
export async function confirm(prompt: string, io: Pick<DogIo, 'stdout' | 'stdin'>): Promise<boolean> {
  io.stdout.write(prompt)
  if (io.stdin === undefined) return false
  const answer = await readInputLine(io.stdin, 7)
  return answer !== null && answer.slice(0, 3).toLowerCase() === 'yes'
}
