// Functional tests of one real sheep over its wire protocol: framing rules, pipelining with
// out-of-order answers, bad input that must leave the daemon serving, and a restart that keeps
// config, epoch, VDIs and objects.
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import t from 'tap'
import { SheepConnection } from '../../lib/client.js'
import { REQ_CLUSTER, REQ_OBJ, REQ_VDI, RSP_NODE, RSP_VDI, encodeRequestHeader, rspVariant } from '../../lib/codec.js'
import { vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import {
  SD_FLAG_CMD_WRITE,
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_GET_NODE_LIST,
  SD_OP_MAKE_FS,
  SD_OP_NEW_VDI,
  SD_OP_READ_OBJ,
  SD_OP_STAT_SHEEP,
  SD_RES_INVALID_PARMS,
  SD_RES_NO_OBJ,
  SD_RES_SUCCESS,
  SD_RES_VER_MISMATCH,
  SD_RES_WAIT_FOR_FORMAT,
  SD_OP_WRITE_OBJ,
  SD_RES_VDI_EXIST,
} from '../../lib/proto.js'
import { startSheep, stopSheep, isAlive } from '../../harness/sheep.js'

const ctimeNow = () => BigInt(Math.floor(Date.now() / 1000)) << 32n

t.test('one sheep over the wire', async (t) => {
  const sheep = await startSheep()
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(sheep.dir, { recursive: true, force: true })
  })
  const conn = new SheepConnection({ host: '127.0.0.1', port: sheep.port })
  t.teardown(() => conn.close())

  await t.test('an unformatted node answers WAIT_FOR_FORMAT to object I/O but serves force ops', async (t) => {
    const r = await conn.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid: 1n }, readLength: 4 })
    t.equal(r.rsp.result, SD_RES_WAIT_FOR_FORMAT)
    const nodes = await conn.request({ opcode: SD_OP_GET_NODE_LIST, readLength: 6144 * 80 })
    t.equal(nodes.rsp.result, SD_RES_SUCCESS)
    t.equal(rspVariant(nodes.rsp, RSP_NODE).nrNodes, 1)
    t.equal(nodes.data.length, 80)
  })

  await t.test('format, create a VDI, write and read objects', async (t) => {
    const mk = await conn.request({
      opcode: SD_OP_MAKE_FS,
      variant: REQ_CLUSTER,
      fields: { ctime: ctimeNow(), copies: 1, flags: 4 },
      data: Buffer.from('plain\0'),
    })
    t.equal(mk.rsp.result, SD_RES_SUCCESS)
    t.equal(mk.rsp.epoch, 1, 'the response carries the new epoch')
    const name = Buffer.alloc(256)
    name.write('wire')
    const nv = await conn.request({ opcode: SD_OP_NEW_VDI, variant: REQ_VDI, fields: { vdiSize: 64n << 20n }, data: name })
    t.equal(nv.rsp.result, SD_RES_SUCCESS)
    const vid = rspVariant(nv.rsp, RSP_VDI).vdiId
    t.ok(vid > 0)
    const again = await conn.request({ opcode: SD_OP_NEW_VDI, variant: REQ_VDI, fields: { vdiSize: 64n << 20n }, data: name })
    t.equal(again.rsp.result, SD_RES_VDI_EXIST)

    const missing = await conn.request({ opcode: SD_OP_WRITE_OBJ, variant: REQ_OBJ, fields: { oid: vidToDataOid(vid, 0) }, data: Buffer.alloc(8) })
    t.equal(missing.rsp.result, SD_RES_NO_OBJ, 'WRITE_OBJ of an absent object fails NO_OBJ')

    // pipelining: many creates and reads in flight on one socket, answered by id
    const blobs = Array.from({ length: 8 }, () => crypto.randomBytes(1 << 20))
    const creates = await Promise.all(
      blobs.map((b, i) =>
        conn.request({
          opcode: SD_OP_CREATE_AND_WRITE_OBJ,
          variant: REQ_OBJ,
          fields: { oid: vidToDataOid(vid, i), offset: 4096 },
          data: b,
        }),
      ),
    )
    t.same(
      creates.map((c) => c.rsp.result),
      blobs.map(() => SD_RES_SUCCESS),
    )
    const reads = await Promise.all(
      blobs.map((_, i) =>
        conn.request({
          opcode: SD_OP_READ_OBJ,
          variant: REQ_OBJ,
          fields: { oid: vidToDataOid(vid, i), offset: 4096 },
          readLength: 1 << 20,
        }),
      ),
    )
    reads.forEach((r, i) => {
      t.ok(r.data.equals(blobs[i]), `object ${i} reads back`)
    })
    const head = await conn.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid: vidToDataOid(vid, 0), offset: 0 }, readLength: 4096 })
    t.ok(head.data.equals(Buffer.alloc(4096)), 'unwritten part of a created object reads as zeros')
    const inode = await conn.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid: vidToVdiOid(vid) }, readLength: 12587576 })
    t.equal(inode.data.length, 12587576, 'the whole inode can be read in one request')
    t.equal(inode.data.subarray(0, 4).toString(), 'wire')
  })

  await t.test('bad input gets an error result or a closed connection, and the daemon keeps serving', async (t) => {
    const ver = await conn.request({ opcode: SD_OP_STAT_SHEEP, protoVer: 2 })
    t.equal(ver.rsp.result, SD_RES_VER_MISMATCH, 'internal op with client proto_ver')
    const ver2 = await conn.request({ opcode: SD_OP_READ_OBJ, protoVer: 9, variant: REQ_OBJ, fields: { oid: 1n }, readLength: 4 })
    t.equal(ver2.rsp.result, SD_RES_VER_MISMATCH, 'client op with a future proto_ver')
    const unknown = await conn.request({ opcode: 0x77 })
    t.equal(unknown.rsp.result, SD_RES_INVALID_PARMS, 'unknown opcode')
    const tooFar = await conn.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid: 5n << 32n, offset: 4 << 20 }, readLength: 4096 })
    t.equal(tooFar.rsp.result, SD_RES_INVALID_PARMS, 'read beyond the object size')

    // 4 KiB of random bytes: the daemon may close that connection but must keep serving others
    await new Promise<void>((resolve) => {
      const s = net.createConnection({ host: '127.0.0.1', port: sheep.port }, () => s.end(crypto.randomBytes(4096)))
      s.on('data', () => undefined)
      s.on('close', () => resolve())
      s.on('error', () => resolve())
      setTimeout(() => {
        s.destroy()
        resolve()
      }, 2000)
    })
    // a header announcing a 1 GiB payload must not make sheep allocate it: the stream is closed
    await new Promise<void>((resolve) => {
      const s = net.createConnection({ host: '127.0.0.1', port: sheep.port }, () => {
        s.write(encodeRequestHeader({ opcode: SD_OP_CREATE_AND_WRITE_OBJ, flags: SD_FLAG_CMD_WRITE, dataLength: 1 << 30 }))
      })
      s.on('close', () => resolve())
      s.on('error', () => resolve())
    })
    t.ok(isAlive(sheep.pid), 'the daemon is still running')
    const fresh = new SheepConnection({ host: '127.0.0.1', port: sheep.port })
    const ok = await fresh.request({ opcode: SD_OP_GET_NODE_LIST, readLength: 6144 * 80 })
    t.equal(ok.rsp.result, SD_RES_SUCCESS, 'a new connection is served')
    fresh.close()
  })

  await t.test('a restarted sheep comes back with its config, epoch and objects', async (t) => {
    conn.close()
    await stopSheep(sheep)
    const again = await startSheep({ port: sheep.port, dir: sheep.dir })
    t.teardown(() => stopSheep(again))
    const c = new SheepConnection({ host: '127.0.0.1', port: again.port })
    t.teardown(() => c.close())
    const name = Buffer.alloc(512)
    name.write('wire')
    const info = await c.request({ opcode: 0x14, variant: REQ_VDI, fields: {}, data: name })
    t.equal(info.rsp.result, SD_RES_SUCCESS, 'the VDI is found after restart')
    t.equal(info.rsp.epoch, 1, 'epoch kept')
    const vid = rspVariant(info.rsp, RSP_VDI).vdiId
    const r = await c.request({ opcode: SD_OP_READ_OBJ, variant: REQ_OBJ, fields: { oid: vidToDataOid(vid, 3), offset: 0 }, readLength: 4096 })
    t.equal(r.rsp.result, SD_RES_SUCCESS)
  })
})
