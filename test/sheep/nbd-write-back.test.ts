// The NBD export queue (sheep/nbd-write-back.ts) without a sheep: overlapping requests keep
// their order, drain waits for every write queued before it (background ones included), a failed
// background write is counted and reported, the dirty limits hold new writes back, and FLUSHes
// share the syncs that cover them.
import t from 'tap'
import { CoveringSync, ExportQueue, NBD_WRITE_BACK_MAX_WRITES } from '../../sheep/nbd-write-back.js'

/** A task that finishes when told to, recording when it ran. */
function gate(log: string[], name: string, fail = false) {
  let open: () => void = () => undefined
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  const task = async () => {
    log.push(`start ${name}`)
    await opened
    log.push(`end ${name}`)
    if (fail) throw new Error(`${name} failed`)
  }
  return { task, open: () => open() }
}

const tick = () => new Promise((r) => setImmediate(r))

t.test('overlapping requests wait; disjoint ones do not', async (t) => {
  const q = new ExportQueue(() => undefined)
  const log: string[] = []
  const w1 = gate(log, 'w1')
  const w2 = gate(log, 'w2')
  q.defer(0n, 4096, w1.task)
  q.defer(8192n, 4096, w2.task)
  const read = q.run(2048n, 4096n, false, async () => {
    log.push('read')
  })
  await tick()
  t.same(log, ['start w1', 'start w2'], 'disjoint writes run at once; the overlapping read waits')
  w1.open()
  await read
  t.same(log, ['start w1', 'start w2', 'end w1', 'read'], 'the read runs once the write it overlaps is done')
  w2.open()
  await q.drain()
  t.ok(q.idle)
})

t.test('drain waits for every write queued before it, and a failure is counted and reported', async (t) => {
  const reported: string[] = []
  const q = new ExportQueue((offset, length, error) => reported.push(`${offset}+${length}: ${(error as Error).message}`))
  const log: string[] = []
  const ok = gate(log, 'ok')
  const bad = gate(log, 'bad', true)
  q.defer(0n, 512, ok.task)
  q.defer(4096n, 512, bad.task)
  t.equal(q.pendingBytes, 1024)
  let drained = false
  const drain = q.drain().then((finished) => {
    drained = true
    return finished
  })
  const later = gate(log, 'later')
  q.defer(1n << 40n, 512, later.task)
  ok.open()
  await tick()
  t.notOk(drained, 'not drained while a write queued before it runs')
  bad.open()
  t.equal(await drain, 2, 'it covers the two writes queued before it')
  t.equal(q.failures, 1, 'the failed write is counted')
  t.same(reported, ['4096+512: bad failed'], 'and reported')
  later.open()
  t.equal(await q.drain(), 3, 'a later drain covers the third')
  t.equal(q.pendingBytes, 0)
})

t.test('the dirty limit holds new writes back until one finishes', async (t) => {
  const q = new ExportQueue(() => undefined)
  const log: string[] = []
  const gates = Array.from({ length: NBD_WRITE_BACK_MAX_WRITES }, (_, i) => gate(log, `w${i}`))
  for (const [i, g] of gates.entries()) q.defer(BigInt(i) * 4096n, 4096, g.task)
  t.notOk(q.hasRoom(), 'full at NBD_WRITE_BACK_MAX_WRITES')
  let roomy = false
  const room = q.waitForRoom().then(() => {
    roomy = true
  })
  await tick()
  t.notOk(roomy)
  gates[0].open()
  await room
  t.ok(q.hasRoom(), 'room again once a write finished')
  for (const g of gates) g.open()
  await q.drain()
})

t.test('FLUSHes join the sync under way when it covers their writes, and share one sync after it when not', async (t) => {
  const runs: Array<{ finish: () => void; fail: (e: Error) => void }> = []
  const syncs = new CoveringSync(
    () =>
      new Promise<void>((resolve, reject) => {
        runs.push({ finish: resolve, fail: reject })
      }),
  )
  const first = syncs.run(10)
  t.equal(runs.length, 1, 'the first begins a sync')
  const burst = [syncs.run(10), syncs.run(7)]
  t.equal(runs.length, 1, 'FLUSHes whose writes it covers join it')
  const later = [syncs.run(11), syncs.run(12)]
  t.equal(runs.length, 1, 'one with a write it does not cover waits for the next')
  let laterDone = false
  void Promise.all(later).then(() => {
    laterDone = true
  })
  runs[0].finish()
  await Promise.all([first, ...burst])
  await tick()
  t.equal(runs.length, 2, 'the next begins once the first is done, once for all who wait')
  t.notOk(laterDone, 'and those wait for it')
  const joined = syncs.run(12)
  runs[1].finish()
  await Promise.all([...later, joined])
  t.equal(runs.length, 2, 'a FLUSH covered by the second sync joined it')
  const failing = syncs.run(13)
  runs[2].fail(new Error('EIO'))
  await t.rejects(failing, { message: 'EIO' }, 'a failed sync fails the FLUSHes that waited for it')
  const again = syncs.run(13)
  t.equal(runs.length, 4, 'the next FLUSH begins a new one')
  runs[3].finish()
  await again
})
