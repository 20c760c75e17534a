// Tests for lib/oid.ts: oid bit layout, object sizes and inode offsets (wire-protocol.md §8).
import t from 'tap'
import {
  keyFileName,
  oidOfKey,
  parseKeyFileName,
  stripIndexOfKey,
  stripKey,
  LEDGER_BIT,
  MAX_DATA_OBJS,
  OLD_SD_INODE_SIZE,
  SD_ATTR_OBJ_SIZE,
  SD_DATA_OBJ_SIZE,
  SD_INODE_DATA_INDEX_SIZE,
  SD_INODE_HEADER_SIZE,
  SD_INODE_SIZE,
  SD_LEDGER_OBJ_SIZE,
  SD_NR_VDIS,
  SD_VDI_MASK,
  VDI_ATTR_BIT,
  VDI_BIT,
  VDI_BTREE_BIT,
  VMSTATE_BIT,
  inodeGrefOffset,
  inodeIndexOffset,
  isDataObj,
  isLedgerObj,
  isVdiAttrObj,
  isVdiBtreeObj,
  isVdiObj,
  isVmstateObj,
  ledgerOidOf,
  objectSizeOf,
  oidToHex,
  oidToIdx,
  oidToVid,
  parseOidHex,
  vidToAttrOid,
  vidToBtreeOid,
  vidToDataOid,
  vidToVdiOid,
  vidToVmstateOid,
} from '../../lib/oid.js'

t.test('constants', async (t) => {
  t.equal(VDI_BIT, 0x8000000000000000n)
  t.equal(VMSTATE_BIT, 0x4000000000000000n)
  t.equal(VDI_ATTR_BIT, 0x2000000000000000n)
  t.equal(VDI_BTREE_BIT, 0x1000000000000000n)
  t.equal(LEDGER_BIT, 0x0800000000000000n)
  t.equal(SD_VDI_MASK, 0x00ffffff00000000n)
  t.equal(SD_NR_VDIS, 2 ** 24)
  t.equal(MAX_DATA_OBJS, 2 ** 20)
  t.equal(SD_INODE_SIZE, 12587576)
  t.equal(SD_INODE_HEADER_SIZE, 4664)
  t.equal(SD_INODE_DATA_INDEX_SIZE, 4194304)
  t.equal(OLD_SD_INODE_SIZE, 4198968)
  t.equal(SD_ATTR_OBJ_SIZE, 66320)
  t.equal(SD_DATA_OBJ_SIZE, 4194304)
  t.equal(SD_LEDGER_OBJ_SIZE, 4194304)
})

t.test('oid formulas', async (t) => {
  t.equal(vidToVdiOid(0x7c2b25), 0x807c2b2500000000n)
  t.equal(vidToDataOid(0x7c2b25, 1), 0x007c2b2500000001n)
  t.equal(vidToDataOid(0xffffff, 0xffffffff), 0x00ffffffffffffffn)
  t.equal(vidToVmstateOid(0x7c2b25, 3), 0x407c2b2500000003n)
  t.equal(vidToAttrOid(0x7c2b25, 0xeacb4fc2), 0x207c2b25eacb4fc2n, '§12.9 example')
  t.equal(vidToBtreeOid(0x7c2b25, 2), 0x107c2b2500000002n)
  t.equal(ledgerOidOf(0x007c2b2500000001n), 0x087c2b2500000001n)
  t.equal(oidToVid(0x807c2b2500000000n), 0x7c2b25)
  t.equal(oidToVid(0x207c2b25eacb4fc2n), 0x7c2b25)
  t.equal(oidToVid(0x087c2b2500000001n), 0x7c2b25)
  t.equal(oidToIdx(0x207c2b25eacb4fc2n), 0xeacb4fc2)
  t.equal(oidToIdx(0x007c2b2500000005n), 5)
})

