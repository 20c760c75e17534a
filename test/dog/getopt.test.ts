// Tests for dog/getopt.ts on its own, with a small table: permutation, clusters, attached and
// separate arguments, long options by unique prefix, `--`, and getopt's error texts (the first
// error ends the scan).

import t from 'tap'

import { type GetoptOption, scanOptions } from '../../dog/getopt.js'

const TABLE: readonly GetoptOption[] = [
  { letter: 'r', longName: 'raw', takesArgument: false },
  { letter: 'v', longName: 'verbose', takesArgument: false },
  { letter: 'p', longName: 'port', takesArgument: true },
  { letter: 'P', longName: 'prealloc', takesArgument: false },
  { letter: 'z', longName: 'block_size_shift', takesArgument: true },
]

/** The scan as `letter=argument` items (or the error text) and the positional arguments. */
function scan(tokens: string[]): { options: string[]; positional: string[] } {
  const result = scanOptions(tokens, TABLE, 'dog')
  const options = result.options.map((item) => (item.kind === 'error' ? `error: ${item.message}` : `${item.spec.letter}=${item.argument}`))
  return { options, positional: result.positional }
}

t.test('options and positional arguments in any order', async (t) => {
  t.same(scan(['alpha', '-vr', 'beta', '-z22', '-p', '7001', '--', '-x']), {
    options: ['v=', 'r=', 'z=22', 'p=7001'],
    positional: ['alpha', 'beta', '-x'],
  })
  t.same(scan(['-', '-rp7002']), { options: ['r=', 'p=7002'], positional: ['-'] }, 'a lone dash is positional; an argument may end a cluster')
})

t.test('long options: exact names, unique prefixes, inline or separate arguments', async (t) => {
  t.same(scan(['--raw', '--port=7003', '--block', '23', '--ve']), { options: ['r=', 'p=7003', 'z=23', 'v='], positional: [] })
})

t.test('the first error ends the scan, worded as getopt words it', async (t) => {
  const cases: Array<[string[], string]> = [
    [['-k', '-r'], "dog: invalid option -- 'k'"],
    [['-rk'], "dog: invalid option -- 'k'"],
    [['-p'], "dog: option requires an argument -- 'p'"],
    [['--bogus=1'], "dog: unrecognized option '--bogus=1'"],
    [['--port'], "dog: option '--port' requires an argument"],
    [['--raw=yes'], "dog: option '--raw' doesn't allow an argument"],
    [['--p'], "dog: option '--p' is ambiguous; possibilities: '--port' '--prealloc'"],
  ]
  for (const [tokens, message] of cases) {
    const { options } = scan(tokens)
    t.equal(options[options.length - 1], `error: ${message}`, tokens.join(' '))
    t.equal(options.filter((item) => item.startsWith('error')).length, 1)
  }
  t.same(scan(['-rk', '-v']).options, ['r=', "error: dog: invalid option -- 'k'"], 'options before the error are kept')
})
