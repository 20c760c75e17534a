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

/**
 * Reads every field of `layout` at `base`. Each layout gets a decoder of its own, generated once
 * (one object literal of fixed shape, one read per field): a generic loop over the table built
 * each object key by key, with megamorphic stores, and cost several µs per request header.
 */
export function readFields<L extends Layout>(buf: Buffer, layout: L, base = 0): Fields<L> {
  let read = readers.get(layout)
  if (!read) {
    read = compileReader(layout)
    readers.set(layout, read)
  }
  return read(buf, base, HELPERS) as Fields<L>
}

/**
 * Writes the given fields; fields left out keep whatever the buffer holds (zero when fresh).
 * Keys the layout does not have are ignored, so a wider record (e.g. with its node list) can be passed.
 */
export function writeFields<L extends Layout>(buf: Buffer, layout: L, values: Partial<Fields<L>>, base = 0): Buffer {
  let write = writers.get(layout)
  if (!write) {
    write = compileWriter(layout)
    writers.set(layout, write)
  }
  write(buf, values, base, HELPERS)
  return buf
}

type Reader = (buf: Buffer, base: number, h: typeof HELPERS) => unknown
type Writer = (buf: Buffer, values: Record<string, unknown>, base: number, h: typeof HELPERS) => void

const readers = new WeakMap<Layout, Reader>()
const writers = new WeakMap<Layout, Writer>()

/** What the generated code calls besides Buffer's own methods. */
const HELPERS = {
  copyBytes: (buf: Buffer, at: number, length: number): Buffer => Buffer.from(buf.subarray(at, at + length)),
  string: (buf: Buffer, at: number, length: number): string => cString(buf.subarray(at, at + length)),
  checkedInt,
  checkedU64,
  writeBytes: (buf: Buffer, at: number, length: number, value: unknown): void => {
    const bytes = value as Buffer
    buf.fill(0, at, at + length)
    bytes.copy(buf, at, 0, Math.min(bytes.length, length))
  },
  writeString: (buf: Buffer, at: number, length: number, value: unknown): void => writeCString(buf, at, length, value as string),
}

const READ_CALL: Record<ScalarType, string> = {
  u8: 'buf.readUInt8',
  u16: 'buf.readUInt16LE',
  i16: 'buf.readInt16LE',
  u32: 'buf.readUInt32LE',
  i32: 'buf.readInt32LE',
  u64: 'buf.readBigUInt64LE',
}

const WRITE_CALL: Record<ScalarType, [call: string, min: number, max: number]> = {
  u8: ['buf.writeUInt8', 0, 0xff],
  u16: ['buf.writeUInt16LE', 0, 0xffff],
  i16: ['buf.writeInt16LE', -0x8000, 0x7fff],
  u32: ['buf.writeUInt32LE', 0, 0xffffffff],
  i32: ['buf.writeInt32LE', -0x80000000, 0x7fffffff],
  u64: ['buf.writeBigUInt64LE', 0, 0],
}

function compileReader(layout: Layout): Reader {
  const props = Object.entries(layout).map(([key, spec]) => {
    const at = `base + ${Number(spec[0])}`
    const value =
      spec[1] === 'bytes'
        ? `h.copyBytes(buf, ${at}, ${Number(spec[2])})`
        : spec[1] === 'string'
          ? `h.string(buf, ${at}, ${Number(spec[2])})`
          : `${READ_CALL[spec[1]]}(${at})`
    return `${JSON.stringify(key)}: ${value}`
  })
  return new Function('buf', 'base', 'h', `return { ${props.join(', ')} }`) as Reader
}

function compileWriter(layout: Layout): Writer {
  const lines = Object.entries(layout).map(([key, spec]) => {
    const k = JSON.stringify(key)
    const at = `base + ${Number(spec[0])}`
    let store: string
    if (spec[1] === 'bytes') store = `h.writeBytes(buf, ${at}, ${Number(spec[2])}, v)`
    else if (spec[1] === 'string') store = `h.writeString(buf, ${at}, ${Number(spec[2])}, v)`
    else if (spec[1] === 'u64') store = `buf.writeBigUInt64LE(h.checkedU64(${k}, v), ${at})`
    else {
      const [call, min, max] = WRITE_CALL[spec[1]]
      store = `${call}(h.checkedInt(${k}, v, ${min}, ${max}), ${at})`
    }
    return `v = values[${k}]; if (v !== undefined) ${store};`
  })
  return new Function('buf', 'values', 'base', 'h', `let v; ${lines.join(' ')}`) as Writer
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
