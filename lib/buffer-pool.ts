// A bounded pool of large byte buffers, reused instead of allocated afresh (issue #15). Every
// large Buffer is an ArrayBuffer of its own, which V8 counts as external memory: a sheep taking
// in 1 MiB writes allocated a new one per request and ran a full mark-compact every few MiB
// received, a quarter of its main thread on sequential writes. Buffers lent here are taken
// back when their user is done with them and lent again, so they stay alive instead.
//
// Sizes come in power-of-two classes from BUFFER_POOL_MIN_BYTES to BUFFER_POOL_MAX_BYTES; a
// buffer lent is a view of exactly the length asked for over its class's buffer. Both sides are
// bounded: at most `maxLentBytes` out at once (past it, acquire says no and the caller allocates
// as it would without a pool: a client announcing payloads it never sends cannot make the pool
// allocate for it), at most `maxFreeBytes` kept idle (what comes back beyond that is left to the
// garbage collector).
//
// Whoever acquires a buffer gives it back once, when no one can touch its bytes any more (no
// write of it still queued on a socket, no thread-pool call still reading it); the next
// borrower overwrites it. One never given back (a read reply an in-process caller kept) is
// collected like any other buffer, and from then on no longer counts as lent.
import assert from 'node:assert'

/** The smallest buffer worth pooling: smaller ones are cheap to allocate, or cut from a SmallBufferSlab. */
export const BUFFER_POOL_MIN_BYTES = 64 * 1024
/** The largest buffer pooled: a whole 4 MiB data object. */
export const BUFFER_POOL_MAX_BYTES = 4 * 1024 * 1024
/** Idle bytes a pool keeps by default. */
export const BUFFER_POOL_MAX_FREE_BYTES = 32 * 1024 * 1024
/** Bytes a pool lends out at once by default. */
export const BUFFER_POOL_MAX_LENT_BYTES = 64 * 1024 * 1024

const MIN_SHIFT = Math.log2(BUFFER_POOL_MIN_BYTES)

export class BufferPool {
  /** Idle buffers by class (index 0: BUFFER_POOL_MIN_BYTES). */
  private readonly free: ArrayBuffer[][] = []
  /** The backing stores lent out now. */
  private readonly lent = new WeakSet<ArrayBuffer>()
  private freeBytes = 0
  private lentBytes = 0
  /** Buffers lent that came from the free lists (for tests and metrics). */
  hits = 0
  /** Buffers lent that had to be allocated. */
  misses = 0
  /** Buffers lent, never given back, and collected. */
  collected = 0
  /** Lent buffers collected without being given back: their bytes no longer count as lent. */
  private readonly unreturned = new FinalizationRegistry<number>((bytes) => {
    this.lentBytes -= bytes
    this.collected++
  })

  constructor(
    readonly maxFreeBytes = BUFFER_POOL_MAX_FREE_BYTES,
    readonly maxLentBytes = BUFFER_POOL_MAX_LENT_BYTES,
  ) {
    for (let bytes = BUFFER_POOL_MIN_BYTES; bytes <= BUFFER_POOL_MAX_BYTES; bytes *= 2) this.free.push([])
  }

  /** Whether a buffer of `length` bytes comes from this pool. */
  static fits(length: number): boolean {
    return length >= BUFFER_POOL_MIN_BYTES && length <= BUFFER_POOL_MAX_BYTES
  }

  /** Idle bytes held now. */
  get idleBytes(): number {
    return this.freeBytes
  }

  /** Bytes lent out now. */
  get outBytes(): number {
    return this.lentBytes
  }

  /**
   * A buffer of exactly `length` bytes (uninitialised), or undefined when `maxLentBytes` are out
   * already; `length` must fit (BufferPool.fits).
   */
  acquire(length: number): Buffer | undefined {
    assert(BufferPool.fits(length), `a pooled buffer of ${length} bytes`)
    const cls = Math.max(0, Math.ceil(Math.log2(length)) - MIN_SHIFT)
    const classBytes = BUFFER_POOL_MIN_BYTES << cls
    if (this.lentBytes + classBytes > this.maxLentBytes) return undefined
    let backing = this.free[cls]?.pop()
    if (backing) {
      this.freeBytes -= backing.byteLength
      this.hits++
    } else {
      backing = new ArrayBuffer(classBytes)
      this.misses++
    }
    this.lent.add(backing)
    this.unreturned.register(backing, classBytes, backing)
    this.lentBytes += classBytes
    return Buffer.from(backing, 0, length)
  }

  /** Whether `buf` is a view of a buffer this pool lent and has not had back. */
  lends(buf: Buffer): boolean {
    return this.lent.has(buf.buffer as ArrayBuffer)
  }

  /** Gives back a buffer `acquire` returned; exactly once, when nothing can use its bytes any more. */
  release(buf: Buffer): void {
    const backing = buf.buffer as ArrayBuffer
    assert(this.lent.has(backing), 'a buffer given back to the pool that it did not lend (or given back twice)')
    this.lent.delete(backing)
    this.unreturned.unregister(backing)
    this.lentBytes -= backing.byteLength
    if (this.freeBytes + backing.byteLength > this.maxFreeBytes) return
    const cls = Math.log2(backing.byteLength) - MIN_SHIFT
    this.free[cls]?.push(backing)
    this.freeBytes += backing.byteLength
  }
}

/** The largest buffer cut from a slab (SmallBufferSlab). */
export const SLAB_PIECE_MAX_BYTES = 16 * 1024
/** One slab: sixteen 4 KiB write payloads. */
export const SLAB_BYTES = 64 * 1024

/**
 * Small buffers (up to SLAB_PIECE_MAX_BYTES) cut one after another from a shared slab, for
 * payloads whose user lets go of them soon (a 4 KiB object write, done once it is answered).
 * Node slices only buffers under 4 KiB from its own pool, so each 4 KiB payload was an
 * ArrayBuffer of its own (~3.5 µs to allocate and collect, against ~0.4 µs for a piece here).
 * A piece is never handed out twice (the slab is not reused, only collected once no piece of it
 * is alive), so nothing can alias; a piece kept long keeps its whole slab.
 */
export class SmallBufferSlab {
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
  private used = 0

  static fits(length: number): boolean {
    return length > 0 && length <= SLAB_PIECE_MAX_BYTES
  }

  /** A buffer of `length` bytes (uninitialised); `length` must fit (SmallBufferSlab.fits). */
  take(length: number): Buffer {
    assert(SmallBufferSlab.fits(length), `a slab piece of ${length} bytes`)
    if (this.used + length > SLAB_BYTES) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
      this.used = 0
    }
    const piece = this.slab.subarray(this.used, this.used + length)
    // pieces start 8-byte aligned, as allocations do
    this.used += (length + 7) & ~7
    return piece
  }
}
