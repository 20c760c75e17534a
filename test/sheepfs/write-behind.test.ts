// WriteBehind on its own, against an in-memory VDI: writes are answered once buffered and sent
// by flush(true), by reaching an object boundary, by a non-contiguous write or by the age timer;
// pieces go out in order and complete; overlapping sends never run at once (the last write wins
// even when an earlier send is slow); writes wait for room beyond maxBytes; a failed background
// send is reported once, by the next write or flush(true) and never by flush(false); and a
// randomized run of writes with random send delays always leaves the VDI equal to a model.
import t from 'tap'
import { WriteBehind, type WriteBehindLimits } from '../../sheepfs/write-behind.js'
import { seededRandom } from '../helpers/random.js'

const KiB = 1024
const OBJECT_SIZE = 64 * KiB
const LIMITS: WriteBehindLimits = { maxAgeMs: 50, maxBytes: 256 * KiB }
/** For tests where the age timer must not send anything on its own. */
const NO_TIMER: WriteBehindLimits = { maxAgeMs: 60_000, maxBytes: 256 * KiB }

/** Lets pending promise callbacks and immediates run. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** Polls `cond` until it holds (at most `ms`). */
async function waitUntil(cond: () => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

/** Whether `p` has settled (after letting callbacks run). */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  p.then(
    () => {
      done = true
    },
    () => {
      done = true
    },
  )
  await settle()
  return done
}

function filled(length: number, byte: number): Buffer {
  return Buffer.alloc(length, byte)
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length)
  for (let i = 0; i < length; i++) b[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff
  return b
}

interface SendRecord {
  offset: number
  length: number
}

/**
 * An in-memory VDI behind a send function: a send lands in `store` when it completes. Sends can
 * be held (released by hand, in any order), delayed, or made to fail; overlapping sends in
 * flight at once are recorded as violations.
 */
class FakeVdi {
  readonly store: Buffer
  readonly sends: SendRecord[] = []
  readonly violations: string[] = []
  private readonly inFlight = new Set<SendRecord>()
  hold = false
  readonly held: Array<{ rec: SendRecord; release: () => void; fail: (e: Error) => void }> = []
  delay: (() => Promise<void>) | undefined
  failWhen: ((offset: number, length: number) => Error | undefined) | undefined

  constructor(size: number) {
    this.store = Buffer.alloc(size)
  }

  readonly send = async (offset: number, data: Buffer): Promise<void> => {
    const rec = { offset, length: data.length }
    for (const other of this.inFlight) {
      if (other.offset < offset + data.length && offset < other.offset + other.length) {
        this.violations.push(`[${offset}, ${offset + data.length}) sent while [${other.offset}, ${other.offset + other.length}) was in flight`)
      }
    }
    this.sends.push(rec)
    this.inFlight.add(rec)
    const copy = Buffer.from(data)
    try {
      if (this.hold) {
        await new Promise<void>((resolve, reject) => this.held.push({ rec, release: resolve, fail: reject }))
      } else if (this.delay) {
        await this.delay()
      }
      const failure = this.failWhen?.(offset, data.length)
      if (failure) throw failure
      copy.copy(this.store, offset)
    } finally {
      this.inFlight.delete(rec)
    }
  }

  /** Releases the held send started `index`-th among those still held (default: the first). */
  release(index = 0): void {
    const [h] = this.held.splice(index, 1)
    if (!h) throw new Error('nothing held')
    h.release()
  }

  releaseAll(): void {
    this.hold = false
    while (this.held.length > 0) this.release()
  }
}

t.test('limits are checked', async (t) => {
  const vdi = new FakeVdi(KiB)
  t.throws(() => new WriteBehind(vdi.send, () => OBJECT_SIZE, { maxAgeMs: 0, maxBytes: 1 }))
  t.throws(() => new WriteBehind(vdi.send, () => OBJECT_SIZE, { maxAgeMs: 1, maxBytes: 0 }))
  t.doesNotThrow(() => new WriteBehind(vdi.send, () => OBJECT_SIZE, LIMITS))
})

