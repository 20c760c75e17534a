// Tests for dog/parsers.ts: sizes, redundancy levels and their error text, snapshot selectors,
// indexes and object ids, read as the original's C readers read them.

import t from 'tap'

import { UsageError } from '../../dog/cli.js'
import {
  invalidRedundancyMessages,
  parseIndex,
  parseOid,
  parseRedundancy,
  parseSize,
  parseSnapshotSelector,
  requireSize,
  snapshotIdOf,
  snapshotTagOf,
} from '../../dog/parsers.js'

t.test('parseSize', async (t) => {
  const valid: Array<[string, bigint]> = [
    ['16M', 16777216n],
    ['1.5G', 1610612736n],
    ['10', 10n],
    ['4k', 4096n],
    ['4K', 4096n],
    ['100b', 100n],
    ['1.9', 1n],
    ['0.5k', 512n],
    ['2T', 2199023255552n],
    ['16P', 18014398509481984n],
    ['1e3', 1000n],
    ['.5M', 524288n],
    ['0', 0n],
  ]
  for (const [text, bytes] of valid) t.equal(parseSize(text), bytes, text)
  for (const text of ['', 'abc', '16MB', '-1', '1x', '0x10', 'inf', 'nan', 'M', '1 M', '16384P']) {
    t.equal(parseSize(text), undefined, `'${text}' is invalid`)
  }
  t.equal(requireSize('8m'), 8388608n)
  t.throws(
    () => requireSize('8q'),
    new UsageError("Invalid size '8q'", 'You may use B, K, M, G, T or P suffixes for bytes, kilobytes, megabytes, gigabytes, terabytes and petabytes.'),
  )
})

t.test('parseRedundancy', async (t) => {
  t.same(parseRedundancy('3'), { copies: 3, copyPolicy: 0 })
  t.same(parseRedundancy('1'), { copies: 1, copyPolicy: 0 })
  t.same(parseRedundancy('31'), { copies: 31, copyPolicy: 0 })
  t.same(parseRedundancy('4:2'), { copies: 6, copyPolicy: 0x22, dataStrips: 4, parityStrips: 2 })
  t.same(parseRedundancy('16:15'), { copies: 31, copyPolicy: 0x8f, dataStrips: 16, parityStrips: 15 })
  t.same(parseRedundancy('2:1'), { copies: 3, copyPolicy: 0x11, dataStrips: 2, parityStrips: 1 })
  for (const text of ['0', '32', '3:2', '4:0', '4:16', 'x', '4:2:1', '', ':3', '-1']) {
    t.equal(parseRedundancy(text), undefined, `'${text}' is invalid`)
  }
  t.equal(
    invalidRedundancyMessages('0').join('\n'),
    'Invalid parameter 0\nTo create replicated vdi, set -c x\n  x(1 to 31)   - number of replicated copies\n' +
      'To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips',
  )
})

t.test('snapshot selectors, indexes and oids', async (t) => {
  t.same(parseSnapshotSelector('3'), { snapid: 3 })
  t.same(parseSnapshotSelector('snap1'), { tag: 'snap1' })
  t.same(parseSnapshotSelector('1a'), { tag: '1a' })
  t.equal(parseSnapshotSelector('0'), undefined)
  t.equal(snapshotIdOf({ snapid: 4 }), 4)
  t.equal(snapshotIdOf({ tag: 'x' }), 0)
  t.equal(snapshotIdOf(undefined), 0)
  t.equal(snapshotTagOf({ tag: 'x' }), 'x')
  t.equal(snapshotTagOf({ snapid: 4 }), '')

  t.equal(parseIndex('10'), 10n)
  t.equal(parseIndex('0x1f'), 31n)
  t.equal(parseIndex('12abc'), 12n)
  t.equal(parseIndex('4294967296'), 4294967296n)
  t.equal(parseIndex('abc'), undefined)
  t.equal(parseIndex(''), undefined)

  t.equal(parseOid('00ed202b00000000'), 0xed202b00000000n)
  t.equal(parseOid('0xED202B'), 0xed202bn)
  t.equal(parseOid('g'), undefined)
})
