// The vocabulary every part of dog's command line shares: exit codes, the parsed options, the
// shape of an option table and of a command group's subcommand table, what a handler gets, and
// the two ways a handler ends dog early. Types and constants only (plus the two error classes),
// so that the group files, the parsers and the runner can all import it without a cycle.

// ---------------------------------------------------------------------------
// Exit codes (spec cli-and-formats §2.7)

export const EXIT_SUCCESS = 0
export const EXIT_FAILURE = 1
export const EXIT_SYSFAIL = 2
export const EXIT_EXISTS = 3
export const EXIT_FULL = 4
export const EXIT_MISSING = 5
export const EXIT_USAGE = 64

export const DOG_PROGRAM_NAME = 'dog'

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
 * others only when their letter was given (groups reuse letters with
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
  force?: boolean // -f (vdi, node, cluster)
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
}

// ---------------------------------------------------------------------------
// Option tables

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

/** One option letter of a command group (or a global one). */
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
   * Moves a VDI's bytes through dog (`vdi read`, `vdi write`, backups, clones; nested ones
   * included): dog then runs with the daemons' malloc settings (main.ts).
   */
  movesData?: boolean
  /**
   * An abbreviation this subcommand owns although other names share it (`l` for `vdi list`
   * rather than `lock`): the table says so, so no prefix becomes ambiguous by accident.
   */
  shortcut?: string
}

/** A dog command group: vdi, node, cluster. */
export interface DogCommand {
  name: string
  /**
   * The group's own option letters, which its subcommands may list besides the global ones
   * (the original's per-group option table, kept beside the subcommand table).
   */
  optionTable?: readonly DogOptionSpec[]
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