t.test('a write is answered before it is sent; flush(true) sends it and waits for the send', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  t.equal(wb.pending, false, 'nothing pending at first')
  const data = pattern(3000, 1)
  await wb.write(1000, data)
  t.same(vdi.sends, [], 'the write resolved without a send')
  t.equal(wb.pending, true, 'the buffered write is pending')

  vdi.hold = true
  const flushed = wb.flush(true)
  await settle()
  t.same(vdi.sends, [{ offset: 1000, length: 3000 }], 'flush sends the buffered run')
  t.equal(await isSettled(flushed), false, 'flush waits for the send to complete')
  t.equal(wb.pending, true, 'a send in flight is pending')
  t.ok(vdi.store.subarray(1000, 4000).equals(Buffer.alloc(3000)), 'not in the store before the send completes')
  vdi.releaseAll()
  await flushed
  t.equal(wb.pending, false, 'nothing pending after flush')
  t.ok(vdi.store.subarray(1000, 4000).equals(data), 'the store holds the bytes')
  await wb.flush(true)
  t.equal(vdi.sends.length, 1, 'a flush with nothing buffered sends nothing')
})

t.test('zero-length writes are ignored', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  await wb.write(100, Buffer.alloc(0))
  t.equal(wb.pending, false)
  await wb.flush(true)
  t.same(vdi.sends, [])
})

t.test('contiguous writes are coalesced; whole objects are sent as soon as the run reaches a boundary', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 8)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  const model = Buffer.alloc(vdi.store.length)
  const write = async (offset: number, data: Buffer) => {
    data.copy(model, offset)
    await wb.write(offset, data)
  }

  // four 16 KiB writes fill object 0: nothing is sent until the last one, then one piece at once
  for (let i = 0; i < 3; i++) await write(i * 16 * KiB, pattern(16 * KiB, i))
  t.same(vdi.sends, [], 'a run inside one object stays buffered')
  await write(48 * KiB, pattern(16 * KiB, 3))
  t.same(vdi.sends, [{ offset: 0, length: OBJECT_SIZE }], 'reaching the boundary sends the object without a flush or the timer')

  // a run that goes past a boundary: the part up to the boundary is sent, the rest stays
  await write(64 * KiB, pattern(40 * KiB, 4))
  await write(104 * KiB, pattern(40 * KiB, 5)) // ends at 144 KiB
  t.same(vdi.sends.slice(1), [{ offset: 64 * KiB, length: OBJECT_SIZE }], 'the whole object is sent, the tail is kept')

  // one write spanning several objects: everything up to the last boundary goes out at once
  await write(144 * KiB, pattern(200 * KiB, 6)) // ends at 344 KiB, last boundary 320 KiB
  t.same(vdi.sends.slice(2), [{ offset: 128 * KiB, length: 192 * KiB }], 'whole objects up to the last boundary are sent together')
  t.equal(wb.pending, true, 'the tail past 320 KiB is buffered')

  // a run starting inside an object that ends exactly on a later boundary is sent whole
  await wb.flush(true)
  const sendsBefore = vdi.sends.length
  await write(400 * KiB, pattern(16 * KiB, 7)) // object 6 starts at 384 KiB
  await write(416 * KiB, pattern(96 * KiB, 8)) // ends at 512 KiB, a boundary
  t.same(vdi.sends.slice(sendsBefore), [{ offset: 400 * KiB, length: 112 * KiB }], 'a run ending on a boundary is sent whole at once')

  await wb.flush(true)
  t.ok(vdi.store.equals(model), 'the store holds every byte written')

  // the contract on every piece: pieces of one run are in order and contiguous; a piece sent
  // before the flush ends on an object boundary; the tail sent by a flush lies in one object
  const flushedTail = vdi.sends[3]!
  t.same(flushedTail, { offset: 320 * KiB, length: 24 * KiB }, 'the flush sent the tail')
  t.equal(Math.floor(flushedTail.offset / OBJECT_SIZE), Math.floor((flushedTail.offset + flushedTail.length - 1) / OBJECT_SIZE), 'the tail lies in one object')
  for (const s of [vdi.sends[0]!, vdi.sends[1]!, vdi.sends[2]!, vdi.sends[4]!]) {
    t.equal((s.offset + s.length) % OBJECT_SIZE, 0, `piece [${s.offset}, ${s.offset + s.length}) sent early ends on a boundary`)
  }
  t.same(vdi.violations, [])
})

