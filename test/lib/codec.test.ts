// Golden-byte tests for lib/codec.ts, lib/structs.ts and lib/inode.ts against the frames the
// original dog exchanged with an original cluster: every header decodes and re-encodes to the
// same 48 bytes, and the payloads dog relies on decode to the values the capture shows.
import t from 'tap'
import {
  COMMON_HEADER,
  REQ_CLUSTER,
  REQ_FORW,
  REQ_INODE_COHERENCE,
  REQ_OBJ,
  REQ_REF,
  REQ_VDI,
  REQ_VDI_STATE,
  REQ_VDI_STATE_CHECKPOINT,
  RSP_CLUSTER_DEFAULT,
  RSP_HASH,
  RSP_NODE,
  RSP_OBJ,
  RSP_VDI,
  decodeRequestHeader,
  decodeResponseHeader,
  encodeRequestHeader,
  encodeResponseHeader,
  maxResponsePayload,
  reqVariant,
  requestCarriesPayload,
  rspVariant,
  validateRequestHeader,
} from '../../lib/codec.js'
import { sdHashAttrId, sdHashVdi } from '../../lib/hash.js'
import {
  SD_INODE_HEADER_SIZE,
  SD_INODE_INDEX_AT,
  SD_INODE_SIZE,
  InodeIndex,
  decodeInodeHeader,
  grefOffset,
  indexOffset,
  isClone,
  isSnapshot,
} from '../../lib/inode.js'
import { type Layout, readFields } from '../../lib/layout.js'
import { vidToAttrOid, vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import {
  SD_FLAG_CMD_CREAT,
  SD_FLAG_CMD_DIRECT,
  SD_FLAG_CMD_WRITE,
  SD_MAX_DATA_LENGTH,
  SD_MAX_NODES,
  SD_OP_CLUSTER_INFO,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_DEL_VDI,
  SD_OP_GET_NODE_LIST,
  SD_OP_GET_VDI_ATTR,
  SD_OP_GET_VDI_COPIES,
  SD_OP_GET_VDI_INFO,
  SD_OP_MAKE_FS,
  SD_OP_NEW_VDI,
  SD_OP_READ_OBJ,
  SD_OP_READ_VDIS,
  SD_OP_STAT_CLUSTER,
  SD_OP_WRITE_OBJ,
  SD_PROTO_VER,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_TAG,
  SD_RES_SUCCESS,
  SD_RES_VER_MISMATCH,
  SD_RES_WAIT_FOR_FORMAT,
  SD_SHEEP_PROTO_VER,
  SD_STATUS_OK,
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_VDI_BITMAP_SIZE,
} from '../../lib/proto.js'
import {
  CLUSTER_INFO_SIZE,
  SD_NODE_SIZE,
  VDI_ATTR,
  VDI_ATTR_SIZE,
  VDI_ATTR_VALUE_AT,
  VDI_STATE_SIZE,
  decodeClusterInfo,
  decodeEpochLogs,
  decodeNodes,
  decodeVdiState,
  encodeNodes,
  epochLogStride,
  nodeAddrText,
} from '../../lib/structs.js'
import { type FixtureExchange, type FixtureFrame, exchangesOf, findCommand, loadFixture } from '../helpers/fixture.js'

const fx = loadFixture()

/** The request variant each opcode uses (wire-protocol.md §2); undefined = common part only. */
function requestVariant(opcode: number): Layout | undefined {
  if ([0x01, 0x02, 0x03, 0x04, 0x05, 0x16, 0x98, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xac, 0xb0, 0xb4, 0xbd].includes(opcode)) return REQ_OBJ
  if ((opcode >= 0x11 && opcode <= 0x18) || opcode === 0x89) return REQ_VDI
  if ([0x84, 0x87, 0xbf].includes(opcode)) return REQ_CLUSTER
  if ([0xaf, 0xc0].includes(opcode)) return REQ_VDI_STATE
  if ([0xc1, 0xc2].includes(opcode)) return REQ_REF
  if (opcode === 0xc5) return REQ_FORW
  if (opcode === 0xc7) return REQ_VDI_STATE_CHECKPOINT
  if (opcode === 0xc8) return REQ_INODE_COHERENCE
  return undefined
}

/** The response variant each opcode uses (wire-protocol.md §3); undefined = result only. */
function responseVariant(opcode: number): Layout | undefined {
  if ([0x11, 0x12, 0x13, 0x14, 0x17, 0x89].includes(opcode)) return RSP_VDI
  if ([0x82, 0x86].includes(opcode)) return RSP_NODE
  if ([0x01, 0x02, 0x03, 0x04, 0x05, 0xa3, 0xa4, 0xa5, 0xa6].includes(opcode)) return RSP_OBJ
  if (opcode === 0xb4) return RSP_HASH
  if (opcode === 0x18) return RSP_CLUSTER_DEFAULT
  return undefined
}

function hex(b: Buffer): string {
  return b.toString('hex')
}

function only(exchanges: FixtureExchange[], what: string): FixtureExchange {
  if (exchanges.length === 0) throw new Error(`no ${what} in the fixture`)
  return exchanges[0]
}

function rspOf(e: FixtureExchange): FixtureFrame {
  if (!e.rsp) throw new Error(`request at fixture line ${e.req.line} has no response`)
  return e.rsp
}

t.test('fixture loader', async (t) => {
  t.ok(fx.commands.length >= 25, 'about 30 dog commands')
  t.same(fx.commands[0].argv, ['cluster', 'format', '-c', '2'])
  t.equal(fx.commands[0].exitCode, 0)
  t.equal(fx.commands[0].stdout, 'using backend plain store\n')
  const write = findCommand(fx, 'vdi', 'write')
  t.same(write.argv, ['vdi', 'write', 'alpha', '0', '6M'])
  t.equal(write.stdinNote, 'stdin: 6 MiB, byte i = i mod 251')
  t.ok(
    fx.exchanges.every((e) => e.rsp !== undefined),
    'every request has its response',
  )
  t.equal(fx.frames.length, fx.exchanges.length * 2)
  t.equal(
    fx.commands.reduce((n, c) => n + c.frames.length, 0),
    fx.frames.length,
    'every frame belongs to a command',
  )
})

t.test('every request header re-encodes byte for byte', async (t) => {
  let checked = 0
  for (const { req } of fx.exchanges) {
    const decoded = decodeRequestHeader(req.header)
    if (requestCarriesPayload(decoded)) t.equal(req.length, decoded.dataLength, `line ${req.line}: payload length`)
    else t.equal(req.length, 0, `line ${req.line}: no payload without CMD_WRITE`)
    const variant = requestVariant(decoded.opcode)
    const again = encodeRequestHeader({
      opcode: decoded.opcode,
      protoVer: decoded.protoVer,
      flags: decoded.flags,
      epoch: decoded.epoch,
      id: decoded.id,
      dataLength: decoded.dataLength,
      variant,
      fields: variant ? reqVariant(decoded, variant) : undefined,
    })
    if (hex(again) !== hex(req.header)) t.fail(`line ${req.line}: ${hex(again)} != ${hex(req.header)}`)
    else checked++
  }
  t.equal(checked, fx.exchanges.length, `${checked} request headers`)
})

t.test('every response header re-encodes byte for byte', async (t) => {
  let checked = 0
  for (const e of fx.exchanges) {
    const rsp = rspOf(e)
    const decoded = decodeResponseHeader(rsp.header)
    t.equal(decoded.opcode, e.req.opcode, `line ${rsp.line}: opcode echoed`)
    t.equal(decoded.id, decodeRequestHeader(e.req.header).id, `line ${rsp.line}: id echoed`)
    t.equal(decoded.dataLength, rsp.length, `line ${rsp.line}: data_length is the payload length`)
    t.ok(decoded.dataLength <= maxResponsePayload(decodeRequestHeader(e.req.header)), `line ${rsp.line}: within what was asked`)
    const common = readFields(rsp.header, COMMON_HEADER)
    t.equal(common.protoVer, 0)
    t.equal(common.flags, 0)
    const variant = responseVariant(decoded.opcode)
    const again = encodeResponseHeader({
      opcode: decoded.opcode,
      epoch: decoded.epoch,
      id: decoded.id,
      dataLength: decoded.dataLength,
      result: decoded.result,
      variant,
      fields: variant ? rspVariant(decoded, variant) : undefined,
    })
    if (hex(again) !== hex(rsp.header)) t.fail(`line ${rsp.line}: ${hex(again)} != ${hex(rsp.header)}`)
    else checked++
  }
  t.equal(checked, fx.exchanges.length, `${checked} response headers`)
})

t.test('GET_NODE_LIST: three sd_nodes at 127.0.0.1:7000..7002', async (t) => {
  const e = only(exchangesOf(fx, SD_OP_GET_NODE_LIST), 'GET_NODE_LIST')
  const req = decodeRequestHeader(e.req.header)
  t.equal(req.protoVer, SD_SHEEP_PROTO_VER)
  t.equal(req.dataLength, SD_MAX_NODES * SD_NODE_SIZE, 'dog offers room for 6144 nodes')
  const rsp = rspOf(e)
  const { nrNodes } = rspVariant(decodeResponseHeader(rsp.header), RSP_NODE)
  t.equal(nrNodes, 3)
  t.equal(rsp.length, 3 * SD_NODE_SIZE)
  const nodes = decodeNodes(rsp.payload, nrNodes)
  t.same(nodes.map(nodeAddrText), ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002'])
  t.same(
    nodes.map((n) => n.zone),
    [0, 1, 2],
  )
  t.same(
    nodes.map((n) => n.nrVnodes),
    [128, 128, 128],
  )
  t.same(
    nodes.map((n) => n.ioPort),
    [0, 0, 0],
  )
  t.ok(
    nodes.every((n) => n.ioAddr.every((b) => b === 0)),
    'no IO address',
  )
  t.ok(
    nodes.every((n) => typeof n.space === 'bigint' && n.space > 10n ** 9n),
    'space is a u64 bigint',
  )
  t.equal(nodes[0].space, 0x02f14c6000n)
  // bytes 0..23 are the sender's tree links: garbage on the wire, zero when we encode
  const again = encodeNodes(nodes)
  for (let i = 0; i < 3; i++) {
    const at = i * SD_NODE_SIZE
    t.equal(hex(again.subarray(at + 24, at + SD_NODE_SIZE)), hex(rsp.payload.subarray(at + 24, at + SD_NODE_SIZE)), `node ${i} re-encodes`)
    t.ok(again.subarray(at, at + 24).every((b) => b === 0))
  }
})

t.test('STAT_CLUSTER: probe, full entries and the unformatted answer', async (t) => {
  const all = exchangesOf(fx, SD_OP_STAT_CLUSTER)
  // the very first probe, before format: WAIT_FOR_FORMAT and no entries
  const first = rspOf(all[0])
  t.equal(decodeResponseHeader(first.header).result, SD_RES_WAIT_FOR_FORMAT)
  t.equal(first.length, 0)

  const probe = all.find((e) => e.rsp && e.rsp.length === 48)!
  const probeReq = reqVariant(decodeRequestHeader(probe.req.header), REQ_CLUSTER)
  t.equal(probeReq.nodesNr, 0)
  t.equal(decodeRequestHeader(probe.req.header).dataLength, 48)
  const [p] = decodeEpochLogs(rspOf(probe).payload, 0)
  t.equal(p.epoch, 1)
  t.equal(p.nrNodes, 0)
  t.equal(p.time, 0n, 'time is 0 when nodes_nr is 0')
  t.equal(p.ctime, 0x6b0362051377c7a8n)
  t.equal(p.nrCopies, 2)
  t.equal(p.copyPolicy, 0)
  t.equal(p.flags, SD_CLUSTER_FLAG_AUTO_VNODES)
  t.equal(p.drvName, 'plain')
  t.equal(p.disableRecovery, 0)
  t.same(p.nodes, [])

  const full = all.find((e) => reqVariant(decodeRequestHeader(e.req.header), REQ_CLUSTER).nodesNr === 3)!
  t.equal(decodeRequestHeader(full.req.header).dataLength, epochLogStride(3))
  const logs = decodeEpochLogs(rspOf(full).payload, 3)
  t.equal(logs.length, 1)
  t.equal(logs[0].epoch, 1)
  t.equal(logs[0].nrNodes, 3)
  t.equal(logs[0].ctime, p.ctime)
  t.equal(logs[0].time, p.ctime >> 32n, 'epoch 1 was created when the cluster was formatted')
  t.same(logs[0].nodes.map(nodeAddrText), ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002'])
  t.equal(decodeResponseHeader(rspOf(full).header).result, SD_RES_SUCCESS)
})

t.test('MAKE_FS request', async (t) => {
  const e = only(exchangesOf(fx, SD_OP_MAKE_FS), 'MAKE_FS')
  const req = decodeRequestHeader(e.req.header)
  t.equal(req.flags, SD_FLAG_CMD_WRITE)
  const c = reqVariant(req, REQ_CLUSTER)
  t.equal(c.copies, 2)
  t.equal(c.copyPolicy, 0)
  t.equal(c.flags, SD_CLUSTER_FLAG_AUTO_VNODES)
  t.equal(c.ctime, 0x6b0362051377c7a8n)
  t.equal(e.req.payload.toString('latin1'), 'plain\0', 'store name, NUL-terminated')
})

t.test('CLUSTER_INFO payload', async (t) => {
  const e = only(exchangesOf(fx, SD_OP_CLUSTER_INFO), 'CLUSTER_INFO')
  t.equal(decodeRequestHeader(e.req.header).dataLength, CLUSTER_INFO_SIZE)
  const payload = rspOf(e).payload
  t.equal(payload.length, CLUSTER_INFO_SIZE)
  const ci = decodeClusterInfo(payload)
  t.equal(ci.protoVer, SD_SHEEP_PROTO_VER)
  t.equal(ci.disableRecovery, 0)
  t.equal(ci.nrNodes, 3)
  t.equal(ci.epoch, 1)
  t.equal(ci.ctime, 0x6b0362051377c7a8n)
  t.equal(ci.flags, SD_CLUSTER_FLAG_AUTO_VNODES)
  t.equal(ci.nrCopies, 2)
  t.equal(ci.copyPolicy, 0)
  t.equal(ci.status, SD_STATUS_OK)
  t.equal(ci.blockSizeShift, 22)
  t.equal(ci.defaultStore, 'plain')
  t.same(ci.nodes.map(nodeAddrText), ['127.0.0.1:7000', '127.0.0.1:7001', '127.0.0.1:7002'])
  t.ok(
    payload.subarray(48 + 3 * SD_NODE_SIZE).every((b) => b === 0),
    'unused node slots are zero',
  )
})

t.test('NEW_VDI, GET_VDI_INFO and DEL_VDI fields', async (t) => {
  const [create, snapshot, clone] = exchangesOf(fx, SD_OP_NEW_VDI)
  const createReq = decodeRequestHeader(create.req.header)
  t.equal(createReq.protoVer, SD_PROTO_VER)
  t.equal(createReq.flags, SD_FLAG_CMD_WRITE)
  t.equal(createReq.dataLength, 256)
  const cv = reqVariant(createReq, REQ_VDI)
  t.equal(cv.vdiSize, 16n << 20n)
  t.equal(cv.baseVdiId, 0)
  t.equal(cv.snapid, 0)
  t.equal(create.req.payload.length, 256)
  t.equal(create.req.payload.subarray(0, 6).toString('latin1'), 'alpha\0')
  const created = rspVariant(decodeResponseHeader(rspOf(create).header), RSP_VDI)
  t.equal(created.vdiId, 0xed202b)
  t.equal(created.copies, 2)
  t.equal(created.blockSizeShift, 22)
  t.equal(created.vdiId, sdHashVdi('alpha'), 'a fresh name gets its hash as vid')

  const sv = reqVariant(decodeRequestHeader(snapshot.req.header), REQ_VDI)
  t.equal(sv.baseVdiId, 0xed202b)
  t.equal(sv.snapid, 1)
  t.equal(sv.copies, 2)
  t.equal(sv.blockSizeShift, 22)
  t.equal(rspVariant(decodeResponseHeader(rspOf(snapshot).header), RSP_VDI).vdiId, 0xed202c, 'the working VDI moves to a new vid')

  t.equal(reqVariant(decodeRequestHeader(clone.req.header), REQ_VDI).baseVdiId, 0xed202b)
  t.equal(clone.req.payload.subarray(0, 5).toString('latin1'), 'beta\0')
  t.equal(rspVariant(decodeResponseHeader(rspOf(clone).header), RSP_VDI).vdiId, 0x4620a7)

  const infos = exchangesOf(fx, SD_OP_GET_VDI_INFO)
  for (const e of infos) {
    const req = decodeRequestHeader(e.req.header)
    t.equal(req.dataLength, 512, 'dog sends name[256] + tag[256]')
    t.equal(e.req.payload.length, 512)
  }
  const found = rspVariant(decodeResponseHeader(rspOf(infos[0]).header), RSP_VDI)
  t.same({ vid: found.vdiId, copies: found.copies, shift: found.blockSizeShift }, { vid: 0xed202b, copies: 2, shift: 22 })
  // `vdi snapshot -s snap1` first checks that the tag is free: NO_TAG
  const tagged = infos.find((e) => e.req.payload.subarray(256, 261).toString('latin1') === 'snap1')!
  t.equal(decodeResponseHeader(rspOf(tagged).header).result, SD_RES_NO_TAG)

  const deletes = exchangesOf(fx, SD_OP_DEL_VDI)
  t.equal(deletes.length, 2)
  t.equal(rspVariant(decodeResponseHeader(rspOf(deletes[0]).header), RSP_VDI).vdiId, 0x4620a7)
})

t.test('READ_VDIS bitmap', async (t) => {
  const last = exchangesOf(fx, SD_OP_READ_VDIS).at(-1)!
  const bitmap = rspOf(last).payload
  t.equal(bitmap.length, SD_VDI_BITMAP_SIZE)
  const set: number[] = []
  bitmap.forEach((byte, i) => {
    for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) set.push(i * 8 + bit)
  })
  t.same(set, [0x4620a7, 0xed202b, 0xed202c], 'in-use bits stay set after deletion')
})

t.test('inode inside the 12 587 576-byte READ_OBJ responses', async (t) => {
  const whole = exchangesOf(fx, SD_OP_READ_OBJ).filter((e) => e.rsp?.length === SD_INODE_SIZE)
  t.ok(whole.length >= 5)
  for (const e of whole) {
    const req = decodeRequestHeader(e.req.header)
    t.equal(req.dataLength, SD_INODE_SIZE)
    t.equal(reqVariant(req, REQ_OBJ).offset, 0)
  }
  // `vdi write` reads the fresh inode: nothing allocated yet
  const fresh = decodeInodeHeader(rspOf(only(exchangesOf(findCommand(fx, 'vdi', 'write'), SD_OP_READ_OBJ), 'inode read')).payload)
  t.equal(fresh.name, 'alpha')
  t.equal(fresh.tag, '')
  t.equal(fresh.vdiSize, 16n << 20n)
  t.equal(fresh.vdiId, 0xed202b)
  t.equal(fresh.nrCopies, 2)
  t.equal(fresh.blockSizeShift, 22)
  t.equal(fresh.snapId, 1)
  t.equal(fresh.parentVdiId, 0)
  t.equal(fresh.snapCtime, 0n)
  t.equal(fresh.createTime >> 32n, 0x6b036206n)
  t.notOk(isSnapshot(fresh))

  // `vdi clone -s snap1 alpha beta` reads the snapshot: two objects written, gref counts bumped
  const cloneRead = rspOf(only(exchangesOf(findCommand(fx, 'vdi', 'clone'), SD_OP_READ_OBJ), 'inode read')).payload
  const snap = decodeInodeHeader(cloneRead)
  t.equal(snap.name, 'alpha')
  t.equal(snap.tag, 'snap1')
  t.equal(snap.vdiId, 0xed202b)
  t.ok(isSnapshot(snap))
  const index = new InodeIndex(cloneRead.subarray(SD_INODE_INDEX_AT, SD_INODE_INDEX_AT + 16))
  t.same(
    [0, 1, 2, 3].map((i) => index.get(i)),
    [0xed202b, 0xed202b, 0, 0],
  )
  t.equal(cloneRead.readInt32LE(grefOffset(0) + 4), 1, 'gref[0].count after the snapshot')
  t.equal(cloneRead.readInt32LE(grefOffset(1) + 4), 1)

  // after the snapshot the working VDI is ed202c, child of ed202b, sharing its objects
  const workRead = rspOf(only(exchangesOf(findCommand(fx, 'vdi', 'object', 'map'), SD_OP_READ_OBJ), 'inode read')).payload
  const work = decodeInodeHeader(workRead)
  t.equal(work.vdiId, 0xed202c)
  t.equal(work.parentVdiId, 0xed202b)
  t.equal(work.snapId, 2)
  t.equal(work.createTime, snap.snapCtime, 'the new working VDI is created when the snapshot is taken')
  t.notOk(isSnapshot(work))
  t.notOk(isClone(work), 'snap_id 2: not a clone')
  t.equal(workRead.readUInt32LE(indexOffset(0)), 0xed202b)
  t.equal(workRead.readUInt32LE(indexOffset(1)), 0xed202b)
  t.equal(workRead.readInt32LE(grefOffset(0)), 1, 'gref[0].generation of the child')

  const beta = decodeInodeHeader(rspOf(only(exchangesOf(findCommand(fx, 'vdi', 'delete', 'beta'), SD_OP_READ_OBJ), 'inode read')).payload)
  t.equal(beta.name, 'beta')
  t.equal(beta.snapId, 1)
  t.ok(isClone(beta))
})

t.test('vdi write: create, index update, partial object', async (t) => {
  const cmd = findCommand(fx, 'vdi', 'write')
  const creates = exchangesOf(cmd, SD_OP_CREATE_AND_WRITE_OBJ)
  const updates = exchangesOf(cmd, SD_OP_WRITE_OBJ)
  t.equal(creates.length, 2)
  t.equal(updates.length, 2)
  creates.forEach((e, idx) => {
    const req = decodeRequestHeader(e.req.header)
    const obj = reqVariant(req, REQ_OBJ)
    t.equal(obj.oid, vidToDataOid(0xed202b, idx))
    t.equal(obj.copies, 2)
    t.equal(obj.offset, 0)
    t.equal(req.flags, SD_FLAG_CMD_WRITE)
    const data = e.req.payload
    t.equal(data.length, idx === 0 ? 4 << 20 : 2 << 20)
    const base = idx * (4 << 20)
    t.ok(
      [0, 1, 250, 251, data.length - 1].every((i) => data[i] === (base + i) % 251),
      'byte i = i mod 251',
    )
  })
  updates.forEach((e, idx) => {
    const obj = reqVariant(decodeRequestHeader(e.req.header), REQ_OBJ)
    t.equal(obj.oid, vidToVdiOid(0xed202b))
    t.equal(obj.offset, SD_INODE_HEADER_SIZE + 4 * idx)
    t.equal(obj.copies, 2)
    t.equal(e.req.payload.readUInt32LE(0), 0xed202b)
  })
  // `vdi read alpha 4096 8192` reads straight from the object: flags 0, offset 4096
  const read = exchangesOf(findCommand(fx, 'vdi', 'read'), SD_OP_READ_OBJ).at(-1)!
  const rreq = decodeRequestHeader(read.req.header)
  t.equal(rreq.flags, 0)
  t.equal(rreq.dataLength, 8192)
  t.same(reqVariant(rreq, REQ_OBJ).offset, 4096)
  t.equal(rspOf(read).payload[0], 4096 % 251)
  // `vdi list` reads the header with the direct flag
  const listRead = exchangesOf(findCommand(fx, 'vdi', 'list'), SD_OP_READ_OBJ)[0]
  t.equal(decodeRequestHeader(listRead.req.header).flags, SD_FLAG_CMD_DIRECT)
})

t.test('GET_VDI_ATTR request payload (VDI_ATTR layout)', async (t) => {
  const [set, get] = exchangesOf(fx, SD_OP_GET_VDI_ATTR)
  const req = decodeRequestHeader(set.req.header)
  t.equal(req.flags, SD_FLAG_CMD_WRITE | SD_FLAG_CMD_CREAT)
  t.equal(req.dataLength, VDI_ATTR_SIZE)
  t.equal(decodeRequestHeader(get.req.header).flags, SD_FLAG_CMD_WRITE)
  const attr = readFields(set.req.payload, VDI_ATTR)
  t.equal(attr.name, 'alpha')
  t.equal(attr.tag, '')
  t.equal(attr.ctime, 0n)
  t.equal(attr.snapId, 0)
  t.equal(attr.valueLen, 5)
  t.equal(attr.key, 'owner')
  t.equal(set.req.payload.subarray(VDI_ATTR_VALUE_AT, VDI_ATTR_VALUE_AT + 6).toString('latin1'), 'alice\0')
  const rsp = rspVariant(decodeResponseHeader(rspOf(set).header), RSP_VDI)
  t.equal(rsp.vdiId, 0xed202b)
  t.equal(rsp.attrId, 0x6d21d6c0)
  t.equal(rsp.copies, 2)
  t.equal(rsp.attrId, sdHashAttrId('alpha', '', 0, 'owner'), 'first probe of the attribute id')
  // getattr then reads the attribute object
  const read = exchangesOf(findCommand(fx, 'vdi', 'getattr'), SD_OP_READ_OBJ)[0]
  t.equal(reqVariant(decodeRequestHeader(read.req.header), REQ_OBJ).oid, vidToAttrOid(0xed202b, 0x6d21d6c0))
  const value = rspOf(read).payload
  t.equal(readFields(value, VDI_ATTR).valueLen, 5)
  t.equal(value.subarray(VDI_ATTR_VALUE_AT, VDI_ATTR_VALUE_AT + 5).toString('latin1'), 'alice')
})

t.test('GET_VDI_COPIES: vdi_state records', async (t) => {
  const e = exchangesOf(fx, SD_OP_GET_VDI_COPIES)[0]
  t.equal(decodeRequestHeader(e.req.header).dataLength, 512 * VDI_STATE_SIZE, 'dog starts with 512 entries')
  const payload = rspOf(e).payload
  t.equal(payload.length % VDI_STATE_SIZE, 0)
  const states = Array.from({ length: payload.length / VDI_STATE_SIZE }, (_, i) => decodeVdiState(payload, i * VDI_STATE_SIZE))
  t.same(states.map((s) => s.vid).sort(), [0x4620a7, 0xed202b, 0xed202c].sort())
  const snapshot = states.find((s) => s.vid === 0xed202b)!
  t.equal(snapshot.snapshot, 1)
  t.equal(snapshot.nrCopies, 2)
  t.equal(snapshot.blockSizeShift, 22)
  const clone = states.find((s) => s.vid === 0x4620a7)!
  t.equal(clone.parentVid, 0xed202b)
  t.equal(clone.lockState, 1, 'unlocked')
})

t.test('validateRequestHeader', async (t) => {
  for (const { req } of fx.exchanges) {
    const verdict = validateRequestHeader(decodeRequestHeader(req.header))
    if (!verdict.ok) t.fail(`line ${req.line}: ${verdict.reason}`)
  }
  t.pass('all fixture requests accepted')

  const base = { protoVer: SD_PROTO_VER, opcode: SD_OP_READ_OBJ, flags: 0, epoch: 0, id: 1, dataLength: 4096 }
  t.same(validateRequestHeader(base), { ok: true })
  t.same(validateRequestHeader({ ...base, protoVer: 0 }), { ok: true }, 'sheepfs sends 0')
  t.same(validateRequestHeader({ ...base, protoVer: 1 }), { ok: true }, 'QEMU and tgt send 1')

  const tooNew = validateRequestHeader({ ...base, protoVer: 3 })
  t.equal(tooNew.ok, false)
  if (!tooNew.ok) {
    t.equal(tooNew.result, SD_RES_VER_MISMATCH)
    t.equal(tooNew.fatal, false)
  }
  const internalOld = validateRequestHeader({ ...base, opcode: SD_OP_GET_NODE_LIST, protoVer: SD_PROTO_VER })
  t.equal(internalOld.ok, false)
  if (!internalOld.ok) {
    t.equal(internalOld.result, SD_RES_VER_MISMATCH)
    t.equal(internalOld.fatal, false)
  }
  t.same(validateRequestHeader({ ...base, opcode: SD_OP_GET_NODE_LIST, protoVer: SD_SHEEP_PROTO_VER }), { ok: true })

  const hugeWrite = validateRequestHeader({ ...base, opcode: SD_OP_WRITE_OBJ, flags: SD_FLAG_CMD_WRITE, dataLength: SD_MAX_DATA_LENGTH + 1 })
  t.equal(hugeWrite.ok, false)
  if (!hugeWrite.ok) {
    t.equal(hugeWrite.result, SD_RES_INVALID_PARMS)
    t.equal(hugeWrite.fatal, true, 'a payload over the limit cannot be skipped safely')
  }
  const hugeRead = validateRequestHeader({ ...base, dataLength: SD_MAX_DATA_LENGTH + 1 })
  t.equal(hugeRead.ok, false)
  if (!hugeRead.ok) t.equal(hugeRead.fatal, false, 'no payload follows a read: answer and go on')
  t.same(validateRequestHeader({ ...base, dataLength: SD_MAX_DATA_LENGTH }), { ok: true }, 'the limit itself is fine')

  // the same checks on raw bytes, as a server sees them
  const raw = encodeRequestHeader({ opcode: SD_OP_READ_OBJ, protoVer: 3, dataLength: 8 })
  const v = validateRequestHeader(decodeRequestHeader(raw))
  t.equal(v.ok ? SD_RES_SUCCESS : v.result, SD_RES_VER_MISMATCH)
})

t.test('encodeRequestHeader defaults proto_ver by opcode class', async (t) => {
  t.equal(encodeRequestHeader({ opcode: SD_OP_READ_OBJ })[0], SD_PROTO_VER)
  t.equal(encodeRequestHeader({ opcode: SD_OP_GET_NODE_LIST })[0], SD_SHEEP_PROTO_VER)
})
