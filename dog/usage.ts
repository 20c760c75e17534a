// The usage and help texts of the original dog, byte for byte: the main usage (`dog`,
// `dog --help`), printed to stdout with status 0, and a subcommand's usage (spec §2.2), printed
// on -h and on every misuse. Both are built from the command tables, so a table row is the only
// place a subcommand, its arguments or an option is described.

import { padRight } from '../lib/format.js'
import { DOG_PROGRAM_NAME, type DogCommand, type DogSubcommand } from './cli.js'
import { optionSpecsOf } from './options.js'

/** Version shown in the title line of `dog --help` unless runDog is told otherwise. */
export const DEFAULT_DOG_VERSION = '1.0.1'

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
  const optionSpecs = optionSpecsOf(command, firstLevel)
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