t.test('the object size is asked for each time', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  let objectSize = OBJECT_SIZE
  const wb = new WriteBehind(vdi.send, () => objectSize, NO_TIMER)
  await wb.write(0, pattern(32 * KiB, 1))
  t.same(vdi.sends, [])
  objectSize = 16 * KiB
  await wb.write(32 * KiB, pattern(8 * KiB, 2)) // ends at 40 KiB; the last 16 KiB boundary is 32 KiB
  t.same(vdi.sends, [{ offset: 0, length: 32 * KiB }])
  await wb.flush(true)
  t.same(vdi.sends[1], { offset: 32 * KiB, length: 8 * KiB })
})

t.test('a non-contiguous write sends the buffered run first', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  const a = pattern(10 * KiB, 1)
  const b = pattern(5 * KiB, 2)
  const c = pattern(1 * KiB, 3)
  await wb.write(0, a.subarray(0, 4 * KiB))
  await wb.write(4 * KiB, a.subarray(4 * KiB))
  t.same(vdi.sends, [], 'contiguous: still buffered')
  await wb.write(20 * KiB, b)
  t.same(vdi.sends, [{ offset: 0, length: 10 * KiB }], 'the earlier run went out as one piece')
  await wb.write(2 * KiB, c) // backwards
  t.same(vdi.sends.slice(1), [{ offset: 20 * KiB, length: 5 * KiB }])
  await wb.flush(true)
  t.same(vdi.sends.slice(2), [{ offset: 2 * KiB, length: 1 * KiB }])
  const model = Buffer.alloc(vdi.store.length)
  a.copy(model, 0)
  b.copy(model, 20 * KiB)
  c.copy(model, 2 * KiB)
  t.ok(vdi.store.equals(model))
})

t.test('the timer sends a buffered run after maxAgeMs without a flush', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, LIMITS)
  const data = pattern(5000, 9)
  await wb.write(777, data.subarray(0, 2000))
  await wb.write(2777, data.subarray(2000))
  t.same(vdi.sends, [], 'not sent at once')
  t.ok(await waitUntil(() => vdi.sends.length > 0 && !wb.pending), 'sent by the timer')
  t.same(vdi.sends, [{ offset: 777, length: 5000 }], 'as one piece')
  t.ok(vdi.store.subarray(777, 5777).equals(data), 'in the store')

  // the timer of a run that was sent early does not send anything again
  await wb.write(100, pattern(10, 1))
  await wb.flush(true)
  await new Promise((resolve) => setTimeout(resolve, LIMITS.maxAgeMs * 2))
  t.equal(vdi.sends.length, 2, 'no extra send after a flush')
})

t.test('the timer sends the tail left after whole objects went out', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, LIMITS)
  await wb.write(0, pattern(OBJECT_SIZE + 100, 3))
  t.same(vdi.sends, [{ offset: 0, length: OBJECT_SIZE }])
  t.ok(await waitUntil(() => vdi.sends.length === 2 && !wb.pending), 'the tail is sent by the timer')
  t.same(vdi.sends[1], { offset: OBJECT_SIZE, length: 100 })
  t.ok(vdi.store.subarray(0, OBJECT_SIZE + 100).equals(pattern(OBJECT_SIZE + 100, 3)))
})

