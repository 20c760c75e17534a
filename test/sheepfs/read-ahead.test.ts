// ReadAhead on its own, against an in-memory volume: random reads go straight to fetch with
// their exact range; a sequential reader gets window-aligned windows fetched ahead, served
// without further fetches, their number doubling (up to windowsMax) while the reader keeps up;
// invalidate() and the age limit make changed data visible; reads spanning windows and at the
// volume's end are exact; a failed fetch fails the read that needs it and later reads recover;
// and randomized mixes of sequential, random and concurrent reads return exactly the volume's bytes.
import t, { type Test } from 'tap'
import { ReadAhead, type ReadAheadLimits } from '../../sheepfs/read-ahead.js'
import { seededBytes, seededRandom } from '../helpers/random.js'

const KiB = 1024
const WINDOW = 64 * KiB
const LIMITS: ReadAheadLimits = { windowBytes: WINDOW, windowsMax: 4, maxAgeMs: 200 }
/** For tests where windows must not go stale while they run (e.g. on a slow machine). */
const NO_AGE: ReadAheadLimits = { windowBytes: WINDOW, windowsMax: 4, maxAgeMs: 60_000 }

async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

interface FetchRecord {
  offset: number
  length: number
}

/**
 * An in-memory volume behind a fetch function. A fetch copies the bytes when it is issued
 * (what a sheep would return for a request sent then); it can be held until released by hand,
 * delayed, or made to fail.
 */
class FakeVolume {
  readonly fetches: FetchRecord[] = []
  hold = false
  readonly held: Array<{ rec: FetchRecord; release: () => void; fail: (e: Error) => void }> = []
  delay: (() => Promise<void>) | undefined
  failWhen: ((offset: number, length: number) => Error | undefined) | undefined

  constructor(public store: Buffer) {}

  get size(): number {
    return this.store.length
  }

  readonly fetch = async (offset: number, length: number): Promise<Buffer> => {
    const rec = { offset, length }
    this.fetches.push(rec)
    if (offset < 0 || length < 0 || offset + length > this.store.length) throw new Error(`fetch out of range [${offset}, ${offset + length})`)
    const data = Buffer.from(this.store.subarray(offset, offset + length))
    const failure = this.failWhen?.(offset, length)
    if (this.hold) {
      await new Promise<void>((resolve, reject) => this.held.push({ rec, release: resolve, fail: reject }))
    } else if (this.delay) {
      await this.delay()
    }
    if (failure) throw failure
    return data
  }

  releaseAll(): void {
    this.hold = false
    for (const h of this.held.splice(0)) h.release()
  }

  /** The fetches since `from`. */
  since(from: number): FetchRecord[] {
    return this.fetches.slice(from)
  }
}

/** A reader of one volume that checks every read against the store. */
function reader(t: Test, volume: FakeVolume, ahead: ReadAhead) {
  return async (offset: number, length: number, what?: string): Promise<Buffer> => {
    const expected = Buffer.from(volume.store.subarray(offset, offset + length))
    const got = await ahead.read(offset, length, volume.size)
    t.ok(got.equals(expected), what ?? `read [${offset}, ${offset + length}) returns the volume's bytes`)
    return got
  }
}

t.test('limits are checked', async (t) => {
  const volume = new FakeVolume(Buffer.alloc(10))
  t.throws(() => new ReadAhead(volume.fetch, { windowBytes: 0, windowsMax: 1, maxAgeMs: 1 }))
  t.throws(() => new ReadAhead(volume.fetch, { windowBytes: 1, windowsMax: 0, maxAgeMs: 1 }))
  t.throws(() => new ReadAhead(volume.fetch, { windowBytes: 1, windowsMax: 1, maxAgeMs: 0 }))
  t.doesNotThrow(() => new ReadAhead(volume.fetch, LIMITS))
})

t.test('non-sequential reads go straight to fetch with their exact range', async (t) => {
  const volume = new FakeVolume(seededBytes(1024 * KiB, 1))
  const ahead = new ReadAhead(volume.fetch, LIMITS)
  const read = reader(t, volume, ahead)
  await read(1000, 500)
  await read(50_000, 100)
  await read(3 * WINDOW - 10, 20) // across a window boundary
  await read(0, 1)
  await read(700 * KiB, 128 * KiB)
  t.same(volume.fetches, [
    { offset: 1000, length: 500 },
    { offset: 50_000, length: 100 },
    { offset: 3 * WINDOW - 10, length: 20 },
    { offset: 0, length: 1 },
    { offset: 700 * KiB, length: 128 * KiB },
  ])
})