t.test('object kinds', async (t) => {
  const inode = vidToVdiOid(1)
  const data = vidToDataOid(1, 0)
  const vmstate = vidToVmstateOid(1, 0)
  const attr = vidToAttrOid(1, 7)
  const btree = vidToBtreeOid(1, 0)
  const ledger = ledgerOidOf(data)
  const kinds = [isVdiObj, isVmstateObj, isVdiAttrObj, isVdiBtreeObj, isLedgerObj, isDataObj]
  const table: [bigint, boolean[]][] = [
    [inode, [true, false, false, false, false, false]],
    [vmstate, [false, true, false, false, false, false]],
    [attr, [false, false, true, false, false, false]],
    [btree, [false, false, false, true, false, false]],
    [ledger, [false, false, false, false, true, false]],
    [data, [false, false, false, false, false, true]],
  ]
  for (const [oid, want] of table)
    t.same(
      kinds.map((f) => f(oid)),
      want,
      oidToHex(oid),
    )
  t.ok(isDataObj(0x00ffffffffffffffn), 'reserved bits 56..58 still data')
})

t.test('object sizes', async (t) => {
  t.equal(objectSizeOf(vidToVdiOid(1), 22), SD_INODE_SIZE)
  t.equal(objectSizeOf(vidToAttrOid(1, 0), 22), SD_ATTR_OBJ_SIZE)
  t.equal(objectSizeOf(vidToBtreeOid(1, 0), 20), 4194304)
  t.equal(objectSizeOf(ledgerOidOf(vidToDataOid(1, 0)), 20), 4194304)
  t.equal(objectSizeOf(vidToDataOid(1, 0), 22), 4194304)
  t.equal(objectSizeOf(vidToDataOid(1, 0), 20), 1048576)
  t.equal(objectSizeOf(vidToVmstateOid(1, 0), 23), 8388608)
  t.equal(objectSizeOf(vidToDataOid(1, 0), 31), 2 ** 31)
})

t.test('inode offsets', async (t) => {
  t.equal(inodeIndexOffset(0), 4664)
  t.equal(inodeIndexOffset(MAX_DATA_OBJS), OLD_SD_INODE_SIZE)
  t.equal(inodeGrefOffset(0), 4198968)
  t.equal(inodeGrefOffset(MAX_DATA_OBJS), SD_INODE_SIZE)
})

t.test('hex form', async (t) => {
  t.equal(oidToHex(0x807c2b2500000000n), '807c2b2500000000')
  t.equal(oidToHex(1n), '0000000000000001')
  t.equal(oidToHex(0n), '0000000000000000')
  t.equal(parseOidHex('807c2b2500000000'), 0x807c2b2500000000n)
  t.equal(parseOidHex('0x7C2B2500000001'), 0x007c2b2500000001n)
  t.equal(parseOidHex('1'), 1n)
  t.equal(parseOidHex(''), undefined)
  t.equal(parseOidHex('0x'), undefined)
  t.equal(parseOidHex('12345678901234567'), undefined, '17 digits')
  t.equal(parseOidHex('xyz'), undefined)
  t.equal(parseOidHex(' 1'), undefined)
})

t.test('store keys: a replicated object is its oid, a strip its oid and index', async (t) => {
  const oid = 0x003933f900000002n
  t.equal(keyFileName(oid), '003933f900000002')
  t.equal(stripIndexOfKey(oid), undefined)
  for (const i of [0, 5, 30]) {
    const key = stripKey(oid, i)
    t.not(key, oid)
    t.equal(oidOfKey(key), oid)
    t.equal(stripIndexOfKey(key), i)
    t.equal(keyFileName(key), `003933f900000002_${i}`)
    t.equal(parseKeyFileName(keyFileName(key)), key)
  }
  t.equal(parseKeyFileName('003933f900000002'), oid)
  t.equal(parseKeyFileName('003933f900000002.tmp'), undefined)
  t.equal(parseKeyFileName('003933f900000002_'), undefined)
  t.not(stripKey(oid, 0), stripKey(oid, 1))
})
