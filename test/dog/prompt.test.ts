// Tests for dog/prompt.ts: the confirmation prompt's answers and the input it leaves unread.

import { PassThrough } from 'node:stream'

import t from 'tap'

import { confirm, readInputLine } from '../../dog/prompt.js'

t.test('confirm', async (t) => {
  const ask = async (input: string, endInput: boolean) => {
    const stdin = new PassThrough()
    let stdout = ''
    const answer = confirm('Are you sure you want to continue? [yes/no]: ', {
      stdout: { write: (chunk) => (stdout += String(chunk)) },
      stdin,
    })
    if (endInput) stdin.end(input)
    else stdin.write(input)
    return { answer: await answer, stdout, stdin }
  }
  const yes = await ask('yes\n', false)
  t.equal(yes.answer, true)
  t.equal(yes.stdout, 'Are you sure you want to continue? [yes/no]: ')
  t.equal((await ask('YESSIR\n', false)).answer, true)
  t.equal((await ask('Yes', true)).answer, true, 'an unterminated last line counts')
  t.equal((await ask('no\n', false)).answer, false)
  t.equal((await ask('y\n', false)).answer, false)
  t.equal((await ask(' yes\n', false)).answer, false)
  t.equal((await ask('', true)).answer, false, 'end of input means no')
  t.equal((await ask('yessssssssss', false)).answer, true, 'at most 7 characters are read')
  t.equal(await confirm('? ', { stdout: { write: () => true } }), false, 'no stdin means no')
})

t.test('readInputLine leaves the rest of the input unread', async (t) => {
  const stdin = new PassThrough()
  stdin.end('yes\nrest of input\n')
  t.equal(await readInputLine(stdin, 7), 'yes\n')
  t.equal(await readInputLine(stdin, 7), 'rest of')
  t.equal(await readInputLine(stdin, 100), ' input\n')
  t.equal(await readInputLine(stdin, 100), null)
})
