// Pooled write payloads, read in place (issue #15; lib/buffer-pool.ts, lib/socket-in-place.ts):
// on a 2-node cluster (copies=2, so every write goes through a gateway and a peer), concurrent
// writes of many sizes and offsets from several connections land byte for byte; the pool's
// buffers are reused, and every one comes back — from answered requests and from connections
// that closed halfway through a payload — while the sheep keeps serving. Reads answered from a
// node's own disk are lent from the same pool until their reply is sent: concurrent reads of
// many sizes come back byte for byte while writes reuse the buffers too, and the buffers of
// replies to clients that went away come back. So are reads a gateway forwards to the node
// holding the object (copies=1): the peer's reply lands in a pooled buffer of the gateway.
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t, { type Test } from 'tap'
import { REQ_OBJ, encodeRequestHeader } from '../../lib/codec.js'
import { SheepConnection } from '../../lib/client.js'
import { oidToHex, vidToDataOid } from '../../lib/oid.js'
import { SD_CLUSTER_FLAG_AUTO_VNODES, SD_FLAG_CMD_WRITE, SD_OP_READ_OBJ, SD_OP_WRITE_OBJ } from '../../lib/proto.js'
import { makeFs, newVdi } from '../../lib/sheep-api.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { type TestCluster, startCluster } from '../../harness/cluster.js'
import { freePort, isAlive, waitFor } from '../../harness/sheep.js'
import { scrape } from '../helpers/metrics.js'

const MiB = 1024 * 1024
const VDI_MIB = 48
const WRITERS = 4
const WRITES_PER_WRITER = 40
const HALF_SENT = 20
const READ_VDI_MIB = 40
const READERS = 6
const READS_PER_READER = 40
const GONE_READERS = 20
/** The copies=1 VDI of the forwarded reads: objects written until node 1 holds FORWARD_REMOTE_OBJECTS. */
const FORWARD_VDI_OBJECTS = 64
const FORWARD_REMOTE_OBJECTS = 3

/** 2 nodes with their metrics served (copies=2: every object on both), formatted, with a VDI. */
async function clusterWithVdi(t: Test, name: string, mib: number): Promise<{ cluster: TestCluster; metrics: number[] }> {
  const cluster = await startCluster(2, { start: 0 })
  t.teardown(() => cluster.close())
  const metrics = [await freePort(), await freePort()]
  for (let i = 0; i < 2; i++) await cluster.start(i, ['--metrics', `127.0.0.1:${metrics[i]}`])
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 2, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  await newVdi(cluster.conn(0), { name, vdiSize: BigInt(mib * MiB) })
  return { cluster, metrics }
}