t.test('overlapping writes land in order even when the first send is slow', async (t) => {
  t.test('same range', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    vdi.hold = true
    await wb.write(0, filled(10 * KiB, 0xaa))
    await wb.write(0, filled(10 * KiB, 0xbb)) // not contiguous: the first run is sent (and held)
    t.equal(vdi.sends.length, 1)
    vdi.hold = false // a second send would complete at once
    const flushed = wb.flush(true)
    await settle()
    t.equal(vdi.sends.length, 1, 'the overlapping send waits for the first one')
    t.equal(await isSettled(flushed), false)
    vdi.release()
    await flushed
    t.equal(vdi.sends.length, 2)
    t.ok(vdi.store.subarray(0, 10 * KiB).equals(filled(10 * KiB, 0xbb)), 'the last write wins')
    t.same(vdi.violations, [])
  })

  t.test('partial overlap, three sends, the middle one slowest', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    vdi.hold = true
    await wb.write(0, filled(8 * KiB, 1))
    await wb.write(4 * KiB, filled(8 * KiB, 2)) // [4K, 12K)
    await wb.write(10 * KiB, filled(8 * KiB, 3)) // [10K, 18K)
    await wb.write(30 * KiB, filled(1 * KiB, 4)) // disjoint: sends [10K, 18K)
    t.same(vdi.sends, [{ offset: 0, length: 8 * KiB }], 'later overlapping pieces wait for earlier ones')
    vdi.release() // [0, 8K) lands
    await settle()
    t.same(vdi.sends.slice(1), [{ offset: 4 * KiB, length: 8 * KiB }])
    const flushed = wb.flush(true)
    await settle()
    t.same(vdi.sends.slice(2), [{ offset: 30 * KiB, length: 1 * KiB }], 'a disjoint piece does not wait')
    vdi.release(1) // the disjoint one
    await settle()
    t.equal(vdi.sends.length, 3, '[10K, 18K) still waits for [4K, 12K)')
    vdi.releaseAll()
    await flushed
    const model = Buffer.alloc(vdi.store.length)
    filled(8 * KiB, 1).copy(model, 0)
    filled(8 * KiB, 2).copy(model, 4 * KiB)
    filled(8 * KiB, 3).copy(model, 10 * KiB)
    filled(1 * KiB, 4).copy(model, 30 * KiB)
    t.ok(vdi.store.equals(model))
    t.same(vdi.violations, [])
  })

  t.test('a slow first send, a fast second one, with real delays', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    let calls = 0
    vdi.delay = () => new Promise((resolve) => setTimeout(resolve, calls++ === 0 ? 40 : 0))
    await wb.write(100, filled(OBJECT_SIZE, 1))
    await wb.write(50, filled(OBJECT_SIZE, 2))
    await wb.flush(true)
    t.ok(vdi.store.subarray(50, 50 + OBJECT_SIZE).equals(filled(OBJECT_SIZE, 2)))
    t.ok(vdi.store.subarray(50 + OBJECT_SIZE, 100 + OBJECT_SIZE).equals(filled(50, 1)))
    t.same(vdi.violations, [])
  })
})

t.test('backpressure: a write waits while more than maxBytes are pending', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 16)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  vdi.hold = true
  // four whole objects in flight: exactly maxBytes, not more
  for (let i = 0; i < 4; i++) {
    const w = wb.write(i * OBJECT_SIZE, pattern(OBJECT_SIZE, i))
    t.equal(await isSettled(w), true, `write ${i} resolves (${(i + 1) * 64} KiB pending)`)
  }
  t.equal(vdi.held.length, 4)

  const fifth = wb.write(4 * OBJECT_SIZE, pattern(16 * KiB, 4))
  t.equal(await isSettled(fifth), false, 'a write past maxBytes waits (buffered bytes count too)')
  t.equal(vdi.sends.length, 4, 'it is buffered, not sent')
  vdi.release()
  await fifth
  t.pass('it resolves once a send completes and there is room')

  // a whole object more goes in flight, then the next write waits for room again
  const sixth = wb.write(4 * OBJECT_SIZE + 16 * KiB, pattern(48 * KiB, 5))
  t.equal(await isSettled(sixth), true, 'exactly maxBytes again: no wait')
  const seventh = wb.write(5 * OBJECT_SIZE, pattern(OBJECT_SIZE, 6))
  t.equal(await isSettled(seventh), false)
  vdi.release()
  t.equal(await isSettled(seventh), true)

  vdi.releaseAll()
  await wb.flush(true)
  t.equal(wb.pending, false)
  const model = Buffer.alloc(vdi.store.length)
  for (let i = 0; i < 4; i++) pattern(OBJECT_SIZE, i).copy(model, i * OBJECT_SIZE)
  pattern(16 * KiB, 4).copy(model, 4 * OBJECT_SIZE)
  pattern(48 * KiB, 5).copy(model, 4 * OBJECT_SIZE + 16 * KiB)
  pattern(OBJECT_SIZE, 6).copy(model, 5 * OBJECT_SIZE)
  t.ok(vdi.store.equals(model))
})

