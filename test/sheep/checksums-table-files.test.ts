// Checksum files kept open between writes (sheep/store/table-files.ts): a write lands in the file
// under the name, also after the file was removed or replaced behind the cache's back (checked
// after idleness) or dropped; a write at a position needs an existing file; the cache keeps to
// its bound.
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FD_IDLE_RECHECK_MS } from '../../sheep/store/fd-cache.js'
import { TableFiles } from '../../sheep/store/table-files.js'
import { tempDir } from '../../harness/sheep.js'

const text = (s: string) => Buffer.from(s)

t.test('writes land in the file under the name', async (t) => {
  const dir = tempDir('table-files-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const files = new TableFiles(2)
  t.teardown(() => files.dropAll())
  const a = path.join(dir, 'a')
  t.equal(files.writeAt(a, text('x'), 0), false, 'no file: nothing written')
  t.notOk(fs.existsSync(a), 'and none created')
  files.writeWhole(a, text('hello world'))
  t.equal(files.writeAt(a, text('W'), 6), true)
  t.equal(fs.readFileSync(a, 'utf8'), 'hello World')
  files.writeWhole(a, text('bye'))
  t.equal(fs.readFileSync(a, 'utf8'), 'bye', 'a whole write truncates')

  // replaced by hand: seen once the descriptor was idle
  fs.rmSync(a)
  fs.writeFileSync(a, 'other')
  await sleep(FD_IDLE_RECHECK_MS * 2)
  t.equal(files.writeAt(a, text('O'), 0), true)
  t.equal(fs.readFileSync(a, 'utf8'), 'Other', 'the new file was written')
  fs.rmSync(a)
  await sleep(FD_IDLE_RECHECK_MS * 2)
  t.equal(files.writeAt(a, text('x'), 0), false, 'removed by hand: nothing written')

  // renamed away (as to the stale area) and dropped: the old descriptor is not used
  files.writeWhole(a, text('table'))
  fs.renameSync(a, path.join(dir, 'a.5'))
  files.drop(a)
  t.equal(files.writeAt(a, text('x'), 0), false)
  t.equal(fs.readFileSync(path.join(dir, 'a.5'), 'utf8'), 'table', 'the renamed file is untouched')

  for (const name of ['b', 'c', 'd']) files.writeWhole(path.join(dir, name), text(name))
  t.equal(files.size, 2, 'bounded')
  t.equal(files.writeAt(path.join(dir, 'b'), text('B'), 0), true, 'an evicted file is opened again')
  t.equal(fs.readFileSync(path.join(dir, 'b'), 'utf8'), 'B')
})
