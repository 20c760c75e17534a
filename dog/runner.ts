// runDog, the runner of one dog invocation over a command table: the argument log, name-prefix
// dispatch of the command and its subcommands, the daemon address and port from the environment,
// the options (getopt.ts scans, each table row applies), the node-list hook, the handler, the
// usage on misuse and the -T line, and the exit status as a process would see it (0..255).
// dog's process entry (main.ts) and sheepfs's status files both run dog through here.

import { spawn } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import { appendFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'

import { formatDogLogTime, formatFixed } from '../lib/format.js'
import { SD_DEFAULT_PORT } from '../lib/proto.js'
import {
  DOG_PROGRAM_NAME,
  type DogCommand,
  type DogContext,
  DogExit,
  type DogIo,
  type DogOptions,
  type DogSubcommand,
  EXIT_FAILURE,
  EXIT_SUCCESS,
  EXIT_USAGE,
  type OptionServices,
  UsageError,
} from './cli.js'
import { scanOptions } from './getopt.js'
import { optionSpecsOf } from './options.js'
import { parsePort, resolveDaemonAddress } from './parsers.js'
import { mainUsageText, subcommandUsageText } from './usage.js'

/**
 * Exit status for an unknown nested subcommand (`dog node log level foo`).
 * The original exits 1 there but 64 for every other misuse; this project
 * treats every misuse alike.
 */
const EXIT_UNKNOWN_NESTED_SUBCOMMAND = EXIT_USAGE

/** The daemon dog talks to unless -a or SHEEPDOG_DOG_ADDR names another. */
const DEFAULT_DOG_ADDRESS = '127.0.0.1'

/** Tokens that ask for help instead of naming a command or subcommand. */
const HELP_TOKENS = new Set(['help', '--help', '-h'])

const TRY_HELP_LINE = `Try '${DOG_PROGRAM_NAME} --help' for more information.`

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
// The argument log

/** strerror(3) texts for the errors opening the log file can meet; others print their code. */
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
// The steps of a run

/** A process exit status: what exit(code) leaves of it, 0..255. */
function normalizeExitStatus(code: number): number {
  return ((Math.trunc(code) % 256) + 256) % 256
}

async function defaultResolveHost(host: string): Promise<string | undefined> {
  try {
    return (await lookup(host, { order: 'ipv4first' })).address
  } catch {
    return undefined
  }
}

/** A step that ended the run with this status instead of producing its result. */
interface Ended {
  endStatus: number
}

function ended(endStatus: number): Ended {
  return { endStatus }
}

function hasEnded<Result extends object>(step: Result | Ended): step is Ended {
  return 'endStatus' in step
}

/** Where a run prints: the context's two printers, made before the context exists. */
type Printer = Pick<DogContext, 'printStdout' | 'printStderrLine'>

/** The first-level subcommand argv names, if it names one (nothing printed: the run reports misuse). */
export function namedSubcommand(argv: readonly string[], commands: readonly DogCommand[]): DogSubcommand | undefined {
  const command = argv[0] === undefined ? undefined : findByNameOrPrefix(commands, argv[0])
  return command === undefined || argv[1] === undefined ? undefined : findByNameOrPrefix(command.subcommands, argv[1])
}

/** The command and first-level subcommand argv names, or the main usage / the error and its status. */
function findSubcommand(
  argv: readonly string[],
  commands: readonly DogCommand[],
  version: string | undefined,
  out: Printer,
): { command: DogCommand; firstLevel: DogSubcommand } | Ended {
  const commandToken = argv[0]
  if (commandToken === undefined) {
    out.printStdout(mainUsageText(commands, version))
    return ended(EXIT_SUCCESS)
  }
  const command = findByNameOrPrefix(commands, commandToken)
  if (command === undefined) {
    if (HELP_TOKENS.has(commandToken)) {
      out.printStdout(mainUsageText(commands, version))
      return ended(EXIT_SUCCESS)
    }
    out.printStderrLine(`Invalid command '${commandToken}'`)
    out.printStderrLine(TRY_HELP_LINE)
    return ended(EXIT_USAGE)
  }
  const subcommandToken = argv[1]
  const firstLevel = subcommandToken === undefined ? undefined : findByNameOrPrefix(command.subcommands, subcommandToken)
  if (firstLevel === undefined) {
    if (subcommandToken !== undefined && !HELP_TOKENS.has(subcommandToken)) {
      out.printStderrLine(`Invalid command '${commandToken} ${subcommandToken}'`)
    }
    out.printStderrLine(`Available ${command.name} commands:`)
    for (const subcommand of command.subcommands) out.printStderrLine(`  ${command.name} ${subcommand.name}`)
    return ended(EXIT_USAGE)
  }
  return { command, firstLevel }
}

/** The options before the command line's: the defaults, then SHEEPDOG_DOG_ADDR and SHEEPDOG_DOG_PORT. */
async function environmentOptions(env: DogIo['env'], services: OptionServices, out: Printer): Promise<DogOptions | Ended> {
  const opts: DogOptions = { address: DEFAULT_DOG_ADDRESS, port: SD_DEFAULT_PORT, raw: false, verbose: false, time: false }
  const addressFromEnv = env.SHEEPDOG_DOG_ADDR
  if (addressFromEnv !== undefined) {
    const address = await resolveDaemonAddress(addressFromEnv, services)
    if (address === undefined) {
      out.printStderrLine(`Invalid ip address ${addressFromEnv}`)
      return ended(EXIT_FAILURE)
    }
    opts.address = address
  }
  const portFromEnv = env.SHEEPDOG_DOG_PORT
  if (portFromEnv !== undefined) {
    const port = parsePort(portFromEnv)
    if (port === undefined) {
      out.printStderrLine(`Invalid port number '${portFromEnv}'`)
      return ended(EXIT_USAGE)
    }
    opts.port = port
  }
  return opts
}

/**
 * Applies the options after the subcommand name to opts, in command-line order, and answers the
 * positional arguments; or ends the run on a getopt error, on -h, or on a refused value.
 */
async function applyCommandLineOptions(
  tokens: readonly string[],
  command: DogCommand,
  firstLevel: DogSubcommand,
  opts: DogOptions,
  services: OptionServices,
  argv0: string,
  out: Printer,
): Promise<{ positional: string[] } | Ended> {
  const scanned = scanOptions(tokens, optionSpecsOf(command, firstLevel), argv0)
  for (const item of scanned.options) {
    if (item.kind === 'error') {
      out.printStderrLine(item.message)
      out.printStderrLine(TRY_HELP_LINE)
      return ended(EXIT_USAGE)
    }
    if (item.spec.showsUsage) {
      out.printStdout(subcommandUsageText(command, [firstLevel]))
      return ended(EXIT_SUCCESS)
    }
    const rejection = await item.spec.apply?.(opts, item.argument, services)
    if (rejection !== undefined) {
      for (const message of rejection.messages) out.printStderrLine(message)
      return ended(rejection.exitCode)
    }
  }
  return { positional: [...scanned.positional] }
}

/**
 * Walks ctx.path down to a leaf: the node-list hook of each level that asks for it, then the
 * nested subcommand the next argument names (or the level's default). Ends the run with the
 * usage when no leaf is named or the leaf has too few arguments.
 */
async function resolveLeaf(ctx: DogContext, loadNodeList: RunDogOptions['loadNodeList']): Promise<{ leaf: DogSubcommand } | Ended> {
  let level = ctx.path[0] as DogSubcommand
  for (;;) {
    if (level.needsNodeList && loadNodeList !== undefined) {
      const status = await loadNodeList(ctx)
      if (status !== undefined && status !== EXIT_SUCCESS) return ended(normalizeExitStatus(status))
    }
    const nested = level.subcommands
    if (nested === undefined) break
    let next: DogSubcommand | undefined
    if (ctx.args.length === 0) {
      next = level.defaultSubcommand === undefined ? undefined : nested.find((entry) => entry.name === level.defaultSubcommand)
      if (next === undefined) return usageEnd(ctx, EXIT_USAGE)
    } else {
      next = findByNameOrPrefix(nested, ctx.args[0] as string)
      if (next === undefined) return usageEnd(ctx, EXIT_UNKNOWN_NESTED_SUBCOMMAND)
      ctx.args.shift()
    }
    ctx.path.push(next)
    level = next
  }
  if (ctx.args.length < (level.minArgs ?? 0)) return usageEnd(ctx, EXIT_USAGE)
  return { leaf: level }
}

/** Prints the usage of the resolved chain and ends the run with `status`. */
function usageEnd(ctx: DogContext, status: number): Ended {
  ctx.printStdout(subcommandUsageText(ctx.command, ctx.path))
  return ended(status)
}

/**
 * Runs the leaf's handler: a UsageError prints its messages and counts as EXIT_USAGE, which
 * prints the usage; a DogExit ends the run at once with its status.
 */
async function runHandler(ctx: DogContext, leaf: DogSubcommand): Promise<number | Ended> {
  const handler = leaf.handler
  if (handler === undefined) throw new Error(`dog ${ctx.command.name} ${ctx.path.map((entry) => entry.name).join(' ')}: no handler`)
  let status: number
  try {
    status = await handler(ctx)
  } catch (error) {
    if (error instanceof DogExit) return ended(normalizeExitStatus(error.exitCode))
    if (!(error instanceof UsageError)) throw error
    for (const message of error.messages) ctx.printStderrLine(message)
    status = EXIT_USAGE
  }
  if (status === EXIT_USAGE) return usageEnd(ctx, EXIT_USAGE)
  return status
}

// ---------------------------------------------------------------------------
// The runner

/**
 * Runs one dog invocation. `argv` is what follows the program name
 * (process.argv.slice(2)). Returns the exit status (0..255). Everything is
 * written to io.stdout / io.stderr.
 */
export async function runDog(argv: readonly string[], commands: readonly DogCommand[], io: DogIo, options: RunDogOptions = {}): Promise<number> {
  const startedAt = performance.now()
  const services: OptionServices = { resolveHost: options.resolveHost ?? defaultResolveHost }
  const out: Printer = {
    printStdout: (text) => {
      io.stdout.write(text)
    },
    printStderrLine: (message) => {
      io.stderr.write(`${message}\n`)
    },
  }

  await logDogOperation(argv, io, options.nowSeconds ?? (() => Date.now() / 1000))

  const found = findSubcommand(argv, commands, options.version, out)
  if (hasEnded(found)) return found.endStatus
  const { command, firstLevel } = found
  const opts = await environmentOptions(io.env, services, out)
  if (hasEnded(opts)) return opts.endStatus
  const applied = await applyCommandLineOptions(argv.slice(2), command, firstLevel, opts, services, io.argv0 ?? DOG_PROGRAM_NAME, out)
  if (hasEnded(applied)) return applied.endStatus

  const ctx: DogContext = {
    command,
    path: [firstLevel],
    args: applied.positional,
    opts,
    io,
    highlight: (io.stdoutIsTty ?? false) && !opts.raw,
    columns: io.columns ?? 80,
    state: {},
    ...out,
  }
  const resolved = await resolveLeaf(ctx, options.loadNodeList)
  if (hasEnded(resolved)) return resolved.endStatus
  const status = await runHandler(ctx, resolved.leaf)
  if (typeof status !== 'number') return status.endStatus
  if (opts.time) {
    const elapsedSeconds = (performance.now() - startedAt) / 1000
    out.printStdout(`\nElapsed time: ${formatFixed(elapsedSeconds, 3)} seconds\n`)
  }
  return normalizeExitStatus(status)
}