t.test('a sequential reader gets window-aligned windows and reads inside them fetch nothing', async (t) => {
  const volume = new FakeVolume(seededBytes(1024 * KiB, 2))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  const read = reader(t, volume, ahead)
  const CHUNK = 16 * KiB
  await read(0, CHUNK)
  t.same(volume.fetches, [{ offset: 0, length: CHUNK }], 'the first read is not known to be sequential: fetched as is')
  await read(CHUNK, CHUNK)
  t.same(volume.since(1), [{ offset: CHUNK, length: WINDOW - CHUNK }], 'the second one gets a window up to the window boundary')
  await read(2 * CHUNK, CHUNK)
  await read(3 * CHUNK, CHUNK)
  t.equal(volume.fetches.length, 2, 'reads inside the window fetch nothing')
  for (let offset = WINDOW; offset < 512 * KiB; offset += CHUNK) await read(offset, CHUNK)
  const windows = volume.since(1)
  for (const [i, w] of windows.entries()) {
    t.equal((w.offset + w.length) % WINDOW, 0, `window ${i} ends on a window boundary`)
    if (i > 0) {
      t.equal(w.offset % WINDOW, 0, `window ${i} starts on a window boundary`)
      t.equal(w.length, WINDOW, `window ${i} is a whole window`)
      t.equal(w.offset, windows[i - 1]!.offset + windows[i - 1]!.length, `window ${i} follows the one before`)
    }
  }
  t.ok(volume.fetches.length <= 1 + 512 / 64 + 4, 'one fetch per window (and at most windowsMax ahead)')
})

t.test('a sequential read of a window or more goes straight to fetch', async (t) => {
  const volume = new FakeVolume(seededBytes(1024 * KiB, 3))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  const read = reader(t, volume, ahead)
  await read(0, WINDOW)
  await read(WINDOW, WINDOW)
  await read(2 * WINDOW, 2 * WINDOW)
  t.same(volume.fetches, [
    { offset: 0, length: WINDOW },
    { offset: WINDOW, length: WINDOW },
    { offset: 2 * WINDOW, length: 2 * WINDOW },
  ])
})

t.test('depth ramps up while the reader keeps up, capped at windowsMax', async (t) => {
  const volume = new FakeVolume(seededBytes(2048 * KiB, 4))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  const read = reader(t, volume, ahead)
  const CHUNK = 16 * KiB
  await read(0, CHUNK)
  /** How many windows past the reader's current one are fetched, after each window boundary. */
  const aheadAtBoundary: number[] = []
  let maxAhead = 0
  for (let offset = CHUNK; offset < 2048 * KiB - CHUNK; offset += CHUNK) {
    await read(offset, CHUNK)
    const fetchedEnd = Math.max(...volume.fetches.map((f) => f.offset + f.length))
    const windowEnd = (Math.floor(offset / WINDOW) + 1) * WINDOW
    const windowsAhead = Math.round((fetchedEnd - windowEnd) / WINDOW)
    maxAhead = Math.max(maxAhead, windowsAhead + 1)
    if (offset % WINDOW === 0) aheadAtBoundary.push(windowsAhead + 1)
  }
  t.same(aheadAtBoundary.slice(0, 4), [2, 4, 4, 4], 'windows in flight (the current one included): 2, then 4 (1 before the first boundary)')
  t.equal(maxAhead, LIMITS.windowsMax, 'never more than windowsMax windows')
  t.ok(aheadAtBoundary.every((n) => n <= LIMITS.windowsMax))
  // (the last few boundaries have fewer windows ahead: the volume ends)
  for (let i = 1; i < aheadAtBoundary.length - LIMITS.windowsMax; i++) {
    if (aheadAtBoundary[i]! < aheadAtBoundary[i - 1]!) t.fail(`depth fell at boundary ${i}`)
  }
})

