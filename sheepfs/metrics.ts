// sheepfs's Prometheus metrics (`sheepfs --metrics [HOST:]PORT`, issue 17): per mounted volume,
// the reads read-ahead answered at once and those that waited for the sheep, bytes read, and
// bytes written through write-behind or straight through; read from the volumes' counters when
// scraped. Node's process metrics come with them. The HTTP side is lib/metrics-http.ts.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { SheepFs } from './fs.js'
import type { VolumeCounters } from './volume.js'

/** Every metric of sheepfs's own starts with this. */
export const SHEEPFS_METRICS_PREFIX = 'sheepfs_'

/** A counter per volume whose value is one of the volumes' counters, read at scrape time. */
const VOLUME_COUNTERS: ReadonlyArray<{ name: string; help: string; field: keyof VolumeCounters }> = [
  { name: 'read_ahead_hits_total', help: 'Reads answered at once from data read-ahead had fetched', field: 'readAheadHits' },
  { name: 'reads_waited_total', help: 'Reads that waited for the sheep', field: 'readsWaited' },
  { name: 'read_bytes_total', help: 'Bytes read from the volume', field: 'readBytes' },
  { name: 'write_behind_bytes_total', help: 'Bytes written through write-behind (answered before the sheep had them)', field: 'writeBehindBytes' },
  { name: 'write_through_bytes_total', help: 'Bytes written and answered once on every replica', field: 'writeThroughBytes' },
]

export function sheepfsMetrics(sheepfs: SheepFs): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const spec of VOLUME_COUNTERS) {
    new Counter({
      name: `${SHEEPFS_METRICS_PREFIX}volume_${spec.name}`,
      help: spec.help,
      labelNames: ['volume'],
      registers: [registry],
      collect() {
        this.reset()
        for (const volume of sheepfs.mountedVolumes()) this.inc({ volume: volume.entryName }, volume.counters[spec.field])
      },
    })
  }
  new Gauge({
    name: `${SHEEPFS_METRICS_PREFIX}volumes`,
    help: 'Volumes mounted under /volume',
    registers: [registry],
    collect() {
      this.set(sheepfs.mountedVolumes().length)
    },
  })
  return registry
}
