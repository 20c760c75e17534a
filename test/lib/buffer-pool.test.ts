// BufferPool: buffers of the asked length over power-of-two classes, reused once given back,
// bounded on both sides (bytes out, bytes idle), and strict about what comes back; a buffer
// never given back stops counting as lent once it is collected. Small buffers come from a slab.
import { setTimeout as sleep } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { BUFFER_POOL_MAX_BYTES, BUFFER_POOL_MIN_BYTES, BufferPool, SLAB_BYTES, SLAB_PIECE_MAX_BYTES, SmallBufferSlab } from '../../lib/buffer-pool.js'

const MiB = 1024 * 1024

t.test('lends the length asked for and reuses what comes back', async (t) => {
  const pool = new BufferPool()
  const a = pool.acquire(MiB)!
  t.equal(a.length, MiB, 'exactly the length asked for')
  a.fill(7)
  pool.release(a)
  const b = pool.acquire(MiB - 5)!
  t.equal(b.length, MiB - 5, 'a shorter one of the same class')
  t.equal(b.buffer, a.buffer, 'over the same backing store')
  t.equal(pool.hits, 1, 'one hit')
  t.equal(pool.misses, 1, 'one miss')
  const c = pool.acquire(MiB)!
  t.not(c.buffer, b.buffer, 'a buffer lent out is never lent twice')
  t.equal(pool.acquire(MiB + 1)!.buffer.byteLength, 2 * MiB, 'one byte more takes the next class')
  t.equal(pool.acquire(BUFFER_POOL_MIN_BYTES)!.buffer.byteLength, BUFFER_POOL_MIN_BYTES, 'the smallest class')
})

t.test('only sizes of its classes', async (t) => {
  t.notOk(BufferPool.fits(BUFFER_POOL_MIN_BYTES - 1), 'not below the smallest')
  t.notOk(BufferPool.fits(BUFFER_POOL_MAX_BYTES + 1), 'not past the largest')
  t.ok(BufferPool.fits(BUFFER_POOL_MAX_BYTES), 'a whole object')
  t.throws(() => new BufferPool().acquire(100), 'acquiring a size that does not fit is a bug')
})

t.test('lends at most maxLentBytes at once', async (t) => {
  const pool = new BufferPool(8 * MiB, 4 * MiB)
  const out = [pool.acquire(MiB), pool.acquire(MiB), pool.acquire(2 * MiB)]
  t.ok(
    out.every((b) => b !== undefined),
    'up to the bound',
  )
  t.equal(pool.acquire(BUFFER_POOL_MIN_BYTES), undefined, 'nothing past it')
  t.equal(pool.outBytes, 4 * MiB, 'all of it out')
  pool.release(out[0]!)
  t.ok(pool.acquire(MiB), 'again once some came back')
})

t.test('keeps at most maxFreeBytes idle', async (t) => {
  const pool = new BufferPool(2 * MiB)
  const out = [pool.acquire(MiB)!, pool.acquire(MiB)!, pool.acquire(MiB)!]
  for (const b of out) pool.release(b)
  t.equal(pool.idleBytes, 2 * MiB, 'the third is left to the collector')
  t.equal(pool.outBytes, 0, 'none counted as out')
})

t.test('a buffer it did not lend, or one given back twice, is a bug', async (t) => {
  const pool = new BufferPool()
  t.throws(() => pool.release(Buffer.alloc(MiB)), 'a foreign buffer')
  const a = pool.acquire(MiB)!
  t.ok(pool.lends(a), 'lent')
  pool.release(a)
  t.notOk(pool.lends(a), 'no longer lent')
  t.throws(() => pool.release(a), 'given back twice')
})

t.test('a buffer never given back no longer counts as lent once collected', async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc') as () => void
  const pool = new BufferPool(8 * MiB, 4 * MiB)
  const kept = pool.acquire(MiB)!
  ;(() => {
    // acquired and dropped without release, as an in-process caller may drop a read reply
    pool.acquire(2 * MiB)
  })()
  t.equal(pool.outBytes, 3 * MiB, 'both out')
  for (let i = 0; i < 20 && pool.collected === 0; i++) {
    gc()
    await sleep(10)
  }
  t.equal(pool.collected, 1, 'the dropped one was collected')
  t.equal(pool.outBytes, MiB, 'and counts no more')
  pool.release(kept)
  t.equal(pool.outBytes, 0, 'the other came back as usual')
  t.ok(pool.acquire(4 * MiB), 'the whole bound can be lent again')
})

t.test('small buffers are cut from a slab, never two over the same bytes', async (t) => {
  const slab = new SmallBufferSlab()
  t.ok(SmallBufferSlab.fits(4096))
  t.notOk(SmallBufferSlab.fits(0))
  t.notOk(SmallBufferSlab.fits(SLAB_PIECE_MAX_BYTES + 1))
  t.throws(() => slab.take(SLAB_PIECE_MAX_BYTES + 1), /slab piece/)
  const pieces: Buffer[] = []
  // more than a slab's worth: the pieces come from several slabs
  for (let i = 0; i < (2 * SLAB_BYTES) / 4096 + 3; i++) {
    const piece = slab.take(i % 2 ? 4096 : 4095)
    piece.fill(i & 0xff)
    pieces.push(piece)
  }
  for (const [i, piece] of pieces.entries()) {
    t.equal(piece.length, i % 2 ? 4096 : 4095)
    t.ok(
      piece.every((b) => b === (i & 0xff)),
      `piece ${i} kept its bytes`,
    )
    t.equal(piece.byteOffset % 8, 0, 'aligned')
  }
  t.ok(new Set(pieces.map((p) => p.buffer)).size >= 2, 'a new slab once one is used up')
})