t.test('a failing send is reported once', async (t) => {
  const boom = new Error('replica down')

  t.test('by flush(true), not by flush(false)', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    vdi.failWhen = (offset) => (offset === 0 ? boom : undefined)
    await wb.write(0, filled(100, 1))
    await t.resolves(wb.flush(false), 'flush(false) does not report it')
    t.equal(wb.pending, false, 'the failed send is over')
    await t.resolves(wb.flush(false), 'nor does a second flush(false)')
    await t.rejects(wb.flush(true), boom, 'flush(true) reports it')
    await t.resolves(wb.flush(true), 'only once')
  })

  t.test('by the next write, which is then not taken', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    vdi.failWhen = (offset) => (offset === 0 ? boom : undefined)
    await wb.write(0, filled(100, 1))
    await wb.flush(false)
    await t.rejects(wb.write(1000, filled(10, 2)), boom, 'the next write throws it')
    t.equal(wb.pending, false, 'the rejected write was not buffered')
    await t.resolves(wb.write(2000, filled(10, 3)), 'the write after is taken')
    await t.resolves(wb.flush(true), 'and flush(true) no longer reports it')
    t.ok(vdi.store.subarray(1000, 1010).equals(Buffer.alloc(10)), 'the rejected write never landed')
    t.ok(vdi.store.subarray(2000, 2010).equals(filled(10, 3)))
  })

  t.test('a failure of a send started by the timer', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, LIMITS)
    vdi.failWhen = () => boom
    await wb.write(0, filled(100, 1))
    t.ok(await waitUntil(() => vdi.sends.length === 1 && !wb.pending))
    vdi.failWhen = undefined
    await t.rejects(wb.flush(true), boom)
    await t.resolves(wb.flush(true))
  })

  t.test('a flush(true) waiting for a send that fails', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    vdi.hold = true
    await wb.write(0, filled(100, 1))
    const flushed = wb.flush(true)
    await settle()
    vdi.held.shift()!.fail(boom)
    await t.rejects(flushed, boom)
    await t.resolves(wb.flush(true))
  })

  t.test('only the first of several failures is kept; later sends still go out', async (t) => {
    const vdi = new FakeVdi(OBJECT_SIZE * 2)
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
    const second = new Error('second')
    vdi.hold = true
    await wb.write(0, filled(100, 1))
    await wb.write(1000, filled(100, 2)) // sends [0, 100)
    await wb.write(0, filled(50, 3)) // sends [1000, 1100); [0, 50) overlaps the first send
    const flushed = wb.flush(false)
    await settle()
    t.equal(vdi.sends.length, 2, '[0, 50) waits for [0, 100)')
    vdi.held.shift()!.fail(boom)
    vdi.held.shift()!.fail(second)
    await settle()
    t.equal(vdi.sends.length, 3, 'the write after the failed one is still sent')
    vdi.releaseAll()
    await flushed
    t.ok(vdi.store.subarray(0, 50).equals(filled(50, 3)), 'and lands')
    await t.rejects(wb.flush(true), boom, 'the first failure is reported')
    await t.resolves(wb.flush(true), 'once; the second one is not kept')
  })
})

t.test('pending reflects buffered and in-flight data', async (t) => {
  const vdi = new FakeVdi(OBJECT_SIZE * 4)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  t.equal(wb.pending, false)
  vdi.hold = true
  await wb.write(0, filled(OBJECT_SIZE, 1)) // a whole object: sent at once, nothing buffered
  t.equal(vdi.sends.length, 1)
  t.equal(wb.pending, true, 'in flight')
  vdi.release()
  await settle()
  t.equal(wb.pending, false, 'done')
  await wb.write(OBJECT_SIZE, filled(10, 2))
  t.equal(wb.pending, true, 'buffered')
  const flushed = wb.flush(false)
  t.equal(wb.pending, true, 'in flight after the flush started')
  vdi.release()
  await flushed
  t.equal(wb.pending, false)
})

