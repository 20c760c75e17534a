// Unit tests of the `vdi tree` drawing (cli-and-formats §4.8): first children continue their
// parent's line, later ones start a new line indented under it with `|` where an ancestor still has
// siblings to come; a VDI hangs under its parent only when the names match; bold working VDIs.
import t from 'tap'
import { drawVdiForest, type VdiTreeEntry } from '../../dog/vdi-tree.js'

const DATE = '[2024-01-02 03:04]'
const HERE = '(you are here)'

function entry(name: string, vid: number, parentVid: number, label = DATE): VdiTreeEntry {
  return { name, label, vid, parentVid, highlight: label === HERE }
}

t.test('a chain of snapshots is one line', async (t) => {
  const chain = [entry('test', 1, 0), entry('test', 2, 1), entry('test', 3, 2), entry('test', 4, 3, HERE)]
  t.equal(drawVdiForest(chain, false), `test---${DATE}---${DATE}---${DATE}---${HERE}\n`)
})

t.test('the spec example: a second branch is indented under the first', async (t) => {
  const forest = [entry('test2', 10, 0), entry('test2', 11, 10), entry('test2', 12, 10), entry('test2', 13, 12, HERE)]
  t.equal(drawVdiForest(forest, false), `test2---${DATE}-+-${DATE}\n${' '.repeat(27)}\`-${DATE}---${HERE}\n`)
})

t.test('deeper branches draw | for ancestors with siblings still to come', async (t) => {
  // t: A → (B → (D, E), C)
  const forest = [entry('t', 1, 0, '[A]'), entry('t', 2, 1, '[B]'), entry('t', 3, 1, '[C]'), entry('t', 4, 2, '[D]'), entry('t', 5, 2, '[E]')]
  t.equal(drawVdiForest(forest, false), ['t---[A]-+-[B]-+-[D]', '        |     `-[E]', '        `-[C]', ''].join('\n'))
  // three children: the middle one gets |-
  const wide = [entry('w', 1, 0, '[A]'), entry('w', 2, 1, '[B]'), entry('w', 3, 1, '[C]'), entry('w', 4, 1, '[D]')]
  t.equal(drawVdiForest(wide, false), 'w---[A]-+-[B]\n        |-[C]\n        `-[D]\n')
})

t.test('clones and orphans start trees of their own', async (t) => {
  const forest = [entry('base', 1, 0), entry('base', 2, 1, HERE), entry('copy', 3, 1, HERE), entry('lone', 5, 4, HERE)]
  t.equal(drawVdiForest(forest, false), `base---${DATE}---${HERE}\ncopy---${HERE}\nlone---${HERE}\n`)
})

t.test('a parent with a higher vid (vid wrap-around) still takes its child', async (t) => {
  const forest = [entry('wrap', 2, 0xfffffe, HERE), entry('wrap', 0xfffffe, 0)]
  t.equal(drawVdiForest(forest, false), `wrap---${DATE}---${HERE}\n`)
})

t.test('working VDIs in bold on a terminal', async (t) => {
  const forest = [entry('b', 1, 0), entry('b', 2, 1, HERE)]
  t.equal(drawVdiForest(forest, true), `b---${DATE}---\x1b[1m${HERE}\x1b[0m\n`)
})
