// Layout tables guard themselves: a layout whose fields overlap or stick out is refused when it
// is declared, and an integer field refuses a value it cannot hold instead of masking it (a
// Node errno string masked into a result code once read as SD_RES_SUCCESS).
import t from 'tap'
import { checkLayout, writeFields } from '../../lib/layout.js'

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
