// sheep's NBD server at the protocol level, through a raw socket: the greeting's golden bytes,
// option haggling (unknown options answered UNSUP and the handshake going on, LIST, INFO, GO, a
// missing export), the transmission phase (reads and writes answered by cookie, past-the-end
// and oversized requests, read-only snapshots, a snapshot taken under an open connection), and
// bad input — wrong magic, unknown client flags, a client vanishing mid-request — after which
// the daemon keeps serving NBD and dog alike.
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import t, { type Test } from 'tap'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_READ_ONLY,
  NBD_META_CONTEXT_BASE_ALLOCATION,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_SIMPLE_REPLY_HEADER_BYTES,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  decodeSimpleReply,
  encodeMetaContextRequest,
  encodeOption,
} from '../../lib/nbd-proto.js'
import { NBD_MAX_REQUEST_BYTES } from '../../sheep/nbd.js'
import { parseSheepArgs } from '../../sheep/options.js'
import { RawClient } from '../../harness/nbd-client.js'
import { dog, freePort, isAlive, startSheep, stopSheep } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
/** Transmission flags of a writable export: HAS_FLAGS|SEND_FLUSH|SEND_FUA|SEND_TRIM|SEND_WRITE_ZEROES|CAN_MULTI_CONN. */
const WRITABLE_FLAGS = 0x16d
t.test('-N / --nbd on the command line', async (t) => {
  const nbdOf = (args: string[]) => {
    const r = parseSheepArgs([...args, '/tmp/x'])
    return r.kind === 'run' ? r.options.nbd : r.stderr
  }
  t.equal(nbdOf([]), undefined, 'off by default')
  t.same(nbdOf(['-N', '10809']), { port: 10809 }, 'PORT: all addresses')
  t.same(nbdOf(['-b', '10.0.0.1', '--nbd', '10809']), { host: '10.0.0.1', port: 10809 }, 'default host: the -b address')
  t.same(nbdOf(['--nbd', '127.0.0.1:10809']), { host: '127.0.0.1', port: 10809 }, 'HOST:PORT')
  t.same(nbdOf(['-N', '[::1]:10809']), { host: '::1', port: 10809 }, '[IPV6]:PORT')
  t.match(nbdOf(['-N', 'host:0']), /Invalid NBD address/, 'a bad address is refused')
  t.match(nbdOf(['-N', '7000']), /is the sheep port/, 'the sheep port is refused')
})