t.test('a slow reader keeps one window in flight', async (t) => {
  const volume = new FakeVolume(seededBytes(512 * KiB, 5))
  const ahead = new ReadAhead(volume.fetch, LIMITS)
  const read = reader(t, volume, ahead)
  const CHUNK = 32 * KiB
  await read(0, CHUNK)
  for (let offset = CHUNK; offset < 4 * WINDOW; offset += CHUNK) {
    // slower than a window per maxAgeMs / 2: the reader does not keep up
    await sleep(LIMITS.maxAgeMs / 2 + 10)
    await read(offset, CHUNK)
    const fetchedEnd = Math.max(...volume.fetches.map((f) => f.offset + f.length))
    t.ok(fetchedEnd <= (Math.floor(offset / WINDOW) + 1) * WINDOW, `at ${offset / KiB} KiB: nothing fetched past the current window`)
  }
})

t.test('invalidate() drops the windows: the next read fetches again', async (t) => {
  const volume = new FakeVolume(seededBytes(512 * KiB, 6))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  const read = reader(t, volume, ahead)
  await read(0, 8 * KiB)
  await read(8 * KiB, 8 * KiB)
  await read(16 * KiB, 8 * KiB)
  t.equal(volume.fetches.length, 2, 'the third read is served from the window')
  seededBytes(WINDOW, 66).copy(volume.store, 0) // a write through sheepfs...
  ahead.invalidate() // ...drops the windows
  await read(24 * KiB, 8 * KiB, 'the next read sees the new bytes')
  t.same(volume.since(2), [{ offset: 24 * KiB, length: WINDOW - 24 * KiB }], 'fetched again (still sequential: a new window)')
  await read(32 * KiB, 8 * KiB)
  t.equal(volume.fetches.length, 3, 'then served from the new window')

  // the depth falls back to one window
  for (let offset = 40 * KiB; offset < 4 * WINDOW; offset += 8 * KiB) await read(offset, 8 * KiB)
  const before = volume.fetches.length
  ahead.invalidate()
  await read(4 * WINDOW, 8 * KiB)
  t.same(volume.since(before), [{ offset: 4 * WINDOW, length: WINDOW }], 'one window after invalidate()')
})

t.test('windows older than maxAgeMs are not served', async (t) => {
  const volume = new FakeVolume(seededBytes(512 * KiB, 7))
  const ahead = new ReadAhead(volume.fetch, LIMITS)
  await ahead.read(0, 8 * KiB, volume.size)
  await ahead.read(8 * KiB, 8 * KiB, volume.size) // fetches the window [8K, 64K)
  t.equal(volume.fetches.length, 2)
  const changed = seededBytes(WINDOW, 77)
  changed.copy(volume.store, 0) // written by someone else (dog): no invalidate()
  const fresh = await ahead.read(16 * KiB, 8 * KiB, volume.size)
  if (volume.fetches.length === 2) {
    // served from the window fetched before the change (allowed for maxAgeMs)
    t.ok(fresh.equals(seededBytes(512 * KiB, 7).subarray(16 * KiB, 24 * KiB)), 'a fresh window is served as fetched')
  }
  await sleep(LIMITS.maxAgeMs + 30)
  const later = await ahead.read(24 * KiB, 8 * KiB, volume.size)
  t.ok(later.equals(changed.subarray(24 * KiB, 32 * KiB)), 'after maxAgeMs the change is visible')
  t.ok(volume.fetches.length > 2 && volume.fetches.at(-1)!.offset <= 24 * KiB, 'by fetching again')

  // the same for a non-sequential read inside an old window
  await ahead.read(32 * KiB, 8 * KiB, volume.size)
  seededBytes(WINDOW, 78).copy(volume.store, 0)
  await sleep(LIMITS.maxAgeMs + 30)
  const jumped = await ahead.read(50 * KiB, 1 * KiB, volume.size)
  t.ok(jumped.equals(volume.store.subarray(50 * KiB, 51 * KiB)), 'a random read inside an old window sees the change')
})

