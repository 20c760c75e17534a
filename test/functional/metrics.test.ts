// sheep --metrics (issue 17): a real sheep serves Prometheus text at /metrics; its request
// counters, bytes and store gauges move while dog writes to it, and when a second sheep joins,
// the joiner's recovery shows in its gauges and the first node counts the peer reads it served.
import crypto from 'node:crypto'
import path from 'node:path'
import t from 'tap'
import { dog, freePort, startSheep, stopSheep, tempDir, waitFor } from '../../harness/sheep.js'
import { scrape } from '../helpers/metrics.js'

const MiB = 1024 * 1024
const VDI_MIB = 64

/** The sum of every sample of `name` whose labels include each of `labels` (k="v"). */
function total(samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0
  for (const [key, value] of samples) {
    const brace = key.indexOf('{')
    const base = brace < 0 ? key : key.slice(0, brace)
    if (base === name && labels.every((l) => key.includes(l))) sum += value
  }
  return sum
}

t.test('a scraped sheep counts writes, and a joiner shows its recovery', async (t) => {
  const root = tempDir('sheep-metrics-')
  const cluster = ['-c', `local:${path.join(root, 'shm')}`]
  const metricsA = await freePort()
  const a = await startSheep({ dir: path.join(root, 'a'), args: [...cluster, '--metrics', `127.0.0.1:${metricsA}`] })
  t.teardown(() => stopSheep(a))

  const idle = await scrape(metricsA)
  t.equal(total(idle, 'sheepdog_members'), 1, 'one member')
  t.ok(idle.has('nodejs_eventloop_lag_seconds') && idle.has('process_resident_memory_bytes'), 'event-loop lag and RSS are there')
  t.ok(total(idle, 'sheepdog_free_bytes') > 0, 'free space is there')

  t.equal((await dog(['cluster', 'format', '-c', '1'], { port: a.port })).status, 0)
  // 16 data objects: with one copy, the chance that the joiner is placed none of them is 2^-17
  // (with 4 it was 1 in 32, and the test failed once so)
  t.equal((await dog(['vdi', 'create', 'v', `${VDI_MIB}M`], { port: a.port })).status, 0)
  const before = await scrape(metricsA)
  t.equal(total(before, 'sheepdog_epoch'), 1, 'epoch 1 after the format')

  // scrape while the write runs: the endpoint answers while requests are served
  const data = crypto.randomBytes(VDI_MIB * MiB)
  const writing = dog(['vdi', 'write', 'v'], { port: a.port, input: data })
  const during = await scrape(metricsA)
  t.ok(during.has('sheepdog_requests_in_flight') && during.has('sheepdog_connections_open'), 'in-flight requests and connections are there')
  t.equal((await writing).status, 0, 'the write succeeds')

  const after = await scrape(metricsA)
  const writes = (s: Map<string, number>) =>
    total(s, 'sheepdog_requests_total', 'kind="gateway"', 'op="CREATE_AND_WRITE_OBJ"', 'result="SUCCESS"') +
    total(s, 'sheepdog_requests_total', 'kind="gateway"', 'op="WRITE_OBJ"', 'result="SUCCESS"')
  t.ok(writes(after) >= writes(before) + 4, `gateway writes counted: ${writes(before)} → ${writes(after)}`)
  const written = total(after, 'sheepdog_written_bytes_total', 'kind="gateway"') - total(before, 'sheepdog_written_bytes_total', 'kind="gateway"')
  t.ok(written >= 16 * MiB, `written bytes grew by ${written}`)
  t.ok(
    total(after, 'sheepdog_request_duration_seconds_count', 'kind="gateway"') > total(before, 'sheepdog_request_duration_seconds_count', 'kind="gateway"'),
    'gateway latencies observed',
  )
  t.ok(total(after, 'sheepdog_objects_stored') >= 5, `objects stored: ${total(after, 'sheepdog_objects_stored')}`)
  t.ok(total(after, 'sheepdog_stored_bytes') >= 16 * MiB, 'bytes stored')
  t.ok(total(after, 'sheepdog_objects_stored', 'disk="/') >= 5, 'objects counted by disk (label disk: its path)')

  const r = await dog(['vdi', 'read', 'v'], { port: a.port })
  t.ok(r.status === 0 && r.stdoutBytes.equals(data), 'reads back')
  const read = total(await scrape(metricsA), 'sheepdog_read_bytes_total', 'kind="gateway"') - total(after, 'sheepdog_read_bytes_total', 'kind="gateway"')
  t.ok(read >= 16 * MiB, `read bytes grew by ${read}`)

  // a second node: with one copy, the objects it now holds move to it by recovery
  const metricsB = await freePort()
  const b = await startSheep({ dir: path.join(root, 'b'), args: [...cluster, '--metrics', `127.0.0.1:${metricsB}`] })
  t.teardown(() => stopSheep(b))
  t.ok(
    await waitFor(async () => {
      const s = await scrape(metricsB)
      return total(s, 'sheepdog_epoch') === 2 && total(s, 'sheepdog_recovery_running') === 0 && total(s, 'sheepdog_recovery_objects_done') > 0
    }, 30_000),
    'the joiner recovered objects (epoch 2, recovery over, objects done > 0)',
  )
  const joined = await scrape(metricsB)
  t.equal(total(joined, 'sheepdog_members'), 2, 'two members')
  t.equal(total(joined, 'sheepdog_recovery_objects_done'), total(joined, 'sheepdog_recovery_objects_total'), 'every object it had to fetch was fetched')
  t.ok(total(joined, 'sheepdog_objects_stored') > 0, 'the joiner stores objects now')
  t.ok(total(joined, 'sheepdog_recovered_objects_total') > 0, 'recovered objects are counted')
  t.ok(total(joined, 'sheepdog_recovered_bytes_total') > 0, 'and their bytes')
  const served = await scrape(metricsA)
  t.ok(total(served, 'sheepdog_requests_total', 'kind="peer"', 'op="READ_PEER"') > 0, 'the first node counted the peer reads it served')
  t.ok(total(served, 'sheepdog_request_duration_seconds_count', 'kind="peer"') > 0, 'with their latencies')
})

t.test('--metrics is refused on the sheep port, and is off by default', async (t) => {
  const { parseSheepArgs } = await import('../../sheep/options.js')
  const same = parseSheepArgs(['-p', '7000', '--metrics', '7000'])
  t.equal(same.kind === 'exit' && same.code, 1, 'the sheep port is refused')
  const bad = parseSheepArgs(['--metrics', 'x:y'])
  t.match(bad.kind === 'exit' ? bad.stderr : '', /Invalid metrics address/)
  const off = parseSheepArgs([])
  t.equal(off.kind === 'run' && off.options.metrics, undefined, 'off by default')
  const on = parseSheepArgs(['-b', '127.0.0.1', '-M', '9100'])
  t.same(on.kind === 'run' && on.options.metrics, { host: '127.0.0.1', port: 9100 }, '-M PORT listens on the -b address')
})
