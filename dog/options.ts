// What every command group's option table is built from: the global options (spec §2.1, listed
// by every subcommand and looked up before the group's), the small helpers that make a table row
// (set a flag, refuse a value), the -c and -z rows that vdi and cluster share, and the lookup of
// a subcommand's option letters in its group's table. The group tables themselves live beside
// their subcommand tables (dog/vdi.ts, dog/node.ts, dog/cluster.ts).

import { type DogCommand, type DogOptions, type DogOptionSpec, type DogSubcommand, EXIT_FAILURE, EXIT_USAGE, type OptionRejection } from './cli.js'
import { blockSizeShiftProblem, invalidRedundancyMessages, parseBlockSizeShift, parsePort, parseRedundancy, resolveDaemonAddress } from './parsers.js'

/** The row action of a flag: the option sets `field` to true. */
export function setFlag(field: keyof DogOptions): DogOptionSpec['apply'] {
  return (opts) => {
    ;(opts as unknown as Record<string, unknown>)[field] = true
    return undefined
  }
}

/** An option value refused with these stderr lines and this exit status. */
export function reject(exitCode: number, ...messages: string[]): OptionRejection {
  return { messages, exitCode }
}

/** `-c`: a redundancy level (vdi and cluster alike). */
export function applyRedundancy(opts: DogOptions, argument: string): OptionRejection | undefined {
  const redundancy = parseRedundancy(argument)
  if (redundancy === undefined) return reject(EXIT_FAILURE, ...invalidRedundancyMessages(argument))
  opts.redundancy = redundancy
  return undefined
}

/** `-z`: a block size shift in 20..31 (vdi and cluster alike). */
export function applyBlockSizeShift(opts: DogOptions, argument: string): OptionRejection | undefined {
  const shift = parseBlockSizeShift(argument)
  const problem = blockSizeShiftProblem(shift)
  if (problem !== undefined) return reject(EXIT_FAILURE, problem)
  opts.blockSizeShift = shift
  return undefined
}

/** Options every subcommand may list (spec §2.1). Looked up before the group's. */
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

/** The spec of an option letter for a command: global table first, then the group's own. */
export function findOptionSpec(command: DogCommand, letter: string): DogOptionSpec {
  const spec = GLOBAL_OPTIONS.find((option) => option.letter === letter) ?? command.optionTable?.find((option) => option.letter === letter)
  if (spec === undefined) throw new Error(`dog ${command.name}: option letter '${letter}' is in no option table`)
  return spec
}

/** The specs of the letters a first-level subcommand lists, in its (usage) order. */
export function optionSpecsOf(command: DogCommand, subcommand: DogSubcommand): DogOptionSpec[] {
  return [...(subcommand.options ?? '').replace(/\s+/g, '')].map((letter) => findOptionSpec(command, letter))
}
