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

const SCALAR_BYTES: Record<ScalarType, number> = { u8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8 }

/** Bytes a field takes. */
export function fieldBytes(spec: FieldSpec): number {
  return spec[1] === 'bytes' || spec[1] === 'string' ? spec[2] : SCALAR_BYTES[spec[1]]
}

/**
 * Asserts, when a layout is declared, that its fields do not overlap and lie inside
 * [from, size): a typo in an offset is a crash at load, not a silently corrupted frame.
 */
export function checkLayout(name: string, layout: Layout, size = Number.POSITIVE_INFINITY, from = 0): void {
  const spans = Object.entries(layout)
    .map(([key, spec]) => ({ key, start: spec[0], end: spec[0] + fieldBytes(spec) }))
    .sort((a, b) => a.start - b.start)
  for (let i = 0; i < spans.length; i++) {
    const f = spans[i]
    if (!Number.isInteger(f.start) || f.start < from || f.end > size) {
      throw new Error(`invariant violated: ${name}.${f.key} [${f.start}, ${f.end}) is outside [${from}, ${size})`)
    }
    const next = spans[i + 1]
    if (next && next.start < f.end) throw new Error(`invariant violated: ${name}.${f.key} and ${name}.${next.key} overlap`)
  }
}

export function readFields<L extends Layout>(buf: Buffer, layout: L, base = 0): Fields<L> {
  const out: Record<string, unknown> = {}
  for (const key in layout) {
    const spec = layout[key]
    const at = base + spec[0]
    switch (spec[1]) {
      case 'u8':
        out[key] = buf.readUInt8(at)
        break
      case 'u16':
        out[key] = buf.readUInt16LE(at)
        break
      case 'i16':
        out[key] = buf.readInt16LE(at)
        break
      case 'u32':
        out[key] = buf.readUInt32LE(at)
        break
      case 'i32':
        out[key] = buf.readInt32LE(at)
        break
      case 'u64':
        out[key] = buf.readBigUInt64LE(at)
        break
      case 'bytes':
        out[key] = Buffer.from(buf.subarray(at, at + spec[2]))
        break
      case 'string':
        out[key] = cString(buf.subarray(at, at + spec[2]))
        break
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
      case 'u8':
        buf.writeUInt8(checkedInt(key, value, 0, 0xff), at)
        break
      case 'u16':
        buf.writeUInt16LE(checkedInt(key, value, 0, 0xffff), at)
        break
      case 'i16':
        buf.writeInt16LE(checkedInt(key, value, -0x8000, 0x7fff), at)
        break
      case 'u32':
        buf.writeUInt32LE(checkedInt(key, value, 0, 0xffffffff), at)
        break
      case 'i32':
        buf.writeInt32LE(checkedInt(key, value, -0x80000000, 0x7fffffff), at)
        break
      case 'u64':
        buf.writeBigUInt64LE(checkedU64(key, value), at)
        break
      case 'bytes': {
        const bytes = value as Buffer
        buf.fill(0, at, at + spec[2])
        bytes.copy(buf, at, 0, Math.min(bytes.length, spec[2]))
        break
      }
      case 'string':
        writeCString(buf, at, spec[2], value as string)
        break
    }
  }
  return buf
}

/**
 * An integer field's value, which must be a whole number in [min, max]: a value that does not
 * fit is a bug to crash on, never something to mask into range — a string error code masked to
 * 0 would read as SD_RES_SUCCESS.
 */
function checkedInt(key: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`invariant violated: field ${key} = ${String(value)} is not an integer in [${min}, ${max}]`)
  }
  return value
}

function checkedU64(key: string, value: unknown): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > 0xffffffffffffffffn) {
    throw new RangeError(`invariant violated: field ${key} = ${String(value)} is not a u64`)
  }
  return value
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
