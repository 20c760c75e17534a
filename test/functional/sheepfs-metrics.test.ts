// sheepfs --metrics (issue 17): a real sheepfs mount serves Prometheus text at /metrics with
// per-volume counters that move as the volume is written (write-behind bytes) and read
// sequentially (read-ahead hits, bytes read); unmounting the volume removes its series.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { dog, freePort } from '../../harness/sheep.js'
import { mountSheepfs, startTestSheep } from '../sheepfs/helpers.js'

const MiB = 1024 * 1024
/** What the kernel asks for per FUSE read without the page cache. */
const READ_CHUNK_BYTES = 128 * 1024

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (res.status !== 200) throw new Error(`scrape answered ${res.status}`)
  return res.text()
}

/** The value of the sample `series` (name with labels, as printed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('sheepfs counts write-behind bytes and read-ahead hits per volume', async (t) => {
  const sheep = await startTestSheep(t)
  t.equal((await dog(['vdi', 'create', 'v', '16M'], { port: sheep.port })).status, 0)
  const metricsPort = await freePort()
  const mount = await mountSheepfs(t, sheep.port, { args: ['--metrics', `127.0.0.1:${metricsPort}`] })
  const at = (p: string) => path.join(mount.mountpoint, p)

  const empty = await scrape(metricsPort)
  t.equal(sample(empty, 'sheepfs_volumes'), 0, 'no volume yet')
  t.match(empty, /^process_resident_memory_bytes /m, 'process metrics are there')

  fs.writeFileSync(at('vdi/mount'), 'v\n')
  const data = crypto.randomBytes(8 * MiB)
  fs.writeFileSync(at('volume/v'), data)
  const written = await scrape(metricsPort)
  t.equal(sample(written, 'sheepfs_volumes'), 1, 'one volume')
  t.ok((sample(written, 'sheepfs_volume_write_behind_bytes_total{volume="v"}') ?? 0) >= 8 * MiB, 'write-behind bytes counted')

  // a sequential reader in the kernel's chunks: read-ahead answers most reads at once
  const fd = fs.openSync(at('volume/v'), 'r')
  const back = Buffer.alloc(data.length)
  for (let offset = 0; offset < data.length; offset += READ_CHUNK_BYTES) fs.readSync(fd, back, offset, READ_CHUNK_BYTES, offset)
  fs.closeSync(fd)
  t.ok(back.equals(data), 'the data reads back')
  const read = await scrape(metricsPort)
  t.ok((sample(read, 'sheepfs_volume_read_bytes_total{volume="v"}') ?? 0) >= 8 * MiB, 'bytes read counted')
  const hits = sample(read, 'sheepfs_volume_read_ahead_hits_total{volume="v"}') ?? 0
  const waited = sample(read, 'sheepfs_volume_reads_waited_total{volume="v"}') ?? 0
  t.ok(hits > 0, `read-ahead hits: ${hits}, reads that waited: ${waited}`)

  fs.writeFileSync(at('vdi/unmount'), 'v\n')
  const gone = await scrape(metricsPort)
  t.equal(sample(gone, 'sheepfs_volumes'), 0, 'unmounted')
  t.equal(sample(gone, 'sheepfs_volume_read_bytes_total{volume="v"}'), undefined, 'its series are gone')
})
