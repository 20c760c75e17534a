// Seeded randomness for tests whose random cases must be reproducible from their seed
// (randomized model tests print the seed of a failing case).

/** A small seeded PRNG (mulberry32): numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** `length` bytes from `seededRandom(seed)`. */
export function seededBytes(length: number, seed: number): Buffer {
  const random = seededRandom(seed)
  const b = Buffer.alloc(length)
  for (let i = 0; i < length; i += 4) {
    const word = Math.floor(random() * 4294967296)
    for (let j = 0; j < 4 && i + j < length; j++) b[i + j] = (word >>> (8 * j)) & 0xff
  }
  return b
}
