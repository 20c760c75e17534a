// CRC-32 for the checksum layer (checksums.ts): the native kernel (native/crc32, carry-less
// multiplication: 40-50 GB/s with AVX-512 here, ~14 without, where zlib's crc32 in Node 20 does ~5) when it was built at
// `npm install` and the CPU has PCLMULQDQ, else zlib's. Both give zlib.crc32's value, so the
// checksum files do not depend on which one computed them. SHEEPDOG_CRC32=zlib forces zlib's
// (to measure the difference, or to rule the kernel out).
import zlib from 'node:zlib'
import { loadAddon } from '../../lib/native-addon.js'

interface Crc32Addon {
  crc32(data: Uint8Array, prev?: number): number
  crc32Blocks(data: Uint8Array, blockBytes: number, out: Uint32Array, outIndex: number): void
  /**
   * Fills `buffer` from `offset` of `fd` (zeros past the file's end) and the CRC-32 of each
   * `blockBytes` of it into out[0…], on a thread of libuv's pool: bytes from the file, or -errno.
   */
  preadCrc32Blocks(fd: number, buffer: Uint8Array, offset: number, blockBytes: number, out: Uint32Array): Promise<number>
  /** The CPU has carry-less multiplication (else the addon would be slower than zlib). */
  accelerated: boolean
  /** And AVX-512 with VPCLMULQDQ: sixteen 16-byte chunks folded at a time. */
  wide: boolean
}

function nativeKernel(): Crc32Addon | undefined {
  if (process.env.SHEEPDOG_CRC32 === 'zlib') return undefined
  const addon = loadAddon<Crc32Addon>('crc32', 'sheepdog_crc32')
  return addon instanceof Error || !addon.accelerated ? undefined : addon
}

const native = nativeKernel()

/** Which kernel computes the CRCs, for the log. */
export const CRC32_KERNEL = native ? (native.wide ? 'PCLMULQDQ, AVX-512' : 'PCLMULQDQ') : 'zlib'

/** The CRC-32 of `data` (continuing `prev`), unsigned: zlib.crc32's value. */
export function zlibCrc32(data: Uint8Array, prev = 0): number {
  return zlib.crc32(data, prev) >>> 0
}

/** The CRC-32 of `data` (continuing `prev`), unsigned. */
export const crc32: (data: Uint8Array, prev?: number) => number = native ? (data, prev = 0) => native.crc32(data, prev) : zlibCrc32

/** The CRC-32 of each `blockBytes` of `data` (the last may be short) into out[outIndex…]. */
export function zlibCrc32Blocks(data: Uint8Array, blockBytes: number, out: Uint32Array, outIndex: number): void {
  for (let at = 0, i = outIndex; at < data.length; at += blockBytes, i++) out[i] = zlibCrc32(data.subarray(at, at + blockBytes))
}

/** The CRC-32 of each `blockBytes` of `data` (the last may be short) into out[outIndex…]: one call. */
export const crc32Blocks: (data: Uint8Array, blockBytes: number, out: Uint32Array, outIndex: number) => void = native
  ? (data, blockBytes, out, outIndex) => native.crc32Blocks(data, blockBytes, out, outIndex)
  : zlibCrc32Blocks

/**
 * A read that checksums what it reads (native only): each piece is checksummed on the pool
 * thread that read it, right after it came in, instead of on the event loop afterwards.
 * Resolves with the bytes that came from the file, or -errno. Undefined with zlib's crc32: read,
 * then crc32Blocks.
 */
export const preadCrc32Blocks: ((fd: number, buffer: Uint8Array, offset: number, blockBytes: number, out: Uint32Array) => Promise<number>) | undefined = native
  ? (fd, buffer, offset, blockBytes, out) => native.preadCrc32Blocks(fd, buffer, offset, blockBytes, out)
  : undefined
