// Option scanning as GNU getopt_long does it for the original dog, with its error texts:
// permuting (options may follow positional arguments), clustered short options (`-vr`),
// attached or separate arguments (`-z22`, `-z 22`), long options with unique-prefix matching
// and `=value`, and `--` ending the options. It only splits the tokens; what an option means
// is its table row's business (dog/options.ts and each group's table).

/** What scanning needs to know of an option table row. */
export interface GetoptOption {
  letter: string
  longName: string
  takesArgument: boolean
}

/** An option as given (argument '' for a flag), or the first error, worded as getopt words it. */
export type ScannedOption<Option extends GetoptOption> = { kind: 'option'; spec: Option; argument: string } | { kind: 'error'; message: string }

export interface ScanResult<Option extends GetoptOption> {
  /** Options and the first error, in command-line order. */
  options: ScannedOption<Option>[]
  positional: string[]
}

interface LongOptionScan<Option extends GetoptOption> {
  scanned: ScannedOption<Option>
  /** The option took the next token as its argument. */
  consumedNextToken: boolean
}

function scannedError<Option extends GetoptOption>(message: string): LongOptionScan<Option> {
  return { scanned: { kind: 'error', message }, consumedNextToken: false }
}

/** One `--name`, `--name=value` or `--name value` (unique prefixes of names accepted). */
function scanLongOption<Option extends GetoptOption>(
  token: string,
  nextToken: string | undefined,
  specs: readonly Option[],
  argv0: string,
): LongOptionScan<Option> {
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
    spec = candidates[0] as Option
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
export function scanOptions<Option extends GetoptOption>(tokens: readonly string[], specs: readonly Option[], argv0: string): ScanResult<Option> {
  const options: ScannedOption<Option>[] = []
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
