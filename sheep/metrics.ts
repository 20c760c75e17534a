// sheep's Prometheus endpoint (`--metrics [HOST:]PORT`, issue 17): an HTTP server answering
// GET /metrics in the Prometheus text format through prom-client. Request counts, latencies and
// bytes come from the server's request observer (server.ts: the one place every request is
// answered); the node's state (epoch, members, store, free space, recovery, connections) is read
// when a scrape asks for it, so nothing on the request path waits for the metrics. The names
// are the ones contrib/grafana/sheepdog.json graphs; renaming one breaks dashboards. The HTTP
// side is lib/metrics-http.ts.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import {
  SD_OP_CREATE_AND_WRITE_OBJ,
  SD_OP_CREATE_AND_WRITE_PEER,
  SD_OP_READ_OBJ,
  SD_OP_READ_PEER,
  SD_OP_WRITE_OBJ,
  SD_OP_WRITE_PEER,
  opcodeName,
  resultName,
} from '../lib/proto.js'
import type { RequestObserver, SheepServer } from './server.js'
import type { Sheep } from './sheep.js'
import { freeSpaceOf } from './store/disks.js'

/** Every metric of sheep's own starts with this (Node's process metrics keep prom-client's names). */
export const METRICS_PREFIX = 'sheepdog_'
/** Latency buckets in seconds: 50 µs (a cached peer read) to 10 s (a write waiting for recovery). */
const LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]

const READ_OPS = new Set([SD_OP_READ_OBJ, SD_OP_READ_PEER])
const WRITE_OPS = new Set([SD_OP_WRITE_OBJ, SD_OP_WRITE_PEER, SD_OP_CREATE_AND_WRITE_OBJ, SD_OP_CREATE_AND_WRITE_PEER])

/** A gauge whose value is read at scrape time. */
function stateGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name: METRICS_PREFIX + name,
    help,
    registers: [registry],
    collect() {
      this.set(read())
    },
  })
}

/** A gauge with one value per object disk (label `disk`: its path), read at scrape time. */
function diskGauge(registry: Registry, name: string, help: string, read: () => Array<[string, number]>): void {
  new Gauge({
    name: METRICS_PREFIX + name,
    help,
    labelNames: ['disk'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [disk, value] of read()) this.set({ disk }, value)
    },
  })
}

/** Free bytes of the file system holding `dir`; 0 when it cannot be asked (a failed disk). */
function diskFree(dir: string): number {
  try {
    return Number(freeSpaceOf(dir))
  } catch {
    return 0
  }
}

