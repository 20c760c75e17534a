// The concurrency primitives of lib/async.ts: deferred, KeyedQueue (per-key order, failures do
// not block, keys go when idle, work queued synchronously), GroupRun (callers during a run share
// the next one, which starts after it).
import t from 'tap'
import { type Deferred, GroupRun, KeyedQueue, deferred, PendingTable } from '../../lib/async.js'

const tick = () => new Promise((r) => setImmediate(r))

t.test('deferred resolves when told', async (t) => {
  const d = deferred<number>()
  let got = 0
  void d.promise.then((v) => {
    got = v
  })
  await tick()
  t.equal(got, 0)
  d.resolve(7)
  await tick()
  t.equal(got, 7)
})

t.test('KeyedQueue: one key in order, keys in parallel, failures do not block, idle keys go', async (t) => {
  const q = new KeyedQueue<string>()
  const log: string[] = []
  const gateA = deferred()
  const a1 = q.run('a', async () => {
    await gateA.promise
    log.push('a1')
  })
  const a2 = q.run('a', async () => {
    log.push('a2')
    throw new Error('boom')
  })
  const a3 = q.run('a', async () => {
    log.push('a3')
    return 3
  })
  const b1 = q.run('b', async () => {
    log.push('b1')
  })
  await b1
  await tick()
  t.same(log, ['b1'], 'another key does not wait')
  t.equal(q.size, 1, 'only the busy key is held')
  gateA.resolve()
  await a1
  await t.rejects(a2, /boom/, 'a failure is the caller’s')
  t.equal(await a3, 3, 'work behind a failure still runs')
  t.same(log, ['b1', 'a1', 'a2', 'a3'], 'one key in the order queued')
  await tick()
  t.equal(q.size, 0, 'idle keys take no memory')
})

t.test('KeyedQueue: randomized order check against a model', async (t) => {
  const q = new KeyedQueue<number>()
  const seen = new Map<number, number[]>()
  const jobs: Array<Promise<unknown>> = []
  let seed = 42
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  for (let i = 0; i < 400; i++) {
    const key = rnd(5)
    jobs.push(
      q.run(key, async () => {
        for (let k = rnd(3); k > 0; k--) await tick()
        seen.set(key, [...(seen.get(key) ?? []), i])
      }),
    )
  }
  await Promise.all(jobs)
  for (const [key, order] of seen)
    t.same(
      order,
      [...order].sort((x, y) => x - y),
      `key ${key} ran in queue order`,
    )
})

t.test('GroupRun: callers during a run share the next one', async (t) => {
  let runs = 0
  const gates: Deferred[] = []
  const group = new GroupRun(async () => {
    runs++
    const g = deferred()
    gates.push(g)
    await g.promise
  })
  const first = group.run()
  const second = group.run()
  const third = group.run()
  t.equal(second, third, 'callers during a run share one promise')
  t.equal(runs, 1)
  gates[0].resolve()
  await first
  await tick()
  t.equal(runs, 2, 'the next run starts after the first')
  gates[1].resolve()
  await second
  t.equal(runs, 2, 'and serves every caller that waited')
})

t.test('PendingTable: each waiter is answered or failed once, by key', async (t) => {
  const table = new PendingTable<string, number>()
  const a = table.wait('a')
  const b = table.wait('b')
  t.equal(table.size, 2)
  t.throws(() => table.wait('a'), /two waiters for a/, 'one waiter per key')
  t.ok(table.settle('a', 1))
  t.notOk(table.settle('a', 2), 'a second answer finds nobody')
  t.equal(await a, 1)
  t.ok(table.fail('b', 'gone'))
  await t.rejects(b, /gone/, 'a failure is an Error')
  const c = table.wait('c')
  const d = table.wait('d')
  table.failAll(new Error('leaving'))
  await t.rejects(c, /leaving/)
  await t.rejects(d, /leaving/)
  t.equal(table.size, 0)
  t.notOk(table.fail('zzz', 'x'), 'failing a key nobody waits for does nothing')
})

t.test('KeyedQueue.settled: waits for the work of every key queued so far', async (t) => {
  const queue = new KeyedQueue<string>()
  const gate = deferred()
  const done: string[] = []
  void queue.run('a', async () => {
    await gate.promise
    done.push('a')
  })
  void queue.run('b', async () => {
    done.push('b')
  })
  let settled = false
  const waiting = queue.settled().then(() => {
    settled = true
  })
  await tick()
  t.notOk(settled, 'not while a is still running')
  void queue.run('c', async () => {
    await new Promise((r) => setTimeout(r, 50))
    done.push('c')
  })
  gate.resolve()
  await waiting
  t.same(done, ['b', 'a'], 'a and b done; c, queued later, is not waited for')
  await queue.settled()
  t.same(done, ['b', 'a', 'c'])
})

t.test('KeyedQueue.busy: true while a key has work queued or running, false once its caller resumes', async (t) => {
  const q = new KeyedQueue<string>()
  let release = (): void => undefined
  const first = q.run('a', () => new Promise<void>((r) => (release = r)))
  const second = q.run('a', async () => undefined)
  t.ok(q.busy('a'), 'running and queued')
  t.notOk(q.busy('b'), 'another key is idle')
  // the first work starts on a later tick
  await new Promise((r) => setImmediate(r))
  release()
  await first
  t.ok(q.busy('a'), 'the second is still queued')
  await second
  t.notOk(q.busy('a'), 'idle as soon as the last caller resumes')
})
