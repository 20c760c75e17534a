// Unit checks of the pure parts of `vdi check`, `vdi backup` and `cluster snapshot`: the
// Boyer–Moore majority vote over replica digests, the sector trimming of backup records and the
// byte layouts of the backup stream and of the farm (log header, log record, trunk entries).
import t from 'tap'
import { changedRange, encodeBackupHeader, encodeRecordHeader } from '../../dog/vdi-backup.js'
import { voteMajority } from '../../dog/vdi-check.js'
import {
  decodeTrunk,
  encodeSnapLogHeader,
  encodeSnapLogRecord,
  encodeTrunk,
  SNAP_LOG_HEADER_SIZE,
  SNAP_LOG_RECORD_SIZE,
  TRUNK_ENTRY_SIZE,
} from '../../dog/farm.js'
import { testNode } from '../helpers/nodes.js'

const node = (port: number) => testNode(port)
const digest = (byte: number): Buffer => Buffer.alloc(20, byte)

t.test('majority vote over replica digests', async (t) => {
  const [a, b, c] = [node(1), node(2), node(3)]
  t.equal(
    voteMajority([
      { node: a, digest: undefined },
      { node: b, digest: undefined },
    ]),
    'no node has',
  )
  t.equal(
    voteMajority([
      { node: a, digest: digest(1) },
      { node: b, digest: digest(2) },
    ]),
    'no majority of',
    'one against one',
  )
  t.equal(
    voteMajority([
      { node: a, digest: digest(1) },
      { node: b, digest: digest(2) },
      { node: c, digest: digest(3) },
    ]),
    'no majority of',
  )
  const two = voteMajority([
    { node: a, digest: digest(1) },
    { node: b, digest: digest(2) },
    { node: c, digest: digest(2) },
  ])
  t.equal(typeof two === 'string' ? two : two.node.port, 3, "two of three agree: the vote's candidate (the last streak's first replica) is the source")
  const lone = voteMajority([
    { node: a, digest: undefined },
    { node: b, digest: digest(7) },
    { node: c, digest: undefined },
  ])
  t.equal(typeof lone === 'string' ? lone : lone.node.port, 2, 'a single surviving replica is the majority of the live ones')
  const missingOne = voteMajority([
    { node: a, digest: digest(4) },
    { node: b, digest: undefined },
    { node: c, digest: digest(4) },
  ])
  t.equal(typeof missingOne === 'string' ? missingOne : missingOne.node.port, 1)
})

t.test('backup records are trimmed to the changed sectors', async (t) => {
  const from = Buffer.alloc(8 * 512)
  t.equal(changedRange(from, Buffer.from(from)), undefined, 'equal objects make no record')
  const to = Buffer.from(from)
  to[3 * 512 + 1] = 1
  t.same(changedRange(from, to), { offset: 3 * 512, length: 512 })
  to[5 * 512 + 511] = 1
  t.same(changedRange(from, to), { offset: 3 * 512, length: 3 * 512 }, 'unchanged sectors between changed ones stay')
  to[0] = 9
  to[8 * 512 - 1] = 9
  t.same(changedRange(from, to), { offset: 0, length: 8 * 512 })
  t.same([...encodeBackupHeader()], [1, 0, 0, 0, 0x92, 0x11, 0x92, 0x11], 'version 1, magic 0x11921192, little-endian')
  t.same([...encodeRecordHeader(0xffffffff, 0, 0)], [0xff, 0xff, 0xff, 0xff, ...Array(12).fill(0)], 'the terminator')
  t.same([...encodeRecordHeader(2, 512, 1024)], [2, 0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0])
})

t.test('farm layouts', async (t) => {
  const header = encodeSnapLogHeader({ copies: 3, copyPolicy: 0x21, blockSizeShift: 22 })
  t.equal(header.length, SNAP_LOG_HEADER_SIZE)
  t.same([...header.subarray(0, 11)], [0x01, 0xc0, 0xe1, 0xfe, 1, 0, 0, 0, 3, 0x21, 22])
  const record = encodeSnapLogRecord({ idx: 2, tag: 'nightly', timeSeconds: 1_700_000_000, trunkSha1: digest(0xab) })
  t.equal(record.length, SNAP_LOG_RECORD_SIZE)
  t.equal(record.readUInt32LE(0), 2)
  t.equal(record.subarray(4, 12).toString('latin1'), 'nightly\0')
  t.equal(record.readBigUInt64LE(264), 1_700_000_000n)
  t.ok(record.subarray(272, 292).equals(digest(0xab)))
  t.same([...record.subarray(292)], [0, 0, 0, 0], 'padding')
  const entries = [
    { oid: 0x80ed202b00000000n, copies: 2, copyPolicy: 0, blockSizeShift: 22, sha1: digest(1) },
    { oid: 0x00ed202b00000003n, copies: 3, copyPolicy: 0x12, blockSizeShift: 23, sha1: digest(2) },
  ]
  const trunk = encodeTrunk(entries)
  t.equal(trunk.length, 2 * TRUNK_ENTRY_SIZE)
  t.same([...trunk.subarray(32, 44)], [3, 0, 0, 0, 0x2b, 0x20, 0xed, 0, 3, 0x12, 23, 0])
  t.same(decodeTrunk(trunk), entries)
})
