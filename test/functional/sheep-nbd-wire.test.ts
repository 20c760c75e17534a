// sheep's NBD server at the protocol level, through a raw socket: the greeting's golden bytes,
// option haggling (unknown options answered UNSUP and the handshake going on, LIST, INFO, GO, a
// missing export), the transmission phase (reads and writes answered by cookie, past-the-end
// and oversized requests, read-only snapshots, a snapshot taken under an open connection), and
// bad input — wrong magic, unknown client flags, a client vanishing mid-request — after which
// the daemon keeps serving NBD and dog alike.
import fs from 'node:fs'
import net from 'node:net'
import crypto from 'node:crypto'
import t, { type Test } from 'tap'
import {
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_OPTION_REPLY_HEADER_BYTES,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REP_SERVER,
  NBD_SIMPLE_REPLY_HEADER_BYTES,
  NBD_SIMPLE_REPLY_MAGIC,
  decodeOptionReplyHeader,
  decodeSimpleReply,
  encodeInfoRequest,
  encodeOption,
  encodeRequest,
} from '../../lib/nbd-proto.js'
import { NBD_MAX_REQUEST_BYTES } from '../../sheep/nbd.js'
import { parseSheepArgs } from '../../sheep/options.js'
import { dog, freePort, isAlive, startSheep, stopSheep } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
/** Transmission flags of a writable export: HAS_FLAGS|SEND_FLUSH|SEND_FUA|SEND_TRIM|SEND_WRITE_ZEROES|CAN_MULTI_CONN. */
const WRITABLE_FLAGS = 0x16d
/** How long a test waits for bytes the server must send. */
const READ_TIMEOUT_MS = 10_000

/** A raw NBD client: exact-length reads with a timeout, and `closed` once the server hung up. */
class RawClient {
  private buffered = Buffer.alloc(0)
  private wake: (() => void) | undefined
  ended = false

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, b])
      this.wake?.()
    })
    socket.on('close', () => {
      this.ended = true
      this.wake?.()
    })
    socket.on('error', () => undefined)
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  async read(n: number): Promise<Buffer> {
    const deadline = Date.now() + READ_TIMEOUT_MS
    while (this.buffered.length < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buffered.length}/${n} bytes`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes`)
      await new Promise<void>((resolve) => {
        this.wake = resolve
        setTimeout(resolve, 100)
      })
    }
    const out = this.buffered.subarray(0, n)
    this.buffered = this.buffered.subarray(n)
    return out
  }

  /** True once the server closed the connection (within the read timeout). */
  async closedByServer(): Promise<boolean> {
    const deadline = Date.now() + READ_TIMEOUT_MS
    while (!this.ended && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    return this.ended
  }

  write(b: Buffer): void {
    this.socket.write(b)
  }

  /** Greeting read, client flags sent. */
  async start(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<Buffer> {
    const greeting = await this.read(18)
    const flags = Buffer.alloc(4)
    flags.writeUInt32BE(clientFlags)
    this.write(flags)
    return greeting
  }

  async optionReply(): Promise<{ option: number; type: number; data: Buffer; magic: bigint }> {
    const head = decodeOptionReplyHeader(await this.read(NBD_OPTION_REPLY_HEADER_BYTES))
    return { ...head, data: await this.read(head.length) }
  }

  /** NBD_OPT_GO on `name`: the info replies, up to the ACK or an error. */
  async go(name: string, option = NBD_OPT_GO): Promise<{ size: bigint; flags: number; blockSizes?: number[]; error?: number }> {
    this.write(encodeOption(option, encodeInfoRequest(name, [NBD_INFO_BLOCK_SIZE])))
    let size = -1n
    let flags = -1
    let blockSizes: number[] | undefined
    for (;;) {
      const r = await this.optionReply()
      if (r.type === NBD_REP_ACK) return { size, flags, blockSizes }
      if (r.type !== NBD_REP_INFO) return { size, flags, error: r.type }
      const infoType = r.data.readUInt16BE(0)
      if (infoType === NBD_INFO_EXPORT) {
        size = r.data.readBigUInt64BE(2)
        flags = r.data.readUInt16BE(10)
      } else if (infoType === NBD_INFO_BLOCK_SIZE) {
        blockSizes = [r.data.readUInt32BE(2), r.data.readUInt32BE(6), r.data.readUInt32BE(10)]
      }
    }
  }

  request(type: number, cookie: bigint, offset: number, length: number, data?: Buffer, flags = 0): void {
    this.write(encodeRequest({ flags, type, cookie, offset: BigInt(offset), length }))
    if (data) this.write(data)
  }

  async reply(length = 0): Promise<{ error: number; cookie: bigint; data: Buffer }> {
    const r = decodeSimpleReply(await this.read(NBD_SIMPLE_REPLY_HEADER_BYTES))
    if (r.magic !== NBD_SIMPLE_REPLY_MAGIC) throw new Error(`bad reply magic ${r.magic.toString(16)}`)
    return { error: r.error, cookie: r.cookie, data: r.error === 0 && length > 0 ? await this.read(length) : Buffer.alloc(0) }
  }

  close(): void {
    this.socket.destroy()
  }
}

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

    c.write(encodeOption(NBD_OPT_STRUCTURED_REPLY))
    const unsup = await c.optionReply()
    t.equal(unsup.magic, NBD_REP_MAGIC)
    t.equal(unsup.option, NBD_OPT_STRUCTURED_REPLY)
    t.equal(unsup.type, NBD_REP_ERR_UNSUP, 'STRUCTURED_REPLY: ERR_UNSUP (simple replies only)')
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
    t.equal((await c.reply()).error, 0, 'TRIM (advisory)')
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
})
