// keepBuffersInHeap (lib/malloc.ts): glibc's malloc settings of the daemons applied while a
// process runs (dog's data commands). Measured in fresh processes, since glibc's own settings
// move with what a process allocated before: buffers of 1 MiB allocated, filled and freed over
// and over cost page faults each time with the defaults, and almost none once kept in the heap.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { keepBuffersInHeap } from '../../lib/malloc.js'
import { addonFile } from '../../lib/native-addon.js'

const MALLOC_TS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/malloc.ts')
const BUILT = fs.existsSync(addonFile('storeio', 'sheepdog_storeio'))

/** Page faults per MiB of 1 MiB buffers reused in rounds, in a new process that first tunes malloc or not. */
function faultsPerMiB(tune: boolean): { applied: boolean; faultsPerMiB: number } {
  const script = `
    const { keepBuffersInHeap } = await import(${JSON.stringify(MALLOC_TS)})
    const applied = ${tune} ? keepBuffersInHeap({}) : false
    let held = []
    const round = () => { for (let i = 0; i < 32; i++) held.push(Buffer.allocUnsafeSlow(1 << 20).fill(1)); held = []; globalThis.gc() }
    round()
    const before = process.resourceUsage().minorPageFault
    for (let r = 0; r < 4; r++) round()
    console.log(JSON.stringify({ applied, faultsPerMiB: (process.resourceUsage().minorPageFault - before) / 128 }))`
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '' }
  delete env.MALLOC_MMAP_THRESHOLD_
  delete env.MALLOC_TRIM_THRESHOLD_
  const run = spawnSync(process.execPath, ['--expose-gc', '--import=tsx', '--input-type=module', '-e', script], { env, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`child exited ${run.status}: ${run.stderr}`)
  return JSON.parse(run.stdout) as { applied: boolean; faultsPerMiB: number }
}

t.test('settings the environment names are left to glibc', async (t) => {
  t.equal(keepBuffersInHeap({ MALLOC_TRIM_THRESHOLD_: '131072' }), false)
  t.equal(keepBuffersInHeap({ MALLOC_MMAP_THRESHOLD_: '131072' }), false)
})

t.test('large buffers freed and allocated again no longer fault their pages in', { skip: BUILT ? false : 'the storeio addon was not built' }, async (t) => {
  const plain = faultsPerMiB(false)
  const tuned = faultsPerMiB(true)
  t.equal(tuned.applied, true, 'glibc took both settings')
  t.ok(
    tuned.faultsPerMiB * 4 < plain.faultsPerMiB,
    `page faults per MiB: ${tuned.faultsPerMiB.toFixed(1)} kept in the heap, ${plain.faultsPerMiB.toFixed(1)} with the defaults`,
  )
})
