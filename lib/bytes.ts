// Byte-buffer helpers shared by sheep and dog. Objects are created zero-filled, so a piece of an
// object that is all zeros need not be sent or written when an object is built piece by piece.

/** Zeros compared against at a time (a small constant buffer, not one as big as the data). */
const ZERO_COMPARE_BYTES = 64 * 1024
const ZEROS = Buffer.alloc(ZERO_COMPARE_BYTES)

/** `data` zero-extended to at least `size` bytes (a short answer reads as zeros, never out of range). */
export function zeroExtended(data: Buffer, size: number): Buffer {
  if (data.length >= size) return data
  const padded = Buffer.alloc(size)
  data.copy(padded)
  return padded
}

/** True when every byte of `data` is 0. */
export function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZERO_COMPARE_BYTES) {
    const end = Math.min(at + ZERO_COMPARE_BYTES, data.length)
    if (data.compare(ZEROS, 0, end - at, at, end) !== 0) return false
  }
  return true
}