t.test('a read spanning two windows and reads at the volume end', async (t) => {
  t.test('spanning windows already fetched', async (t) => {
    const volume = new FakeVolume(seededBytes(1024 * KiB, 8))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    // get past two window boundaries quickly: four windows in flight
    await read(0, 16 * KiB)
    for (let offset = 16 * KiB; offset < 2 * WINDOW; offset += 16 * KiB) await read(offset, 16 * KiB)
    await read(2 * WINDOW, WINDOW - 1000)
    const before = volume.fetches.length
    await read(3 * WINDOW - 1000, 2000, 'a read across the boundary of two fetched windows')
    t.equal(volume.fetches.length, before, 'served from the windows without a fetch')
    await read(3 * WINDOW + 1000, WINDOW, "a whole window's length across a boundary")
  })

  t.test('spanning past the only window (depth one)', async (t) => {
    const volume = new FakeVolume(seededBytes(1024 * KiB, 9))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    await read(0, 40 * KiB)
    await read(40 * KiB, 40 * KiB, 'the window ends at 64 KiB, the read at 80 KiB')
    t.same(
      volume.since(1),
      [
        { offset: 40 * KiB, length: 24 * KiB },
        { offset: 64 * KiB, length: 16 * KiB },
      ],
      'the rest is fetched directly',
    )
  })

  t.test('the volume end (size not a multiple of the window)', async (t) => {
    const SIZE = 3 * WINDOW + 1000
    const volume = new FakeVolume(seededBytes(SIZE, 10))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    let offset = 0
    while (offset < SIZE) {
      const length = Math.min(12 * KiB, SIZE - offset)
      await read(offset, length, `read [${offset}, ${offset + length}) of ${SIZE}`)
      offset += length
    }
    for (const f of volume.fetches) t.ok(f.offset + f.length <= SIZE, `fetch [${f.offset}, ${f.offset + f.length}) within the volume`)
    t.ok(
      volume.fetches.some((f) => f.offset === 3 * WINDOW && f.length === 1000),
      'the last window is cut at the end',
    )
    await read(SIZE - 1, 1, 'the last byte (random)')
    await read(SIZE - 3000, 3000, 'the last bytes across a window boundary')
    await read(SIZE, 0, 'an empty read at the end (sequential)')
  })

  t.test('the volume grew after the windows were fetched', async (t) => {
    const volume = new FakeVolume(seededBytes(WINDOW + 5000, 11))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    await ahead.read(0, 30 * KiB, volume.size)
    await ahead.read(30 * KiB, 30 * KiB, volume.size)
    await ahead.read(60 * KiB, 4 * KiB, volume.size) // past the first window: two more were due, one fits
    volume.store = Buffer.concat([volume.store, seededBytes(WINDOW, 12)])
    const got = await ahead.read(64 * KiB, 20 * KiB, volume.size)
    t.ok(got.equals(volume.store.subarray(64 * KiB, 84 * KiB)), 'bytes past the old end are fetched')
  })
})

t.test('a failing fetch rejects the read that needs it; later reads recover', async (t) => {
  const boom = new Error('sheep down')

  t.test('a direct read', async (t) => {
    const volume = new FakeVolume(seededBytes(256 * KiB, 13))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    volume.failWhen = () => boom
    await t.rejects(ahead.read(1000, 10, volume.size), boom)
    volume.failWhen = undefined
    await read(1000, 10)
  })

  t.test('the window a sequential read waits for', async (t) => {
    const volume = new FakeVolume(seededBytes(256 * KiB, 14))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    await read(0, 8 * KiB)
    volume.failWhen = () => boom
    await t.rejects(ahead.read(8 * KiB, 8 * KiB, volume.size), boom)
    volume.failWhen = undefined
    await read(8 * KiB, 8 * KiB, 'the same read again succeeds')
    await read(16 * KiB, 8 * KiB, 'and the reader goes on')
  })

  t.test('a window fetched ahead fails: only the read that needs it is rejected', async (t) => {
    const volume = new FakeVolume(seededBytes(512 * KiB, 15))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    const read = reader(t, volume, ahead)
    await read(0, 16 * KiB)
    for (let offset = 16 * KiB; offset < WINDOW; offset += 16 * KiB) await read(offset, 16 * KiB)
    volume.failWhen = (offset) => (offset === 2 * WINDOW ? boom : undefined)
    await read(WINDOW, 16 * KiB, 'the next window is fine (it fetches [64K, 128K) and the failing [128K, 192K))')
    t.ok(
      volume.fetches.some((f) => f.offset === 2 * WINDOW),
      'the failing window was fetched ahead',
    )
    volume.failWhen = undefined
    for (let offset = WINDOW + 16 * KiB; offset < 2 * WINDOW - 16 * KiB; offset += 16 * KiB) await read(offset, 16 * KiB)
    await t.rejects(ahead.read(2 * WINDOW - 16 * KiB, 32 * KiB, volume.size), boom, 'a read reaching into the failed window fails')
    await read(2 * WINDOW - 16 * KiB, 32 * KiB, 'the same read again succeeds')
    await read(2 * WINDOW + 16 * KiB, 16 * KiB)
    await read(2 * WINDOW + 32 * KiB, 16 * KiB)
  })

  t.test('a failed window nobody reads is no unhandled rejection', async (t) => {
    const volume = new FakeVolume(seededBytes(512 * KiB, 16))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    await ahead.read(0, 16 * KiB, volume.size)
    volume.failWhen = (offset) => (offset >= WINDOW ? boom : undefined)
    for (let offset = 16 * KiB; offset < WINDOW; offset += 16 * KiB) await ahead.read(offset, 16 * KiB, volume.size)
    await ahead.read(WINDOW - 16 * KiB, 1, volume.size).catch(() => undefined)
    ahead.invalidate()
    await settle()
    t.pass('no unhandled rejection (the process would have failed)')
  })
})

