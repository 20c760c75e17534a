// The order cluster events are applied in (sheep/event-order.ts): synchronous events at once,
// an event that awaits holding back every later one until it is done, failures reported without
// stopping the queue — the rule whose absence left a node formatting while it applied the next
// joins (its epoch went back to 1).
import t from 'tap'
import { EventOrder } from '../../sheep/event-order.js'

const tick = () => new Promise((r) => setImmediate(r))

t.test('a synchronous event with nothing pending is applied in the caller turn', async (t) => {
  const order = new EventOrder(() => t.fail('no failure'))
  const seen: string[] = []
  order.apply('a', () => void seen.push('a'))
  order.apply('b', () => void seen.push('b'))
  t.same(seen, ['a', 'b'])
  t.equal(order.pending, 0)
})

t.test('an event that awaits holds back the later ones, synchronous or not, in order', async (t) => {
  const order = new EventOrder(() => t.fail('no failure'))
  const seen: string[] = []
  let finishFormat!: () => void
  order.apply('format', async () => {
    seen.push('format starts')
    await new Promise<void>((r) => {
      finishFormat = r
    })
    seen.push('format ends')
  })
  order.apply('join', () => void seen.push('join'))
  order.apply('purge', async () => {
    await tick()
    seen.push('purge')
  })
  order.apply('leave', () => void seen.push('leave'))
  await tick()
  t.same(seen, ['format starts'], 'nothing after the format runs while it awaits')
  t.equal(order.pending, 4)
  finishFormat()
  await order.settled()
  t.same(seen, ['format starts', 'format ends', 'join', 'purge', 'leave'])
  t.equal(order.pending, 0)
  order.apply('next', () => void seen.push('next'))
  t.equal(seen.at(-1), 'next', 'applied at once again once the queue is empty')
})

t.test('a failing event is reported and the events after it still run', async (t) => {
  const failures: string[] = []
  const order = new EventOrder((what, e) => failures.push(`${what}: ${(e as Error).message}`))
  const seen: string[] = []
  order.apply('throws at once', () => {
    throw new Error('sync')
  })
  order.apply('rejects', async () => {
    await tick()
    throw new Error('async')
  })
  order.apply('after', () => void seen.push('after'))
  await order.settled()
  t.same(failures, ['throws at once: sync', 'rejects: async'])
  t.same(seen, ['after'])
  t.equal(order.pending, 0)
})
