// Reads V8 CPU profiles (`node --cpu-prof`, e.g. of the sheep `npm run bench -- iops --cpu-prof
// DIR` ran) and prints where the main thread's time went: self time per part of the request path
// (the module a function lives in, sheep's own modules by name, Node's internals by area), the
// functions with the most self time, and idle time. Thread-pool work (file I/O, fsync) does not
// appear in these profiles: it runs off the main thread, which shows as idle while it waits.
// With --windows (the windows.jsonl `npm run bench -- iops --cpu-prof DIR` writes) each row is
// summarized alone, with the main thread's busy time per request of that row.
// Usage: npm run bench -- cpu-profile [--windows FILE.jsonl] [--top N] FILE.cpuprofile…
import fs from 'node:fs'
import path from 'node:path'

/** Functions listed after the per-part table unless --top says otherwise. */
const DEFAULT_TOP = 25
/** The file in a --cpu-prof directory where the iops bench notes when each row ran. */
export const WINDOWS_FILE = 'windows.jsonl'

/** When one row of the iops bench ran, on the profiles' clock (CLOCK_MONOTONIC, µs). */
export interface ProfileWindow {
  path: string
  row: string
  fromUs: number
  toUs: number
  /** The row's time when it ran in turns with another (bench checksum): only these spans count. */
  spans?: Array<[number, number]>
  iops: number
}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