t.test("randomized: sequential and random reads return exactly the volume's bytes", async (t) => {
  for (let seed = 1; seed <= 30; seed++) {
    const random = seededRandom(seed)
    const int = (n: number) => Math.floor(random() * n)
    const SIZE = 512 * KiB + int(WINDOW)
    const volume = new FakeVolume(seededBytes(SIZE, 1000 + seed))
    const limits = { windowBytes: (16 + int(64)) * KiB, windowsMax: 1 + int(6), maxAgeMs: 20 + int(100) }
    const ahead = new ReadAhead(volume.fetch, limits)
    volume.delay = () => {
      const r = random()
      if (r < 0.5) return Promise.resolve()
      if (r < 0.8) return new Promise((resolve) => setImmediate(resolve))
      return sleep(int(3))
    }
    let next = 0
    let bad = 0
    let reads = 0
    for (let op = 0; op < 300; op++) {
      const r = random()
      if (r < 0.03) {
        // a write through sheepfs: new bytes, windows dropped
        const at = int(SIZE)
        seededBytes(Math.min(SIZE - at, 1 + int(100 * KiB)), seed * 1000 + op).copy(volume.store, at)
        ahead.invalidate()
        continue
      }
      if (r < 0.04) {
        await sleep(int(limits.maxAgeMs))
        continue
      }
      let offset: number
      let length: number
      if (r < 0.8 && next < SIZE) {
        offset = next
        length = random() < 0.9 ? 1 + int(32 * KiB) : 1 + int(200 * KiB)
      } else if (r < 0.9) {
        offset = Math.max(0, next - int(64 * KiB)) // back a little, e.g. re-reading
        length = 1 + int(32 * KiB)
      } else {
        offset = int(SIZE)
        length = 1 + int(64 * KiB)
      }
      offset = Math.min(offset, SIZE - 1)
      length = Math.min(length, SIZE - offset)
      const expected = Buffer.from(volume.store.subarray(offset, offset + length))
      const got = await ahead.read(offset, length, SIZE)
      reads++
      if (!got.equals(expected)) {
        bad++
        t.fail(`seed ${seed} op ${op}: read [${offset}, ${offset + length}) differs`)
      }
      next = offset + length
    }
    for (const f of volume.fetches) {
      if (f.offset + f.length > SIZE || f.length <= 0) t.fail(`seed ${seed}: bad fetch ${JSON.stringify(f)}`)
    }
    if (bad === 0) t.pass(`seed ${seed}: ${reads} reads, ${volume.fetches.length} fetches, all exact`)
  }
})

t.test("randomized: concurrent sequential reads (as the kernel issues them) return the volume's bytes", async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const random = seededRandom(seed)
    const int = (n: number) => Math.floor(random() * n)
    const SIZE = 1024 * KiB + int(WINDOW)
    const volume = new FakeVolume(seededBytes(SIZE, 2000 + seed))
    const ahead = new ReadAhead(volume.fetch, NO_AGE)
    volume.delay = () => (random() < 0.5 ? new Promise((resolve) => setImmediate(resolve)) : sleep(int(3)))
    let offset = 0
    let bad = 0
    while (offset < SIZE) {
      // a batch of up to four consecutive reads of at most a window each, all in flight at once
      const batch: Array<{ offset: number; length: number; got: Promise<Buffer> }> = []
      for (let i = 0, n = 1 + int(4); i < n && offset < SIZE; i++) {
        const length = Math.min(SIZE - offset, 1 + int(WINDOW))
        batch.push({ offset, length, got: ahead.read(offset, length, SIZE) })
        offset += length
      }
      for (const b of batch) {
        if (!(await b.got).equals(volume.store.subarray(b.offset, b.offset + b.length))) {
          bad++
          t.fail(`seed ${seed}: concurrent read [${b.offset}, ${b.offset + b.length}) differs`)
        }
      }
    }
    if (bad === 0) t.pass(`seed ${seed}: all concurrent reads exact`)
  }
})