/** The registry with every sheep metric, and the observer that feeds the request metrics. */
export function sheepMetrics(sheep: Sheep, server: SheepServer): { registry: Registry; observe: RequestObserver } {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const requests = new Counter({
    name: `${METRICS_PREFIX}requests_total`,
    help: 'Requests answered, by opcode, op kind (gateway, peer, local, cluster) and result',
    labelNames: ['op', 'kind', 'result'],
    registers: [registry],
  })
  const latency = new Histogram({
    name: `${METRICS_PREFIX}request_duration_seconds`,
    help: 'Time from a request read to its answer, by op kind and opcode',
    labelNames: ['kind', 'op'],
    buckets: LATENCY_BUCKETS_S,
    registers: [registry],
  })
  const readBytes = new Counter({
    name: `${METRICS_PREFIX}read_bytes_total`,
    help: 'Object bytes sent in answers to read requests, by op kind',
    labelNames: ['kind'],
    registers: [registry],
  })
  const writtenBytes = new Counter({
    name: `${METRICS_PREFIX}written_bytes_total`,
    help: 'Object bytes received in write requests, by op kind',
    labelNames: ['kind'],
    registers: [registry],
  })
  const observe: RequestObserver = (done) => {
    const op = opcodeName(done.opcode)
    requests.inc({ op, kind: done.kind, result: resultName(done.result) })
    latency.observe({ kind: done.kind, op }, done.durationMs / 1000)
    if (READ_OPS.has(done.opcode)) readBytes.inc({ kind: done.kind }, done.txBytes)
    else if (WRITE_OPS.has(done.opcode)) writtenBytes.inc({ kind: done.kind }, done.rxBytes)
  }

  stateGauge(registry, 'epoch', 'The epoch of this node', () => sheep.epoch)
  stateGauge(registry, 'members', 'Nodes in the cluster as this node sees it', () => sheep.members.length)
  stateGauge(registry, 'status', 'Cluster status (SD_STATUS_*: 1 ok, 2 wait, 3 shutdown, 4 killed)', () => sheep.status)
  diskGauge(registry, 'objects_stored', 'Objects in this node’s store, by object disk', () => sheep.store.diskStats().map((d) => [d.path, d.objects]))
  diskGauge(registry, 'stored_bytes', 'Bytes of the objects in this node’s store, by object disk', () =>
    sheep.store.diskStats().map((d) => [d.path, Number(d.bytes)]),
  )
  diskGauge(registry, 'free_bytes', 'Free bytes on the file system of each object disk', () => sheep.store.diskStats().map((d) => [d.path, diskFree(d.path)]))
  stateGauge(registry, 'recovery_running', '1 while a recovery runs on this node', () => (sheep.recovery.running ? 1 : 0))
  stateGauge(registry, 'recovery_state', 'Recovery state (RECOVERY_STATE_*: 0 preparing, 1 recovering, 2 notifying)', () => sheep.recovery.state)
  stateGauge(registry, 'recovery_objects_total', 'Objects the running (or last) recovery has to fetch', () => sheep.recovery.nrTotal)
  stateGauge(registry, 'recovery_objects_done', 'Objects the running (or last) recovery has fetched', () => sheep.recovery.nrFinished)
  new Counter({
    name: `${METRICS_PREFIX}recovered_objects_total`,
    help: 'Objects this node recovered since it started',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(sheep.recovery.recoveredObjects)
    },
  })
  new Counter({
    name: `${METRICS_PREFIX}recovered_bytes_total`,
    help: 'Bytes (whole object sizes) this node recovered since it started',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(sheep.recovery.recoveredBytes)
    },
  })
  const scrapedCounter = (name: string, help: string, read: () => number) =>
    new Counter({
      name: METRICS_PREFIX + name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(read())
      },
    })
  scrapedCounter(
    'checksum_mismatches_total',
    'Reads (and scrubs) that found a stored block not matching its checksum; never served',
    () => sheep.integrity.mismatches,
  )
  scrapedCounter('read_repairs_total', 'Corrupt replicas or strips rewritten from a good copy (read-repair and scrub)', () => sheep.integrity.repaired)
  scrapedCounter('read_repair_failures_total', 'Repairs that found no good copy to rewrite from', () => sheep.integrity.repairFailed)
  stateGauge(registry, 'scrub_running', '1 while a scrub runs on this node', () => (sheep.integrity.scrub.running ? 1 : 0))
  stateGauge(registry, 'scrub_objects_done', 'Objects the running (or last) scrub has checked', () => sheep.integrity.scrub.objectsDone)
  stateGauge(registry, 'scrub_objects_total', 'Objects the running (or last) scrub has to check', () => sheep.integrity.scrub.objectsTotal)
  stateGauge(registry, 'requests_in_flight', 'Requests being processed now', () => server.requestsInFlight)
  stateGauge(registry, 'connections_open', 'Client and peer connections open now', () => server.connectionCount)
  stateGauge(
    registry,
    'payload_buffers_lent_bytes',
    'Bytes of pooled payload buffers held by requests, frames being read and replies being sent now',
    () => server.payloadPool.outBytes,
  )
  stateGauge(registry, 'payload_buffers_idle_bytes', 'Bytes of pooled payload buffers kept for the next requests', () => server.payloadPool.idleBytes)
  const wbLog = () => sheep.store.writeBackLogStats?.()
  scrapedCounter('wblog_flushes_total', 'Flushes (NBD FLUSH, SYNC_PEER) that appended to a write-back log', () => wbLog()?.flushesLogged ?? 0)
  scrapedCounter('wblog_writes_committed_total', 'Durable writes committed through a write-back log (group commit)', () => wbLog()?.writesCommitted ?? 0)
  scrapedCounter(
    'wblog_commit_groups_total',
    'Appends to a write-back log that committed durable writes (each one device flush)',
    () => wbLog()?.commitGroups ?? 0,
  )
  scrapedCounter('wblog_bytes_total', 'Bytes appended to the write-back logs', () => wbLog()?.bytesLogged ?? 0)
  scrapedCounter('wblog_objects_synced_total', 'Objects a flush synced rather than logged', () => wbLog()?.objectsSynced ?? 0)
  scrapedCounter('wblog_checkpoints_total', 'Write-back log files whose objects were synced and that were removed', () => wbLog()?.checkpoints ?? 0)
  scrapedCounter(
    'wblog_records_written_back_total',
    'Records written back into their objects at start-up after a restart of the host',
    () => wbLog()?.recordsWrittenBack ?? 0,
  )
  scrapedCounter('payload_buffers_reused_total', 'Write payloads and read replies that reused a pooled buffer', () => server.payloadPool.hits)
  scrapedCounter(
    'payload_buffers_allocated_total',
    'Write payloads and read replies for which the pool allocated a new buffer',
    () => server.payloadPool.misses,
  )
  return { registry, observe }
}
