// The NBD write-back cache's promise (sheep/nbd-write-back.ts, man/sheep.8): nothing acknowledged
// before a FLUSH that returned is lost when a sheep dies with SIGKILL right after it. Three sheep
// with copies 3 and real fsync; node 0 serves NBD. Plain writes are acknowledged from the
// write-back queue on one connection, FLUSH is sent on another (CAN_MULTI_CONN: it must cover
// both), then the NBD-serving sheep is killed with -9 at once, restarted, and the VDI read back
// byte for byte; then the same with another replica's sheep killed; then a power loss on a third
// (the flushed ranges taken out of its object files, another boot id): its write-back log puts
// them back at its next start. First, a burst of FLUSHes (fio sends one per free slot of its
// queue) shares its syncs: two SYNC_NODES for sixteen.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { type TestCluster, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { RawClient } from '../../harness/nbd-client.js'
import { dog, freePort } from '../../harness/sheep.js'
import { scrape } from '../helpers/metrics.js'
import { NBD_CMD_FLUSH, NBD_CMD_WRITE, decodeSimpleReply, NBD_SIMPLE_REPLY_HEADER_BYTES } from '../../lib/nbd-proto.js'
import { keyFileName } from '../../lib/oid.js'
import { WBLOG_DIR, parseWbLog } from '../../sheep/store/wb-log.js'

const MiB = 1024 * 1024
const VDI_SIZE = 32 * MiB
/** Writes acknowledged before each FLUSH, and their size (random 4 KiB-aligned offsets). */
const WRITES_PER_ROUND = 96
const WRITE_BYTES = 64 * 1024
/** FLUSHes sent at once, as fio does at queue depth 16. */
const FLUSH_BURST = 16