t.test('pooled payloads land whole, are reused, and all come back', async (t) => {
  const { cluster, metrics } = await clusterWithVdi(t, 'v', VDI_MIB)

  // the expected image, written by several connections at once in pieces of many sizes (pooled
  // ones from 64 KiB to 4 MiB, and small ones), each writer in a region of its own
  const expected = crypto.randomBytes(VDI_MIB * MiB)
  const region = (VDI_MIB * MiB) / WRITERS
  const sizes = [4096, 60 * 1024, 64 * 1024, 100_000, MiB, MiB + 4096, 3 * MiB + 512, 4 * MiB]
  const writers = Array.from({ length: WRITERS }, async (_, w) => {
    const conn = new SheepConnection({ host: '127.0.0.1', port: cluster.ports[w % 2] as number })
    try {
      const h = await VdiHandle.open(conn, 'v')
      // the region whole first (creates), then overwrites of random pieces
      for (let at = 0; at < region; at += 4 * MiB) await h.write(w * region + at, expected.subarray(w * region + at, w * region + at + 4 * MiB))
      const pieces = Array.from({ length: WRITES_PER_WRITER }, () => {
        const length = sizes[crypto.randomInt(sizes.length)] as number
        const offset = w * region + crypto.randomInt(region - length)
        return { offset, length }
      })
      await Promise.all(
        pieces.map(async ({ offset, length }) => {
          // pieces may overlap and land in any order: each writes the image's own bytes
          await h.write(offset, expected.subarray(offset, offset + length))
        }),
      )
    } finally {
      conn.close()
    }
  })
  await Promise.all(writers)
  const h = await VdiHandle.open(cluster.conn(1), 'v')
  const back = await h.read(0, VDI_MIB * MiB)
  t.ok(back.equals(expected), 'every byte written is read back')

  const gateway = await scrape(metrics[0] as number)
  const peer = await scrape(metrics[1] as number)
  for (const [name, s] of [
    ['node 0', gateway],
    ['node 1', peer],
  ] as const) {
    t.ok((s.get('sheepdog_payload_buffers_reused_total') ?? 0) > 0, `${name} reused pooled buffers: ${s.get('sheepdog_payload_buffers_reused_total')}`)
    t.equal(s.get('sheepdog_payload_buffers_lent_bytes'), 0, `${name}: every buffer came back`)
  }

  // connections that announce a 1 MiB write over the VDI's bytes 5..6 MiB, send part of it, and
  // hold it or go away: one applied anyway would leave 0x5a there
  const header = encodeRequestHeader({
    opcode: SD_OP_WRITE_OBJ,
    flags: SD_FLAG_CMD_WRITE,
    dataLength: MiB,
    variant: REQ_OBJ,
    fields: { oid: vidToDataOid(h.vid, 1), offset: MiB },
  })
  const sockets = await Promise.all(
    Array.from(
      { length: HALF_SENT },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection({ host: '127.0.0.1', port: cluster.ports[0] as number }, () => {
            s.write(header)
            s.write(Buffer.alloc(100_000, 0x5a), () => resolve(s))
          })
          s.on('error', reject)
        }),
    ),
  )
  t.ok(
    await waitFor(async () => ((await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_lent_bytes') ?? 0) >= HALF_SENT * MiB, 10_000),
    'half-sent payloads hold pooled buffers meanwhile',
  )
  // the sheep serves meanwhile
  const more = crypto.randomBytes(MiB)
  await h.write(5 * MiB, more)
  t.ok((await h.read(5 * MiB, MiB)).equals(more), 'a write and a read are served meanwhile')
  for (const s of sockets) s.destroy()
  t.ok(
    await waitFor(async () => (await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_lent_bytes') === 0, 10_000),
    'the buffers of the abandoned payloads came back',
  )
  t.ok(
    cluster.nodes.every((n) => n !== undefined && isAlive(n.pid)),
    'both sheep are up',
  )
  t.ok((await h.read(5 * MiB, MiB)).equals(more), 'nothing of the abandoned payloads was written')
})

t.test('read replies lent from the pool go out whole and all come back', async (t) => {
  const { cluster, metrics } = await clusterWithVdi(t, 'r', READ_VDI_MIB)
  const image = crypto.randomBytes(READ_VDI_MIB * MiB)
  const h = await VdiHandle.open(cluster.conn(0), 'r')
  for (let at = 0; at < image.length; at += 4 * MiB) await h.write(at, image.subarray(at, at + 4 * MiB))
  const readOnly = (READ_VDI_MIB - 8) * MiB

  const reused = async () => Promise.all(metrics.map(async (m) => (await scrape(m as number)).get('sheepdog_payload_buffers_reused_total') ?? 0))
  // readers on both nodes (copies=2: each answers from its own disk) over the first part
  const sizes = [64 * 1024, 100_000, MiB, MiB + 4096, 3 * MiB + 512, 4 * MiB]
  let wrong = 0
  const readers = () =>
    Array.from({ length: READERS }, async (_, r) => {
      const conn = new SheepConnection({ host: '127.0.0.1', port: cluster.ports[r % 2] as number })
      try {
        const mine = await VdiHandle.open(conn, 'r')
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            for (let i = 0; i < READS_PER_READER / 4; i++) {
              const length = sizes[crypto.randomInt(sizes.length)] as number
              const offset = crypto.randomInt(readOnly - length)
              if (!(await mine.read(offset, length)).equals(image.subarray(offset, offset + length))) wrong++
            }
          }),
        )
      } finally {
        conn.close()
      }
    })
  // reads alone first: only they can reuse pooled buffers meanwhile
  const before = await reused()
  await Promise.all(readers())
  const after = await reused()
  for (let i = 0; i < 2; i++)
    t.ok((after[i] as number) - (before[i] as number) >= READERS, `node ${i} reused pooled buffers for reads: ${(after[i] as number) - (before[i] as number)}`)
  // then with a writer rewriting the last 8 MiB with the image's own bytes: the two share the
  // pool, and a buffer given back while its reply was still going out would be overwritten by
  // the next request's bytes
  const writer = (async () => {
    for (let i = 0; i < 16; i++) {
      const offset = readOnly + crypto.randomInt(8 * MiB - MiB)
      await h.write(offset, image.subarray(offset, offset + MiB))
    }
  })()
  await Promise.all([...readers(), writer])
  t.equal(wrong, 0, `${2 * READERS * READS_PER_READER} reads of 64 KiB to 4 MiB came back byte for byte`)
  for (let i = 0; i < 2; i++) {
    t.ok(
      await waitFor(async () => (await scrape(metrics[i] as number)).get('sheepdog_payload_buffers_lent_bytes') === 0, 10_000),
      `node ${i}: every buffer came back`,
    )
  }

  // clients that ask for a whole object and go away before (or while) the reply is sent
  const header = encodeRequestHeader({ opcode: SD_OP_READ_OBJ, dataLength: 4 * MiB, variant: REQ_OBJ, fields: { oid: vidToDataOid(h.vid, 0), offset: 0 } })
  await Promise.all(
    Array.from(
      { length: GONE_READERS },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const s = net.createConnection({ host: '127.0.0.1', port: cluster.ports[0] as number }, () => {
            s.write(header, () => {
              // some leave at once, some once the first bytes of the reply arrived
              if (i % 2 === 0) s.destroy()
              else s.once('data', () => s.destroy())
              resolve()
            })
          })
          s.on('error', reject)
        }),
    ),
  )
  t.ok(
    await waitFor(async () => (await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_lent_bytes') === 0, 10_000),
    'the buffers of replies to clients that went away came back',
  )
  t.ok((await h.read(0, 4 * MiB)).equals(image.subarray(0, 4 * MiB)), 'the sheep serves on')
  t.ok(
    cluster.nodes.every((n) => n !== undefined && isAlive(n.pid)),
    'both sheep are up',
  )
})