t.test('randomized: after flush(true) the store equals a model of every write', async (t) => {
  const SIZE = 1024 * KiB
  for (let seed = 1; seed <= 25; seed++) {
    const random = seededRandom(seed)
    const int = (n: number) => Math.floor(random() * n)
    const vdi = new FakeVdi(SIZE)
    const limits = { maxAgeMs: 5 + int(30), maxBytes: (64 + int(256)) * KiB }
    const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, limits)
    vdi.delay = () => {
      const r = random()
      if (r < 0.4) return Promise.resolve()
      if (r < 0.7) return new Promise((resolve) => setImmediate(resolve))
      return new Promise((resolve) => setTimeout(resolve, int(4)))
    }
    const model = Buffer.alloc(SIZE)
    let next = int(SIZE)
    let flushesFalse = 0
    for (let op = 0; op < 200; op++) {
      const r = random()
      if (r < 0.03) {
        await wb.flush(false)
        flushesFalse++
        continue
      }
      if (r < 0.05) {
        await new Promise((resolve) => setTimeout(resolve, int(limits.maxAgeMs * 2)))
        continue
      }
      let offset: number
      let length: number
      if (r < 0.7) {
        // continue a sequential run
        offset = next
        length = 1 + (random() < 0.5 ? int(128 * KiB) : int(8 * KiB))
      } else if (r < 0.85) {
        // overlap something recent
        offset = Math.max(0, next - int(96 * KiB))
        length = 1 + int(64 * KiB)
      } else {
        offset = int(SIZE)
        length = 1 + int(100 * KiB)
      }
      if (offset >= SIZE) offset = int(SIZE - 1)
      length = Math.min(length, SIZE - offset)
      const data = pattern(length, seed * 1000 + op)
      data.copy(model, offset)
      if (random() < 0.7) {
        await wb.write(offset, data)
      } else {
        // a write answered late by the caller: not awaited until the next op
        const w = wb.write(offset, data)
        await settle(1)
        await w
      }
      next = offset + length
    }
    await wb.flush(true)
    t.equal(wb.pending, false, `seed ${seed}: nothing pending`)
    if (!vdi.store.equals(model)) {
      let first = 0
      while (vdi.store[first] === model[first]) first++
      t.fail(`seed ${seed}: the store differs from the model first at byte ${first}`)
    } else {
      t.pass(`seed ${seed}: ${vdi.sends.length} sends (${flushesFalse} flush(false)), store equals model`)
    }
    t.same(vdi.violations, [], `seed ${seed}: no overlapping sends in flight at once`)
    for (const s of vdi.sends) {
      if (s.offset + s.length > SIZE || s.length === 0) t.fail(`seed ${seed}: bad piece ${JSON.stringify(s)}`)
    }
  }
})

t.test('a flush waits for what was pending when it started, not for later writes', async (t) => {
  // while another writer keeps the sends busy (backpressure lets it start one each time one
  // completes), a flush — a read (Volume.read flushes first), an fsync or a close by another
  // process — must still return once what was pending when it started is stored
  const vdi = new FakeVdi(OBJECT_SIZE * 128)
  const wb = new WriteBehind(vdi.send, () => OBJECT_SIZE, NO_TIMER)
  vdi.delay = () => new Promise((resolve) => setTimeout(resolve, 1))
  const WRITES = 100
  let written = 0
  let flushedAfter = -1
  for (let i = 0; i < WRITES; i++) {
    await wb.write(i * OBJECT_SIZE, filled(OBJECT_SIZE, i))
    written = i + 1
    if (i === 10)
      void wb.flush(false).then(() => {
        flushedAfter = written
      })
  }
  const whenWriterStopped = flushedAfter
  await wb.flush(true)
  await settle()
  t.not(flushedAfter, -1, 'the flush returned in the end')
  t.not(whenWriterStopped, -1, `the flush started after write 11 returned while the writer went on`)
})
