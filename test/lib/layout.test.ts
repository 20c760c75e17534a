// Layout tables guard themselves: a layout whose fields overlap or stick out is refused when it
// is declared, and an integer field refuses a value it cannot hold instead of masking it (a
// Node errno string masked into a result code once read as SD_RES_SUCCESS). Each layout compiles
// to a reader and a writer of its own; every field type goes through them.
import t from 'tap'
import { checkLayout, readFields, writeFields } from '../../lib/layout.js'

t.test('checkLayout refuses overlapping and out-of-range fields', async (t) => {
  t.doesNotThrow(() => checkLayout('ok', { a: [0, 'u32'], b: [4, 'u16'], c: [6, 'bytes', 2] } as const, 8))
  t.throws(() => checkLayout('overlap', { a: [0, 'u32'], b: [2, 'u16'] } as const), /overlap/)
  t.throws(() => checkLayout('outside', { a: [6, 'u32'] } as const, 8), /outside/)
  t.throws(() => checkLayout('below', { a: [8, 'u8'] } as const, 48, 16), /outside/)
})

t.test('integer fields refuse values they cannot hold', async (t) => {
  const layout = { r: [0, 'u32'], b: [4, 'u8'], s: [5, 'i16'], q: [8, 'u64'] } as const
  const buf = Buffer.alloc(16)
  t.doesNotThrow(() => writeFields(buf, layout, { r: 0xffffffff, b: 255, s: -32768, q: 2n ** 64n - 1n }))
  t.equal(buf.readUInt32LE(0), 0xffffffff)
  t.throws(() => writeFields(buf, layout, { r: 'EIO' as unknown as number }), /invariant violated/, 'a string result code')
  t.throws(() => writeFields(buf, layout, { r: -1 }), /invariant violated/, 'a negative u32')
  t.throws(() => writeFields(buf, layout, { r: 2 ** 32 }), /invariant violated/, 'a u32 too big')
  t.throws(() => writeFields(buf, layout, { b: 1.5 }), /invariant violated/, 'a fraction')
  t.throws(() => writeFields(buf, layout, { s: 40000 }), /invariant violated/, 'an i16 too big')
  t.throws(() => writeFields(buf, layout, { q: -1n }), /invariant violated/, 'a negative u64')
})

t.test('every field type reads back what was written, at any base; fields left out keep their bytes', async (t) => {
  const layout = {
    u8: [0, 'u8'],
    u16: [1, 'u16'],
    i16: [3, 'i16'],
    u32: [5, 'u32'],
    i32: [9, 'i32'],
    u64: [13, 'u64'],
    bytes: [21, 'bytes', 4],
    'name with-dash': [25, 'string', 8],
  } as const
  const values = { u8: 200, u16: 65000, i16: -2, u32: 0xdeadbeef, i32: -123456, u64: 2n ** 63n + 5n, bytes: Buffer.from([1, 2]), 'name with-dash': 'abc' }
  for (const base of [0, 7]) {
    const buf = Buffer.alloc(base + 34, 0xee)
    writeFields(buf, layout, values, base)
    t.same(readFields(buf, layout, base), { ...values, bytes: Buffer.from([1, 2, 0, 0]) }, `base ${base}`)
    t.equal(buf[base + 33], 0xee, 'nothing written past the layout')
    writeFields(buf, layout, { u8: 1, extra: 5 } as Partial<typeof values>, base)
    t.same(readFields(buf, layout, base), { ...values, u8: 1, bytes: Buffer.from([1, 2, 0, 0]) }, 'only the field given changes')
  }
  const read = readFields(Buffer.alloc(33), layout)
  t.not(read.bytes.buffer, Buffer.alloc(33).buffer, 'bytes fields are copies')
})