/** The part of the request path a function belongs to, from its script URL (first match wins). */
const PARTS: readonly [RegExp, string][] = [
  [/\/dist\/sheep\/nbd\.js$/, 'sheep nbd.ts (NBD server)'],
  [/\/dist\/sheep\/server\.js$/, 'sheep server.ts (request parse, reply)'],
  [/\/dist\/sheep\/ops\.js$/, 'sheep ops.ts (op table)'],
  [/\/dist\/sheep\/gateway\.js$/, 'sheep gateway.ts'],
  [/\/dist\/sheep\/replica-io\.js$/, 'sheep replica-io.ts (fan-out)'],
  [/\/dist\/sheep\/peer-conns\.js$/, 'sheep peer-conns.ts (peer sockets)'],
  [/\/dist\/sheep\/peer\.js$/, 'sheep peer.ts'],
  [/\/dist\/sheep\/store\//, 'sheep store/ (file store)'],
  [/\/dist\/sheep\/metrics\.js$/, 'sheep metrics.ts'],
  [/\/dist\/sheep\//, 'sheep, other modules'],
  [/\/dist\/lib\/(client|framing)\.js$/, 'lib client.ts/framing.ts (wire client)'],
  [/\/dist\/lib\/(codec|layout|structs|proto)\.js$/, 'lib codec/layout (headers)'],
  [/\/dist\/lib\/vdi-io\.js$/, 'lib vdi-io.ts (VDI range I/O)'],
  [/\/dist\/lib\//, 'lib, other modules'],
  [/node_modules\/pino|node_modules\/sonic-boom/, 'logging (pino)'],
  [/node_modules\//, 'other npm packages'],
  [/^node:(net|stream|internal\/stream|internal\/net)|internal\/(streams|stream_base_commons|net)/, 'node net/streams (socket I/O)'],
  [/^node:(fs|internal\/fs)|internal\/fs\//, 'node fs (thread-pool calls)'],
  [/^node:internal\/(process\/task_queues|timers)|node:timers/, 'node task queues/timers'],
  [/^node:/, 'node, other internals'],
]

/** V8's own entries, kept apart from JavaScript. */
const SPECIAL = new Map<string, string>([
  ['(idle)', 'idle (waiting: sockets, thread pool)'],
  ['(program)', 'native (V8/libuv outside JS)'],
  ['(garbage collector)', 'garbage collector'],
])

function partOf(frame: ProfileNode['callFrame']): string {
  // a Map: a function named `constructor` or `toString` must not find Object's own
  const special = SPECIAL.get(frame.functionName)
  if (special) return special
  if (frame.url === '') return 'native (V8/libuv outside JS)'
  return PARTS.find(([re]) => re.test(frame.url))?.[1] ?? 'other'
}

/** Self time in µs per profile node id, of the samples taken inside one of the spans [fromUs, toUs). */
function selfTimes(p: CpuProfile, spans: ReadonlyArray<readonly [number, number]>): Map<number, number> {
  const self = new Map<number, number>()
  // timeDeltas[i] is the time before sample i; it is charged to sample i's node, as DevTools does
  let at = p.startTime
  for (let i = 0; i < p.samples.length; i++) {
    const delta = p.timeDeltas[i] ?? 0
    at += delta
    if (!spans.some(([fromUs, toUs]) => at >= fromUs && at < toUs)) continue
    const id = p.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + delta)
  }
  return self
}

function summarize(file: string, p: CpuProfile, top: number, window?: ProfileWindow): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parentOf = new Map<number, ProfileNode>()
  for (const n of p.nodes) for (const c of n.children ?? []) parentOf.set(c, n)
  const self = selfTimes(p, window ? (window.spans ?? [[window.fromUs, window.toUs]]) : [[Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY]])
  const parts = new Map<string, number>()
  const fns = new Map<string, number>()
  let total = 0
  for (const [id, us] of self) {
    const frame = (byId.get(id) as ProfileNode).callFrame
    total += us
    const part = partOf(frame)
    parts.set(part, (parts.get(part) ?? 0) + us)
    if (SPECIAL.has(frame.functionName)) continue
    // a native binding (no URL) is named with its caller: fs's writeBuffer and a socket's differ
    const caller = frame.url === '' ? parentOf.get(id)?.callFrame : undefined
    const where = caller ? `← ${caller.functionName || '(anonymous)'} ${path.basename(caller.url)}` : `${path.basename(frame.url)}:${frame.lineNumber + 1}`
    const name = `${frame.functionName || '(anonymous)'} ${where}`
    fns.set(name, (fns.get(name) ?? 0) + us)
  }
  if (total === 0) return
  const idle = parts.get(SPECIAL.get('(idle)') as string) ?? 0
  const busy = total - idle
  const what = window ? `${path.basename(file)}, ${window.path} ${window.row}` : file
  const perRequest = window ? `, ${(busy / (window.iops * (total / 1e6))).toFixed(0)} µs per request at ${window.iops.toFixed(0)} IOPS` : ''
  console.log(
    `\n${what}: ${(total / 1e6).toFixed(1)} s profiled, main thread busy ${(busy / 1e6).toFixed(2)} s (${((100 * busy) / total).toFixed(0)}%)${perRequest}`,
  )
  console.log(`${'part (self time)'.padEnd(44)}${'ms'.padStart(10)}${'% busy'.padStart(9)}`)
  for (const [part, us] of [...parts].sort((a, b) => b[1] - a[1])) {
    const share = part === SPECIAL.get('(idle)') ? '' : ((100 * us) / busy).toFixed(1)
    console.log(`${part.padEnd(44)}${(us / 1000).toFixed(0).padStart(10)}${share.padStart(9)}`)
  }
  console.log(`top ${top} functions by self time:`)
  for (const [name, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${name}`)
  }
}

export function runCpuProfileSummary(): void {
  const args = process.argv.slice(3)
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name)
    return i >= 0 ? args[i + 1] : undefined
  }
  const top = Number(flag('--top') ?? DEFAULT_TOP)
  const windowsFile = flag('--windows')
  const files = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'))
  if (files.length === 0 || !(top > 0)) {
    console.error('usage: npm run bench -- cpu-profile [--windows FILE.jsonl] [--top N] FILE.cpuprofile…')
    process.exit(64)
  }
  const windows = windowsFile
    ? fs
        .readFileSync(windowsFile, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as ProfileWindow)
    : [undefined]
  for (const file of files) {
    const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile
    for (const w of windows) summarize(file, p, top, w)
  }
}