t.test('NBD server of one sheep', async (t) => {
  const nbdPort = await freePort()
  const sheep = await startSheep({ args: ['-N', `127.0.0.1:${nbdPort}`] })
  const clients: RawClient[] = []
  t.teardown(async () => {
    for (const c of clients) c.close()
    await stopSheep(sheep)
    fs.rmSync(sheep.dir, { recursive: true, force: true })
  })
  const connect = async () => {
    const c = await RawClient.connect(nbdPort)
    clients.push(c)
    return c
  }
  const dogOk = async (args: string[], input?: Buffer) => {
    const r = await dog([...args, '-p', String(sheep.port)], { input })
    if (r.status !== 0) throw new Error(`dog ${args.join(' ')}: ${r.stderr}`)
    return r
  }
  /** A client in transmission on `name`. */
  const open = async (name: string) => {
    const c = await connect()
    await c.start()
    const info = await c.go(name)
    if (info.error !== undefined) throw new Error(`GO ${name}: 0x${info.error.toString(16)}`)
    return { c, info }
  }
  const stillServing = async (t: Test) => {
    t.ok(isAlive(sheep.pid), 'sheep is alive')
    t.equal((await dog(['node', 'list', '-p', String(sheep.port)])).status, 0, 'sheep answers dog')
    const { c, info } = await open('vol')
    t.equal(info.size, BigInt(VDI_SIZE), 'a new NBD connection is served')
    c.close()
  }

  await dogOk(['cluster', 'format', '-c', '1'])
  await dogOk(['vdi', 'create', 'vol', String(VDI_SIZE)])
  await dogOk(['vdi', 'create', 'other', '4M'])

  await t.test('greeting, unsupported options, LIST, INFO, GO', async (t) => {
    const c = await connect()
    const greeting = await c.start()
    t.same(greeting, Buffer.from('NBDMAGICIHAVEOPT\x00\x03', 'latin1'), 'NBDMAGIC IHAVEOPT, flags FIXED_NEWSTYLE|NO_ZEROES')

    c.write(encodeOption(NBD_OPT_EXTENDED_HEADERS))
    const unsup = await c.optionReply()
    t.equal(unsup.magic, NBD_REP_MAGIC)
    t.equal(unsup.option, NBD_OPT_EXTENDED_HEADERS)
    t.equal(unsup.type, NBD_REP_ERR_UNSUP, 'EXTENDED_HEADERS: ERR_UNSUP (compact headers only)')
    c.write(encodeOption(0x4242, Buffer.from('junk')))
    t.equal((await c.optionReply()).type, NBD_REP_ERR_UNSUP, 'an unknown option: ERR_UNSUP, and the handshake goes on')

    c.write(encodeOption(NBD_OPT_LIST))
    const names: string[] = []
    for (;;) {
      const r = await c.optionReply()
      if (r.type === NBD_REP_ACK) break
      t.equal(r.type, NBD_REP_SERVER)
      names.push(r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)))
    }
    t.same(names.sort(), ['other', 'vol'], 'LIST: the working VDIs')

    const info = await c.go('other', NBD_OPT_INFO)
    t.equal(info.size, 4n * BigInt(MiB), 'INFO: size')
    t.same(info.blockSizes, [1, 4096, NBD_MAX_REQUEST_BYTES], 'INFO: block sizes')
    t.equal((await c.go('missing', NBD_OPT_INFO)).error, NBD_REP_ERR_UNKNOWN, 'INFO of a missing VDI: ERR_UNKNOWN')
    t.equal((await c.go('missing')).error, NBD_REP_ERR_UNKNOWN, 'GO of a missing VDI: ERR_UNKNOWN, the handshake goes on')
    const go = await c.go('vol')
    t.equal(go.size, BigInt(VDI_SIZE))
    t.equal(go.flags, WRITABLE_FLAGS, 'transmission flags of a working VDI')

    c.request(NBD_CMD_READ, 7n, 0, 512)
    const r = await c.reply(512)
    t.same([r.error, r.cookie, r.data.length], [0, 7n, 512], 'in transmission after GO')
    c.request(NBD_CMD_DISC, 8n, 0, 0)
    t.ok(await c.closedByServer(), 'DISC: the server closes')
  })

  await t.test('NBD_OPT_EXPORT_NAME and ABORT', async (t) => {
    const zeroes = await connect()
    await zeroes.start(NBD_FLAG_C_FIXED_NEWSTYLE)
    zeroes.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from('other')))
    const answer = await zeroes.read(10 + 124)
    t.equal(answer.readBigUInt64BE(0), 4n * BigInt(MiB), 'size')
    t.equal(answer.readUInt16BE(8), WRITABLE_FLAGS, 'flags')
    t.ok(answer.subarray(10).equals(Buffer.alloc(124)), '124 zero bytes without NO_ZEROES')
    zeroes.request(NBD_CMD_FLUSH, 1n, 0, 0)
    t.equal((await zeroes.reply()).error, 0, 'FLUSH')

    const missing = await connect()
    await missing.start()
    missing.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from('missing')))
    t.ok(await missing.closedByServer(), 'EXPORT_NAME of a missing VDI: closed (it has no error reply)')

    const abort = await connect()
    await abort.start()
    abort.write(encodeOption(NBD_OPT_ABORT))
    t.equal((await abort.optionReply()).type, NBD_REP_ACK, 'ABORT is acknowledged')
    t.ok(await abort.closedByServer(), 'then closed')
  })

  await t.test('malformed handshakes close only their connection', async (t) => {
    const magic = await connect()
    await magic.start()
    magic.write(Buffer.from('NOTMAGIC\x00\x00\x00\x07\x00\x00\x00\x00', 'latin1'))
    t.ok(await magic.closedByServer(), 'a bad option magic: closed')

    const flags = await connect()
    await flags.start(0x80)
    t.ok(await flags.closedByServer(), 'unknown client flags: closed')

    const garbage = await connect()
    await garbage.read(18)
    garbage.write(crypto.randomBytes(4096))
    t.ok(await garbage.closedByServer(), 'random bytes: closed')

    const silent = await connect()
    await silent.read(18)
    silent.close() // gone mid-handshake
    await stillServing(t)
  })

  await t.test('transmission: data, errors, ordering', async (t) => {
    const { c } = await open('vol')
    const data = crypto.randomBytes(128 * 1024)
    c.request(NBD_CMD_WRITE, 1n, 3 * MiB + 100, data.length, data)
    t.same(await c.reply(), { error: 0, cookie: 1n, data: Buffer.alloc(0) }, 'WRITE')
    c.request(NBD_CMD_READ, 2n, 3 * MiB + 100, data.length)
    t.ok((await c.reply(data.length)).data.equals(data), 'READ returns what was written')
    // the write may still be in the write-back queue until a FLUSH
    c.request(NBD_CMD_FLUSH, 3n, 0, 0)
    t.equal((await c.reply()).error, 0, 'FLUSH')
    const viaDog = await dogOk(['vdi', 'read', 'vol', String(3 * MiB + 100), String(data.length)])
    t.ok(viaDog.stdoutBytes.equals(data), 'dog vdi read sees it')

    // overlapping writes sent back to back land in order; replies come by cookie
    const first = Buffer.alloc(64 * 1024, 0x11)
    const second = Buffer.alloc(64 * 1024, 0x22)
    c.request(NBD_CMD_WRITE, 10n, 5 * MiB, first.length, first)
    c.request(NBD_CMD_WRITE, 11n, 5 * MiB + 4096, second.length, second)
    c.request(NBD_CMD_READ, 12n, 5 * MiB, 4096 + second.length)
    const cookies = new Set<bigint>()
    let readBack: Buffer = Buffer.alloc(0)
    for (let i = 0; i < 3; i++) {
      const head = decodeSimpleReply(await c.read(NBD_SIMPLE_REPLY_HEADER_BYTES))
      t.equal(head.error, 0)
      cookies.add(head.cookie)
      if (head.cookie === 12n) readBack = await c.read(4096 + second.length)
    }
    t.same([...cookies].sort(), [10n, 11n, 12n], 'every request answered once, by cookie')
    t.ok(readBack.equals(Buffer.concat([first.subarray(0, 4096), second])), 'overlapping writes kept their order')

    c.request(NBD_CMD_READ, 20n, VDI_SIZE - 512, 1024)
    t.equal((await c.reply()).error, NBD_EINVAL, 'READ past the end: EINVAL')
    c.request(NBD_CMD_WRITE, 21n, VDI_SIZE - 512, 1024, Buffer.alloc(1024))
    t.equal((await c.reply()).error, NBD_ENOSPC, 'WRITE past the end: ENOSPC')
    c.request(NBD_CMD_READ, 22n, 0, NBD_MAX_REQUEST_BYTES + 1)
    t.equal((await c.reply()).error, NBD_EINVAL, 'READ above the maximum block size: EINVAL')
    const tooBig = NBD_MAX_REQUEST_BYTES + 4096
    c.request(NBD_CMD_WRITE, 23n, 0, tooBig, Buffer.alloc(tooBig, 0x55))
    t.equal((await c.reply()).error, NBD_EINVAL, 'WRITE above the maximum block size: EINVAL, payload skipped')
    c.request(0x77, 24n, 0, 0)
    t.equal((await c.reply()).error, NBD_EINVAL, 'an unknown command: EINVAL')
    c.request(NBD_CMD_WRITE_ZEROES, 25n, 3 * MiB, 1024)
    t.equal((await c.reply()).error, 0, 'WRITE_ZEROES')
    c.request(NBD_CMD_TRIM, 26n, 0, MiB)
    t.equal((await c.reply()).error, 0, 'TRIM of part of an object (zeros written)')
    c.request(NBD_CMD_READ, 27n, 3 * MiB, 2048)
    const zeroed = (await c.reply(2048)).data
    t.ok(zeroed.equals(Buffer.concat([Buffer.alloc(1024), data.subarray(924, 1948)])), 'WRITE_ZEROES zeroed exactly its range')
    c.request(NBD_CMD_READ, 28n, 0, 4096)
    t.same((await c.reply(4096)).data, Buffer.alloc(4096), 'the oversized write changed nothing; the connection still serves')

    // a request's header, then half its payload, then gone
    const quitter = (await open('vol')).c
    quitter.request(NBD_CMD_WRITE, 1n, 0, MiB)
    quitter.write(Buffer.alloc(MiB / 2, 0x99))
    quitter.close()
    c.request(NBD_CMD_READ, 29n, 0, 4096)
    t.same((await c.reply(4096)).data, Buffer.alloc(4096), 'a write cut off mid-payload wrote nothing')

    const badMagic = (await open('vol')).c
    badMagic.write(Buffer.alloc(28, 0xee))
    t.ok(await badMagic.closedByServer(), 'a bad request magic: closed')
    c.close()
    await stillServing(t)
  })

  await t.test('snapshots: read-only exports, and a snapshot taken under an open connection', async (t) => {
    const { c } = await open('other')
    const before = Buffer.alloc(8192, 0xa1)
    c.request(NBD_CMD_WRITE, 1n, 0, before.length, before)
    t.equal((await c.reply()).error, 0)
    // as a guest does before a snapshot: what the write-back queue holds goes out first
    c.request(NBD_CMD_FLUSH, 4n, 0, 0)
    t.equal((await c.reply()).error, 0)
    await dogOk(['vdi', 'snapshot', '-s', 'snap1', 'other'])
    const after = Buffer.alloc(4096, 0xb2)
    c.request(NBD_CMD_WRITE, 2n, 0, after.length, after)
    t.equal((await c.reply()).error, 0, 'a write after the snapshot succeeds (handle reloaded, copy on write)')
    c.request(NBD_CMD_READ, 3n, 0, 8192)
    t.ok((await c.reply(8192)).data.equals(Buffer.concat([after, before.subarray(4096)])), 'the working VDI has the new bytes')

    const snap = await open('other:snap1')
    t.ok((snap.info.flags & NBD_FLAG_READ_ONLY) !== 0, 'NAME:TAG is exported read-only')
    snap.c.request(NBD_CMD_READ, 1n, 0, 8192)
    t.ok((await snap.c.reply(8192)).data.equals(before), 'the snapshot keeps the old bytes')
    snap.c.request(NBD_CMD_WRITE, 2n, 0, 512, Buffer.alloc(512))
    t.equal((await snap.c.reply()).error, NBD_EPERM, 'WRITE to a snapshot: EPERM')
    snap.c.request(NBD_CMD_READ, 3n, 0, 512)
    t.equal((await snap.c.reply(512)).error, 0, 'and the connection goes on')
    const bySnapId = await open('other:1')
    t.ok((bySnapId.info.flags & NBD_FLAG_READ_ONLY) !== 0, 'NAME:SNAPID too')
    const viaDog = await dogOk(['vdi', 'read', '-s', 'snap1', 'other', '0', '8192'])
    t.ok(viaDog.stdoutBytes.equals(before), 'dog agrees')
  })

  await t.test('structured replies, base:allocation, TRIM and WRITE_ZEROES that free objects, FLUSH', async (t) => {
    await dogOk(['vdi', 'create', 'sparse', String(VDI_SIZE)])
    const early = await connect()
    await early.start()
    early.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest('sparse', [NBD_META_CONTEXT_BASE_ALLOCATION])))
    t.equal((await early.optionReply()).type, NBD_REP_ERR_INVALID, 'SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID')
    early.close()

    const c = await connect()
    await c.start()
    c.write(encodeOption(NBD_OPT_STRUCTURED_REPLY))
    t.equal((await c.optionReply()).type, NBD_REP_ACK, 'STRUCTURED_REPLY: ACK')
    c.write(encodeOption(NBD_OPT_LIST_META_CONTEXT, encodeMetaContextRequest('sparse', [])))
    const listed = await c.optionReply()
    t.equal(listed.type, NBD_REP_META_CONTEXT)
    t.equal(listed.data.subarray(4).toString(), NBD_META_CONTEXT_BASE_ALLOCATION, 'LIST_META_CONTEXT: base:allocation')
    t.equal((await c.optionReply()).type, NBD_REP_ACK)
    c.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest('sparse', ['qemu:dirty-bitmap:x', NBD_META_CONTEXT_BASE_ALLOCATION])))
    const chosen = await c.optionReply()
    t.equal(chosen.type, NBD_REP_META_CONTEXT, 'SET_META_CONTEXT: base:allocation chosen, the unknown context ignored')
    const contextId = chosen.data.readUInt32BE(0)
    t.equal((await c.optionReply()).type, NBD_REP_ACK)
    const info = await c.go('sparse')
    t.equal(info.error, undefined)

    const blockStatus = async (cookie: bigint, offset: number, length: number) => {
      c.request(NBD_CMD_BLOCK_STATUS, cookie, offset, length)
      const chunk = await c.chunk()
      t.equal(chunk.type, NBD_REPLY_TYPE_BLOCK_STATUS)
      t.equal(chunk.flags & NBD_REPLY_FLAG_DONE, NBD_REPLY_FLAG_DONE)
      t.equal(chunk.payload.readUInt32BE(0), contextId)
      const extents: Array<[number, number]> = []
      for (let at = 4; at < chunk.payload.length; at += 8) extents.push([chunk.payload.readUInt32BE(at), chunk.payload.readUInt32BE(at + 4)])
      return extents
    }
    const HOLE = NBD_STATE_HOLE | NBD_STATE_ZERO
    const OBJ = 4 * MiB
    t.same(await blockStatus(1n, 0, VDI_SIZE), [[VDI_SIZE, HOLE]], 'a new VDI is one hole')

    const data = crypto.randomBytes(8192)
    c.request(NBD_CMD_WRITE, 2n, OBJ + 4096, data.length, data)
    t.same(await c.reply(), { error: 0, cookie: 2n, data: Buffer.alloc(0) }, 'WRITE: a simple reply')
    c.request(NBD_CMD_WRITE, 3n, 3 * OBJ, 512, Buffer.alloc(512, 0x77), NBD_CMD_FLAG_FUA)
    t.equal((await c.reply()).error, 0, 'WRITE with FUA')
    t.same(
      await blockStatus(4n, 0, VDI_SIZE),
      [
        [OBJ, HOLE],
        [OBJ, 0],
        [OBJ, HOLE],
        [OBJ, 0],
      ],
      'BLOCK_STATUS: written objects are data, the rest holes (acknowledged writes included)',
    )
    t.same(await blockStatus(5n, OBJ + 100, 200), [[200, 0]], 'a range inside one object')
    c.request(NBD_CMD_BLOCK_STATUS, 6n, 0, VDI_SIZE, undefined, NBD_CMD_FLAG_REQ_ONE)
    t.equal((await c.chunk()).payload.length, 4 + 8, 'REQ_ONE: one extent')

    c.request(NBD_CMD_READ, 7n, OBJ + 4096, data.length)
    const read = await c.chunk()
    t.equal(read.type, NBD_REPLY_TYPE_OFFSET_DATA, 'READ: an OFFSET_DATA chunk')
    t.equal(read.flags & NBD_REPLY_FLAG_DONE, NBD_REPLY_FLAG_DONE)
    t.equal(read.payload.readBigUInt64BE(0), BigInt(OBJ + 4096), 'with its offset')
    t.ok(read.payload.subarray(8).equals(data), 'and the data written')
    c.request(NBD_CMD_READ, 8n, VDI_SIZE - 512, 1024)
    const failed = await c.chunk()
    t.equal(failed.type, NBD_REPLY_TYPE_ERROR, 'READ past the end: an error chunk')
    t.equal(failed.payload.readUInt32BE(0), NBD_EINVAL)
    c.request(NBD_CMD_FLUSH, 9n, 0, 0)
    t.equal((await c.reply()).error, 0, 'FLUSH: a simple reply')
    t.ok((await dogOk(['vdi', 'read', 'sparse', String(OBJ + 4096), String(data.length)])).stdoutBytes.equals(data), 'after FLUSH dog reads the data')

    const objectFiles = () => fs.readdirSync(path.join(sheep.dir, 'obj')).filter((f) => /^00[0-9a-f]{14}$/.test(f) && !f.startsWith('80')).length
    const before = objectFiles()
    c.request(NBD_CMD_TRIM, 10n, OBJ, OBJ)
    t.equal((await c.reply()).error, 0, 'TRIM of a whole object')
    t.same(await blockStatus(11n, OBJ, OBJ), [[OBJ, HOLE]], 'the trimmed object is a hole again')
    t.equal(objectFiles(), before - 1, "and its file is gone from the sheep's disk")
    c.request(NBD_CMD_READ, 12n, OBJ + 4096, 4096)
    t.ok((await c.chunk()).payload.subarray(8).equals(Buffer.alloc(4096)), 'it reads as zeros')

    c.request(NBD_CMD_WRITE_ZEROES, 13n, 3 * OBJ, OBJ, undefined, NBD_CMD_FLAG_NO_HOLE)
    t.equal((await c.reply()).error, 0, 'WRITE_ZEROES with NO_HOLE')
    t.same(await blockStatus(14n, 3 * OBJ, OBJ), [[OBJ, 0]], 'keeps the object allocated')
    c.request(NBD_CMD_READ, 15n, 3 * OBJ, 512)
    t.ok((await c.chunk()).payload.subarray(8).equals(Buffer.alloc(512)), 'as zeros')
    c.request(NBD_CMD_WRITE_ZEROES, 16n, 3 * OBJ, OBJ)
    t.equal((await c.reply()).error, 0, 'WRITE_ZEROES of a whole object')
    t.same(await blockStatus(17n, 0, VDI_SIZE), [[VDI_SIZE, HOLE]], 'discards it: the VDI is all holes again')
    t.equal(objectFiles(), before - 2, 'no data object of the VDI is left')
    const inode = await dogOk(['vdi', 'read', 'sparse', '0', String(VDI_SIZE)])
    t.ok(inode.stdoutBytes.equals(Buffer.alloc(VDI_SIZE)), 'dog reads zeros everywhere')
    c.close()
  })
})
