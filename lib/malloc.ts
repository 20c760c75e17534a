// glibc's malloc settings for a process that moves many large buffers, applied while it runs.
// The daemons get them from their environment (MALLOC_TUNING in daemon.ts: glibc reads those
// variables only when a process starts); dog's data commands (`vdi read`, `vdi write`, backups,
// clones), and sheep and sheepfs run with -f without them, set the same values with mallopt(3)
// through the storeio addon: starting dog again with them would cost a second start of Node
// (~250 ms here) on every such command.
import { MALLOC_TUNING } from './daemon.js'
import { loadAddon } from './native-addon.js'

interface MallocAddon {
  /** mallopt(M_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD): whether glibc took both. */
  mallocKeepInHeap(mmapThresholdBytes: number, trimThresholdBytes: number): boolean
}

/**
 * Keeps buffers of up to 8 MiB in the heap and up to 64 MiB of free heap for reuse, as the
 * daemons do, unless the environment names either setting itself (glibc then already applied
 * it). False when not applied: the environment's settings stand, or the addon was not built.
 */
export function keepBuffersInHeap(env: NodeJS.ProcessEnv = process.env): boolean {
  if (Object.keys(MALLOC_TUNING).some((name) => env[name] !== undefined)) return false
  const addon = loadAddon<MallocAddon>('storeio', 'sheepdog_storeio')
  if (addon instanceof Error) return false
  return addon.mallocKeepInHeap(Number(MALLOC_TUNING.MALLOC_MMAP_THRESHOLD_), Number(MALLOC_TUNING.MALLOC_TRIM_THRESHOLD_))
}