t.test('nothing acknowledged before a FLUSH is lost to kill -9', async (t) => {
  let cluster: TestCluster | undefined
  const clients: RawClient[] = []
  t.teardown(async () => {
    for (const c of clients) c.close()
    await cluster?.close()
  })
  const nbdPort = await freePort()
  const metricsPort = await freePort()
  const nbdArgs = ['-N', `127.0.0.1:${nbdPort}`, '--metrics', `127.0.0.1:${metricsPort}`]
  cluster = await startCluster(3, { start: 0, nosync: false })
  const c3 = cluster
  await c3.start(0, nbdArgs)
  await c3.start(1)
  await c3.start(2)
  const dogOn = async (node: number, args: string[]) => {
    const r = await dog([...args, '-p', String(c3.ports[node])])
    if (r.status !== 0) throw new Error(`dog ${args.join(' ')} on node ${node}: ${r.stderr}`)
    return r
  }
  await dogOn(0, ['cluster', 'format', '-c', '3'])
  await dogOn(0, ['vdi', 'create', 'vm', String(VDI_SIZE)])

  const open = async () => {
    const c = await RawClient.connect(nbdPort)
    clients.push(c)
    await c.start()
    const info = await c.go('vm')
    if (info.error !== undefined) throw new Error(`GO vm: 0x${info.error.toString(16)}`)
    return c
  }
  /** What the VDI must hold: every byte acknowledged so far. */
  const model = Buffer.alloc(VDI_SIZE)
  let cookie = 1n

  /** Pipelined writes on `writer`, all acknowledged, then FLUSH on `flusher`; resolves once FLUSH returned. */
  const writeAndFlush = async (t: Test, writer: RawClient, flusher: RawClient) => {
    const sent = new Set<bigint>()
    for (let i = 0; i < WRITES_PER_ROUND; i++) {
      const data = crypto.randomBytes(WRITE_BYTES)
      const offset = crypto.randomInt(0, (VDI_SIZE - WRITE_BYTES) / 4096) * 4096
      data.copy(model, offset)
      writer.request(NBD_CMD_WRITE, cookie, offset, data.length, data)
      sent.add(cookie++)
    }
    let failed = 0
    for (let i = 0; i < WRITES_PER_ROUND; i++) {
      const r = decodeSimpleReply(await writer.read(NBD_SIMPLE_REPLY_HEADER_BYTES))
      if (r.error !== 0 || !sent.delete(r.cookie)) failed++
    }
    t.equal(failed, 0, `${WRITES_PER_ROUND} writes acknowledged`)
    flusher.request(NBD_CMD_FLUSH, cookie++, 0, 0)
    t.equal((await flusher.reply()).error, 0, flusher === writer ? 'FLUSH returned' : 'FLUSH on another connection returned')
  }
  const logFilesOf = (node: number) => {
    const dir = path.join(c3.root, `n${node}`, 'obj', WBLOG_DIR)
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.log')) : []
  }
  const readsBack = async (t: Test, node: number, what: string) => {
    const r = await dogOn(node, ['vdi', 'read', 'vm', '0', String(VDI_SIZE)])
    t.ok(r.stdoutBytes.equals(model), `${what}: dog on node ${node} reads every acknowledged byte`)
  }

  await t.test('a burst of FLUSHes shares its syncs, and each returns once the writes are durable', async (t) => {
    // fio sends a FLUSH per free slot of its queue until the first returns: sixteen at once
    const syncNodes = async () => {
      let n = 0
      for (const [sample, value] of await scrape(metricsPort)) if (sample.startsWith('sheepdog_requests_total{') && sample.includes('SYNC_NODES')) n += value
      return n
    }
    const writer = await open()
    await writeAndFlush(t, writer, writer)
    const wbLog = await scrape(metricsPort)
    t.ok((wbLog.get('sheepdog_wblog_flushes_total') ?? 0) > 0, 'the flush appended to the write-back log')
    t.ok((wbLog.get('sheepdog_wblog_bytes_total') ?? 0) >= WRITES_PER_ROUND * WRITE_BYTES * 0.5, `${wbLog.get('sheepdog_wblog_bytes_total')} bytes logged`)
    const before = await syncNodes()
    await writeAndFlush(t, writer, writer)
    t.equal((await syncNodes()) - before, 1, 'one FLUSH: one SYNC_NODES')
    const burst = await syncNodes()
    for (let i = 0; i < WRITES_PER_ROUND; i++) {
      const offset = crypto.randomInt(0, (VDI_SIZE - 4096) / 4096) * 4096
      const data = crypto.randomBytes(4096)
      data.copy(model, offset)
      writer.request(NBD_CMD_WRITE, cookie++, offset, data.length, data)
    }
    for (let i = 0; i < FLUSH_BURST; i++) writer.request(NBD_CMD_FLUSH, cookie++, 0, 0)
    let failed = 0
    for (let i = 0; i < WRITES_PER_ROUND + FLUSH_BURST; i++) if (decodeSimpleReply(await writer.read(NBD_SIMPLE_REPLY_HEADER_BYTES)).error !== 0) failed++
    t.equal(failed, 0, `${WRITES_PER_ROUND} writes and ${FLUSH_BURST} FLUSHes answered without error`)
    const shared = (await syncNodes()) - burst
    // two when they all arrive while the first syncs; a third when the socket delivered some of
    // them only after that (each FLUSH used to send its own: sixteen)
    t.ok(shared >= 1 && shared <= 3, `${FLUSH_BURST} FLUSHes at once: ${shared} SYNC_NODES (the first, and one the others share)`)
    await readsBack(t, 0, 'after the burst')
  })

  await t.test('the NBD-serving sheep killed right after FLUSH', async (t) => {
    const writer = await open()
    const flusher = await open()
    await writeAndFlush(t, writer, flusher)
    await c3.stop(0, 'SIGKILL')
    await readsBack(t, 1, 'node 0 gone')
    await c3.start(0, nbdArgs)
    t.ok(await waitForRecovery(c3), 'node 0 back, recovery settled')
    await readsBack(t, 0, 'node 0 restarted')
    const again = await open()
    const head = Buffer.alloc(4096)
    again.request(0, cookie++, 0, head.length)
    t.ok((await again.reply(head.length)).data.equals(model.subarray(0, head.length)), 'and NBD on the restarted sheep serves it')
  })

  await t.test("another replica's sheep killed right after FLUSH", async (t) => {
    const writer = await open()
    await writeAndFlush(t, writer, writer)
    await c3.stop(1, 'SIGKILL')
    await readsBack(t, 2, 'node 1 gone')
    await c3.start(1)
    t.ok(await waitForRecovery(c3), 'node 1 back, recovery settled')
    await readsBack(t, 1, 'node 1 restarted')
    t.same(logFilesOf(1), [], 'its write-back log was emptied at the restart (the same boot: nothing written back)')
  })

  await t.test('a power loss after FLUSH: the write-back log is written back at the next start', async (t) => {
    const writer = await open()
    await writeAndFlush(t, writer, writer)
    await c3.stop(2, 'SIGKILL')
    // what a power loss leaves: none of the flushed ranges reached the object files, and the
    // machine booted again (another boot id in the logs' headers)
    const obj = path.join(c3.root, 'n2', 'obj')
    const entries = logFilesOf(2).flatMap((name) => {
      const file = path.join(obj, WBLOG_DIR, name)
      const bytes = fs.readFileSync(file)
      bytes.write('x'.repeat(36), 8, 'latin1')
      fs.writeFileSync(file, bytes)
      return parseWbLog(bytes.subarray(44))
    })
    t.ok(entries.length > 0, `${entries.length} records in node 2's log`)
    for (const e of entries) {
      const fd = fs.openSync(path.join(obj, keyFileName(e.key)), 'r+')
      fs.writeSync(fd, Buffer.alloc(e.data.length), 0, e.data.length, e.offset)
      fs.closeSync(fd)
    }
    await c3.start(2)
    t.ok(await waitForRecovery(c3), 'node 2 back, recovery settled')
    // the records in order (a later one of a range supersedes an earlier one) give what each
    // logged range must hold
    const expected = new Map<bigint, Buffer>()
    for (const e of entries) {
      let object = expected.get(e.key)
      if (!object) {
        object = fs.readFileSync(path.join(obj, keyFileName(e.key)))
        expected.set(e.key, object)
      }
      e.data.copy(object, e.offset)
    }
    let same = 0
    for (const e of entries) {
      const now = fs.readFileSync(path.join(obj, keyFileName(e.key)))
      if (now.subarray(e.offset, e.offset + e.data.length).equals((expected.get(e.key) as Buffer).subarray(e.offset, e.offset + e.data.length))) same++
    }
    t.equal(same, entries.length, 'every logged range is back in its object file')
    t.same(logFilesOf(2), [], 'and the log is gone')
    await readsBack(t, 2, 'node 2 after the power loss')
  })
})
