// Fixed binary layouts as tables: one table per C struct of the wire protocol, read and written
// by the same two functions, so each offset is stated once (wire-protocol.md §2, §3, §7, §12).
// All integers are little-endian; u64 fields are bigint.

export type ScalarType = 'u8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64'
export type FieldSpec =
  | readonly [offset: number, type: ScalarType]
  | readonly [offset: number, type: 'bytes', length: number]
  | readonly [offset: number, type: 'string', length: number]

export type Layout = Readonly<Record<string, FieldSpec>>

type ValueOf<S> = S extends readonly [number, 'u64']
  ? bigint
  : S extends readonly [number, 'bytes', number]
    ? Buffer
    : S extends readonly [number, 'string', number]
      ? string
      : number

export type Fields<L extends Layout> = { -readonly [K in keyof L]: ValueOf<L[K]> }

export function readFields<L extends Layout>(buf: Buffer, layout: L, base = 0): Fields<L> {
  const out: Record<string, unknown> = {}
  for (const key in layout) {
    const spec = layout[key]
    const at = base + spec[0]
    switch (spec[1]) {
      case 'u8': out[key] = buf.readUInt8(at); break
      case 'u16': out[key] = buf.readUInt16LE(at); break
      case 'i16': out[key] = buf.readInt16LE(at); break
      case 'u32': out[key] = buf.readUInt32LE(at); break
      case 'i32': out[key] = buf.readInt32LE(at); break
      case 'u64': out[key] = buf.readBigUInt64LE(at); break
      case 'bytes': out[key] = Buffer.from(buf.subarray(at, at + spec[2])); break
      case 'string': out[key] = cString(buf.subarray(at, at + spec[2])); break
    }
  }
  return out as Fields<L>
}

/**
 * Writes the given fields; fields left out keep whatever the buffer holds (zero when fresh).
 * Keys the layout does not have are ignored, so a wider record (e.g. with its node list) can be passed.
 */
export function writeFields<L extends Layout>(buf: Buffer, layout: L, values: Partial<Fields<L>>, base = 0): Buffer {
  for (const key in values) {
    const spec = layout[key]
    if (spec === undefined) continue
    const value = values[key] as unknown
    if (value === undefined) continue
    const at = base + spec[0]
    switch (spec[1]) {
      case 'u8': buf.writeUInt8((value as number) & 0xff, at); break
      case 'u16': buf.writeUInt16LE((value as number) & 0xffff, at); break
      case 'i16': buf.writeInt16LE(value as number, at); break
      case 'u32': buf.writeUInt32LE((value as number) >>> 0, at); break
      case 'i32': buf.writeInt32LE(value as number, at); break
      case 'u64': buf.writeBigUInt64LE(BigInt.asUintN(64, value as bigint), at); break
      case 'bytes': {
        const bytes = value as Buffer
        buf.fill(0, at, at + spec[2])
        bytes.copy(buf, at, 0, Math.min(bytes.length, spec[2]))
        break
      }
      case 'string': writeCString(buf, at, spec[2], value as string); break
    }
  }
  return buf
}

/** A NUL-padded C string field → JS string (bytes up to the first NUL, as UTF-8). */
export function cString(bytes: Uint8Array): string {
  let end = bytes.indexOf(0)
  if (end < 0) end = bytes.length
  return Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8')
}

/**
 * Writes `text` NUL-padded into a fixed field; text longer than length − 1 bytes is cut, so the
 * field always ends with a NUL as the original's pstrcpy leaves it.
 */
export function writeCString(buf: Buffer, at: number, length: number, text: string): void {
  buf.fill(0, at, at + length)
  buf.write(text, at, length - 1, 'utf8')
}

/** A fixed-size NUL-padded field holding `text`, as a fresh buffer. */
export function cStringField(text: string, length: number): Buffer {
  const buf = Buffer.alloc(length)
  writeCString(buf, 0, length, text)
  return buf
}