t.test('reads forwarded to the node holding the object land in pooled buffers and come back', async (t) => {
  const cluster = await startCluster(2, { start: 0 })
  t.teardown(() => cluster.close())
  const metrics = [await freePort(), await freePort()]
  for (let i = 0; i < 2; i++) await cluster.start(i, ['--metrics', `127.0.0.1:${metrics[i]}`])
  // one copy of each object: node 0 is the gateway of the reads, node 1 holds about half
  await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
  // objects are written one by one until node 1 holds a few (each lands there with odds of
  // about one half: ten objects left it with none about once in a thousand runs)
  await newVdi(cluster.conn(0), { name: 'f', vdiSize: BigInt(FORWARD_VDI_OBJECTS * 4 * MiB) })
  const h = await VdiHandle.open(cluster.conn(0), 'f')
  const objectBytes = new Map<number, Buffer>()
  const remote: number[] = []
  for (let idx = 0; idx < FORWARD_VDI_OBJECTS && remote.length < FORWARD_REMOTE_OBJECTS; idx++) {
    const bytes = crypto.randomBytes(4 * MiB)
    await h.write(idx * 4 * MiB, bytes)
    objectBytes.set(idx, bytes)
    if (fs.existsSync(path.join(cluster.root, 'n1', 'obj', oidToHex(vidToDataOid(h.vid, idx))))) remote.push(idx)
  }
  t.equal(remote.length, FORWARD_REMOTE_OBJECTS, `node 1 holds ${remote.length} of the ${objectBytes.size} objects written`)
  const expected = (offset: number, length: number): Buffer => {
    const idx = Math.floor(offset / (4 * MiB))
    const at = offset - idx * 4 * MiB
    return (objectBytes.get(idx) as Buffer).subarray(at, at + length)
  }

  // reads through node 0 of objects only node 1 holds: node 0 reads none from its own disk
  const sizes = [64 * 1024, 100_000, MiB, MiB + 4096, 3 * MiB + 512, 4 * MiB]
  const reusedBefore = (await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_reused_total') ?? 0
  let wrong = 0
  await Promise.all(
    Array.from({ length: READERS }, async () => {
      for (let i = 0; i < READS_PER_READER / 2; i++) {
        const idx = remote[crypto.randomInt(remote.length)] as number
        const length = sizes[crypto.randomInt(sizes.length)] as number
        const offset = idx * 4 * MiB + crypto.randomInt(4 * MiB - length + 1)
        if (!(await h.read(offset, length)).equals(expected(offset, length))) wrong++
      }
    }),
  )
  t.equal(wrong, 0, `${(READERS * READS_PER_READER) / 2} forwarded reads of 64 KiB to 4 MiB came back byte for byte`)
  const gateway = await scrape(metrics[0] as number)
  t.ok(
    (gateway.get('sheepdog_payload_buffers_reused_total') ?? 0) - reusedBefore >= READERS,
    `node 0 reused pooled buffers for the forwarded reads: ${(gateway.get('sheepdog_payload_buffers_reused_total') ?? 0) - reusedBefore}`,
  )
  t.ok(
    await waitFor(async () => (await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_lent_bytes') === 0, 10_000),
    'node 0: every buffer came back',
  )

  // node 1 gone: the forwarded reads fail, and their buffers come back all the same
  await cluster.stop(1, 'SIGKILL')
  const failed = await Promise.allSettled(Array.from({ length: 4 }, () => h.read((remote[0] as number) * 4 * MiB, MiB)))
  t.ok(
    failed.every((r) => r.status === 'rejected'),
    'reads of an object whose only holder is gone fail',
  )
  t.ok(
    await waitFor(async () => (await scrape(metrics[0] as number)).get('sheepdog_payload_buffers_lent_bytes') === 0, 10_000),
    'node 0: the buffers of the failed reads came back',
  )
  t.ok(cluster.nodes[0] !== undefined && isAlive(cluster.nodes[0].pid), 'node 0 is up')
})