t.test('concurrent reads: a read spanning three windows while another read drops the first one', async (t) => {
  // a concurrent read that passes the first window shifts it out of the list of windows while
  // the spanning read is waiting for its data: the spanning read must still get its own bytes
  const volume = new FakeVolume(seededBytes(1024 * KiB, 42))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  await ahead.read(0, 16 * KiB, volume.size)
  for (let offset = 16 * KiB; offset < 2 * WINDOW; offset += 16 * KiB) await ahead.read(offset, 16 * KiB, volume.size)
  await ahead.read(2 * WINDOW, 16 * KiB, volume.size) // windows [128K, 192K) [192K, 256K) [256K, 320K) [320K, 384K)
  const aOffset = 3 * WINDOW - 10
  const aLength = WINDOW + 20 // [192K - 10, 256K + 10): three windows
  const a = ahead.read(aOffset, aLength, volume.size)
  const b = ahead.read(200 * KiB, 4 * KiB, volume.size) // another reader, inside the second window
  const [gotA, gotB] = await Promise.all([a, b])
  t.ok(gotB.equals(volume.store.subarray(200 * KiB, 204 * KiB)), 'the second read is exact')
  t.ok(gotA.equals(volume.store.subarray(aOffset, aOffset + aLength)), 'the read spanning three windows is exact')
})

t.test('readNow answers a sequential read at once when its window has arrived, and only then', async (t) => {
  const volume = new FakeVolume(seededBytes(1024 * KiB, 7))
  const ahead = new ReadAhead(volume.fetch, NO_AGE)
  const chunk = 16 * KiB
  t.equal(ahead.readNow(0, chunk, volume.size), undefined, 'nothing fetched yet')
  await ahead.read(0, chunk, volume.size)
  await ahead.read(chunk, chunk, volume.size) // sequential: windows start here
  t.equal(ahead.readNow(5 * chunk, chunk, volume.size), undefined, 'not where the last read ended')
  await settle()
  let served = 0
  for (let offset = 2 * chunk; offset < 6 * WINDOW; offset += chunk) {
    const now = ahead.readNow(offset, chunk, volume.size)
    if (now === undefined) {
      // the next window has not arrived: the promise path serves it (and the ramp goes on)
      const got = await ahead.read(offset, chunk, volume.size)
      if (!got.equals(volume.store.subarray(offset, offset + chunk))) t.fail(`read at ${offset} differs`)
      await settle()
      continue
    }
    served++
    if (!now.equals(volume.store.subarray(offset, offset + chunk))) t.fail(`readNow at ${offset} differs`)
  }
  t.ok(served >= 16, `most of 22 reads were answered at once (${served})`)
  const before = volume.fetches.length
  ahead.invalidate()
  t.equal(ahead.readNow(6 * WINDOW, chunk, volume.size), undefined, 'nothing after invalidate')
  t.equal(volume.fetches.length, before, 'readNow never fetches by itself when it cannot answer')
})

t.test('windows fill the buffers of retired windows again', async (t) => {
  const intos: Buffer[] = []
  const store = seededBytes(2048 * KiB, 9)
  const fetch = async (offset: number, length: number, into?: Buffer): Promise<Buffer> => {
    if (into) intos.push(into)
    const out = into ? into.subarray(0, length) : Buffer.alloc(length)
    store.copy(out, 0, offset, offset + length)
    return out
  }
  const ahead = new ReadAhead(fetch, NO_AGE)
  const chunk = 32 * KiB
  for (let offset = 0; offset < store.length; offset += chunk) {
    const got = ahead.readNow(offset, chunk, store.length) ?? (await ahead.read(offset, chunk, store.length))
    if (!got.equals(store.subarray(offset, offset + chunk))) t.fail(`read at ${offset} differs`)
    await new Promise((resolve) => setImmediate(resolve))
  }
  const distinct = new Set(intos.map((b) => b.buffer)).size
  t.ok(intos.length > 20, `${intos.length} windows were fetched into buffers`)
  t.ok(distinct <= LIMITS.windowsMax + 2, `using only ${distinct} distinct buffers`)
})
