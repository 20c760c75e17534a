// `dog node`: its option table and subcommand table (the usage texts come from both), and the
// handlers of list, info, kill, recovery info/set-throttle/get-throttle, md info/plug/unplug,
// stat, log level set/get/list and vnodes set (cli-and-formats §5.1–5.8). `node format` is in
// the table but not implemented yet.
import { asSdError, forEachVdi, lightRequest } from './common.js'
import {
  DogExit,
  EXIT_FAILURE,
  EXIT_SUCCESS,
  EXIT_SYSFAIL,
  EXIT_USAGE,
  UsageError,
  type DogCommand,
  type DogContext,
  type DogOptionSpec,
  type DogSubcommand,
} from './cli.js'
import { setFlag } from './options.js'
import { nodeScrubSubcommands } from './scrub.js'
import { confirm } from './prompt.js'
import type { DogRuntime } from './runtime.js'
import { formatFixed, formatSize, progressLine, sprintf } from '../lib/format.js'
import { isSnapshot } from '../lib/inode.js'
import {
  getLogLevel,
  getRecoveryThrottling,
  getStat,
  killNode,
  mdInfo,
  mdPlug,
  mdUnplug,
  type MdDisk,
  setLogLevel,
  setRecoveryThrottling,
  setVnodes,
  statRecovery,
  statSheep,
  type RecoveryState,
  type SdNode,
} from '../lib/sheep-api.js'
import { addrFromText, nodeAddrText, type SdStat } from '../lib/structs.js'
import type { SheepConnection } from '../lib/client.js'
import { SD_ADDR_LEN } from '../lib/addr.js'

/** Log level names by number (sheep's -l level=…), as `node log level` prints and accepts them. */
const LOG_LEVEL_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const

// ---- node list ---------------------------------------------------------------------------------

async function listNodes(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const raw = ctx.opts.raw
  if (!raw) ctx.printStdout('  Id   Host:Port         V-Nodes       Zone\n')
  dog.nodeList(ctx).nodes.forEach((node, id) => {
    ctx.printStdout(sprintf(raw ? '%d %s %d %u\n' : '%4d   %-20s\t%2d%11u\n', id, nodeAddrText(node), node.nrVnodes, node.zone))
  })
  return EXIT_SUCCESS
}

// ---- node info ---------------------------------------------------------------------------------

/** Percentage of `size` in use, as the original's (int) cast of a double; 0 for an empty store. */
function usePercent(size: bigint, free: bigint): number {
  if (size === 0n) return 0
  return Math.trunc((Number(size - free) / Number(size)) * 100)
}

async function showNodeInfo(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const raw = ctx.opts.raw
  if (!raw) ctx.printStdout('Id\tSize\tUsed\tAvail\tUse%\n')
  let totalSize = 0n
  let totalFree = 0n
  let shown = 0
  for (const node of dog.nodeList(ctx).nodes) {
    let stat: { storeSize: bigint; storeFree: bigint } | undefined
    const answered = await lightRequest(ctx, async () => {
      stat = await statSheep(dog.connectionTo(node))
    })
    if (!answered || stat === undefined) continue
    const { storeSize, storeFree } = stat
    ctx.printStdout(
      sprintf(
        raw ? '%d %s %s %s %d%%\n' : '%2d\t%s\t%s\t%s\t%3d%%\n',
        shown,
        formatSize(storeSize, raw),
        formatSize(storeSize - storeFree, raw),
        formatSize(storeFree, raw),
        usePercent(storeSize, storeFree),
      ),
    )
    shown++
    totalSize += storeSize
    totalFree += storeFree
  }
  if (shown === 0) {
    ctx.printStderrLine('Cannot get information from any nodes')
    return EXIT_SYSFAIL
  }
  let totalVdiSize = 0n
  const walked = await forEachVdi(ctx, dog.daemon(ctx), ({ header }) => {
    if (!isSnapshot(header)) totalVdiSize += header.vdiSize
  })
  if (!walked) return EXIT_SYSFAIL
  const template = raw ? 'Total %s %s %s %d%% %s\n' : 'Total\t%s\t%s\t%s\t%3d%%\n\nTotal virtual image size\t%s\n'
  ctx.printStdout(
    sprintf(
      template,
      formatSize(totalSize, raw),
      formatSize(totalSize - totalFree, raw),
      formatSize(totalFree, raw),
      usePercent(totalSize, totalFree),
      formatSize(totalVdiSize, raw),
    ),
  )
  return EXIT_SUCCESS
}

// ---- node kill ---------------------------------------------------------------------------------

/** The node `<node id>` names: a decimal index into the node list (else exit 64 at once). */
function nodeById(ctx: DogContext, nodes: readonly SdNode[], idText: string): SdNode {
  if (!/^[0-9]+$/.test(idText)) {
    ctx.printStderrLine(`Invalid node id '${idText}', please specify a numeric value`)
    throw new DogExit(EXIT_USAGE)
  }
  const id = Number(idText)
  const node = nodes[id]
  if (node === undefined) {
    ctx.printStderrLine(`Invalid node id '${id}'`)
    throw new DogExit(EXIT_USAGE)
  }
  return node
}

async function killNodeById(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const idText = ctx.args[0]
  if (ctx.opts.local && idText !== undefined) throw new UsageError("Don't use -l option and specify node id at the same time")
  if (!ctx.opts.local && idText === undefined) return EXIT_USAGE
  const conn = ctx.opts.local || idText === undefined ? dog.daemon(ctx) : dog.connectionTo(nodeById(ctx, dog.nodeList(ctx).nodes, idText))
  if (!(await lightRequest(ctx, () => killNode(conn)))) {
    ctx.printStderrLine('Failed to execute request')
    return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}

// ---- node recovery -----------------------------------------------------------------------------

/** Time between two polls of `node recovery -P` and two reports of `node stat -w`. */
const POLL_INTERVAL_MS = 1000
const UINT32_MAX = 0xffff_ffffn
const INT64_MAX = (1n << 63n) - 1n
const INT64_MIN = -(1n << 63n)

const RECOVERY_HEADER = 'Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n'

function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs))
}

/** The progress bar with plain numbers, only when stdout is a terminal (spec §2.6). */
function recoveryProgressBar(ctx: DogContext, done: bigint, total: bigint): string {
  return ctx.io.stdoutIsTty ? progressLine(done, total, ctx.columns, true) : ''
}

/** recovery_state.state values (wire-protocol.md §7.7). */
const RECOVERY_PHASE_PREPARING_LIST = 0
const RECOVERY_PHASE_RECOVERING_OBJECTS = 1
const RECOVERY_PHASE_NOTIFYING_COMPLETION = 2

/** What -P prints for each phase of a recovery. */
const RECOVERY_PHASE_OUTPUT: ReadonlyMap<number, (ctx: DogContext, state: RecoveryState) => string> = new Map([
  [RECOVERY_PHASE_PREPARING_LIST, () => '\rpreparing a checked object list...'],
  [RECOVERY_PHASE_RECOVERING_OBJECTS, (ctx: DogContext, state: RecoveryState) => recoveryProgressBar(ctx, state.nrFinished, state.nrTotal)],
  [RECOVERY_PHASE_NOTIFYING_COMPLETION, () => '\rnotifying a completion of recovery...'],
])

/**
 * 100 × finished / total as the original computes it, in single precision; C prints the 0/0 of a
 * node still preparing its list as `-nan`.
 */
function recoveryPercentText(finished: bigint, total: bigint): string {
  const percent = Math.fround(Math.fround(100 * Math.fround(Number(finished))) / Math.fround(Number(total)))
  return Number.isNaN(percent) ? '-nan' : formatFixed(percent, 1)
}

/** A row for each node in recovery; ids are indexes over all nodes, as in `node list`. */
async function showRecoveryInfo(ctx: DogContext, dog: DogRuntime): Promise<number> {
  if (ctx.opts.progress) return followRecoveryProgress(ctx, dog)
  const raw = ctx.opts.raw
  if (!raw) ctx.printStdout(RECOVERY_HEADER)
  for (const [id, node] of dog.nodeList(ctx).nodes.entries()) {
    let state: RecoveryState
    try {
      state = await statRecovery(dog.connectionTo(node))
    } catch (error) {
      const failure = asSdError(error)
      ctx.printStderrLine(failure.isTransport ? failure.message : failure.label)
      return failure.isTransport ? EXIT_SYSFAIL : EXIT_FAILURE
    }
    if (!state.inRecovery) continue
    // the zone is printed as a C int (%d of a u32)
    const zone = node.zone | 0
    ctx.printStdout(
      raw
        ? sprintf('%d %s %d %d %llu %llu\n', id, nodeAddrText(node), node.nrVnodes, zone, state.nrFinished, state.nrTotal)
        : sprintf('%4d   %-20s%5d%11d%11s%%\n', id, nodeAddrText(node), node.nrVnodes, zone, recoveryPercentText(state.nrFinished, state.nrTotal)),
    )
  }
  return EXIT_SUCCESS
}

/** STAT_RECOVERY of the contacted node for -P; undefined after printing why it failed. */
async function pollRecovery(ctx: DogContext, dog: DogRuntime): Promise<RecoveryState | undefined> {
  try {
    return await statRecovery(dog.daemon(ctx))
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) ctx.printStderrLine(failure.message)
    ctx.printStderrLine(failure.isTransport ? 'Failed to execute request' : failure.label)
    return undefined
  }
}

/** -P: poll the contacted node every second until it is no longer recovering. */
async function followRecoveryProgress(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let state = await pollRecovery(ctx, dog)
  if (state === undefined) return EXIT_SYSFAIL
  if (!state.inRecovery) return EXIT_SUCCESS
  for (;;) {
    const previousTotal = state.nrTotal
    state = await pollRecovery(ctx, dog)
    if (state === undefined) return EXIT_SYSFAIL
    if (!state.inRecovery) {
      ctx.printStdout(recoveryProgressBar(ctx, previousTotal, previousTotal))
      return EXIT_SUCCESS
    }
    const phaseOutput = RECOVERY_PHASE_OUTPUT.get(state.state)
    if (phaseOutput === undefined) {
      ctx.printStderrLine(`unknown state of recovery: ${state.state}`)
      return EXIT_SYSFAIL
    }
    ctx.printStdout(phaseOutput(ctx, state))
    await sleep(POLL_INTERVAL_MS)
  }
}

/**
 * A whole argument as strtol/strtoll read it when nothing may follow the number: leading space
 * and a sign allowed; undefined without digits, with anything after them, or beyond 64 bits.
 */
function parseWholeCLong(text: string): bigint | undefined {
  if (!/^\s*[-+]?[0-9]+$/.test(text)) return undefined
  const value = BigInt(text.trim())
  return value >= INT64_MIN && value <= INT64_MAX ? value : undefined
}

/** A whole C integer in 0..limit (the original's strtol checks), else undefined. */
function parseCountUpTo(text: string, limit: bigint): bigint | undefined {
  const value = parseWholeCLong(text)
  return value !== undefined && value >= 0n && value <= limit ? value : undefined
}

/** A misuse the original reports with one line and exit(EXIT_USAGE): no usage text follows. */
function exitMisuse(ctx: DogContext, message: string): never {
  ctx.printStderrLine(message)
  throw new DogExit(EXIT_USAGE)
}

/** `set-throttle <max> <interval>`: at most <max> objects per <interval> ms; 0 0 turns throttling off. */
async function setRecoveryThrottle(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const [maxText, intervalText] = ctx.args as [string, string | undefined]
  // glibc prints a missing argument as (null)
  if (intervalText === undefined) exitMisuse(ctx, `Invalid interval max (${maxText}), interval ((null))`)
  const maxExecCount = parseCountUpTo(maxText, UINT32_MAX)
  if (maxExecCount === undefined) exitMisuse(ctx, `Invalid max (${maxText})`)
  const intervalMs = parseCountUpTo(intervalText, INT64_MAX)
  if (intervalMs === undefined) exitMisuse(ctx, `Invalid interval (${intervalText})`)
  if ((maxExecCount === 0n) !== (intervalMs === 0n)) exitMisuse(ctx, `Invalid interval max (${maxExecCount}), interval (${intervalMs})`)
  const throttling = { maxExecCount: Number(maxExecCount), queueWorkInterval: intervalMs, throttling: maxExecCount > 0n ? 1 : 0 }
  return requestOrReportFailure(ctx, () => setRecoveryThrottling(dog.daemon(ctx), throttling))
}

/** `get-throttle`: stderr `max (<n>), interval (<ms>)`. */
async function getRecoveryThrottle(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let maxExecCount = 0
  let intervalMs = 0n
  const status = await requestOrReportFailure(ctx, async () => {
    ;({ maxExecCount, queueWorkInterval: intervalMs } = await getRecoveryThrottling(dog.daemon(ctx)))
  })
  if (status === EXIT_SUCCESS) ctx.printStderrLine(`max (${maxExecCount}), interval (${intervalMs})`)
  return status
}

// ---- node stat ---------------------------------------------------------------------------------

type StatCounter = keyof SdStat

/** The counters of the Client (gateway) and Peer rows; peers count no flushes (a literal 0). */
const STAT_ROWS: ReadonlyArray<{
  label: string
  active: StatCounter
  total: StatCounter
  writes: StatCounter
  reads: StatCounter
  removes: StatCounter
  flushes: StatCounter | undefined
  rxBytes: StatCounter
  txBytes: StatCounter
}> = [
  {
    label: 'Client',
    active: 'gwActive',
    total: 'gwTotal',
    writes: 'gwWrites',
    reads: 'gwReads',
    removes: 'gwRemoves',
    flushes: 'gwFlushes',
    rxBytes: 'gwRxBytes',
    txBytes: 'gwTxBytes',
  },
  {
    label: 'Peer',
    active: 'peerActive',
    total: 'peerTotal',
    writes: 'peerWrites',
    reads: 'peerReads',
    removes: 'peerRemoves',
    flushes: undefined,
    rxBytes: 'peerRxBytes',
    txBytes: 'peerTxBytes',
  },
]

const STAT_HEADER = 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD'
/** -w adds the bytes in and out and the requests since the previous report. */
const STAT_WATCH_HEADER = '\tWRBW\tRDBW\tRPS'

/**
 * The header (unless raw) and the Client and Peer rows. The Write column carries writes and
 * Read reads (the original swapped them without -w). `previous` (for -w) adds the deltas.
 */
function statReport(stat: SdStat, raw: boolean, previous: SdStat | undefined): string {
  let text = raw ? '' : `${STAT_HEADER}${previous === undefined ? '' : STAT_WATCH_HEADER}\n`
  for (const row of STAT_ROWS) {
    const counters = [row.active, row.total, row.writes, row.reads, row.removes].map((counter) => String(stat[counter]))
    counters.push(row.flushes === undefined ? '0' : String(stat[row.flushes]))
    const fields = [...counters, formatSize(stat[row.rxBytes], raw), formatSize(stat[row.txBytes], raw)]
    if (previous !== undefined) {
      fields.push(
        formatSize(stat[row.rxBytes] - previous[row.rxBytes], raw),
        formatSize(stat[row.txBytes] - previous[row.txBytes], raw),
        String(BigInt.asUintN(64, stat[row.total] - previous[row.total])),
      )
    }
    text += `${raw ? '' : `${row.label}\t`}${fields.join('\t')}\n`
  }
  return text
}

/** STAT of the contacted node, or the exit status after printing why it failed. */
async function fetchStat(ctx: DogContext, dog: DogRuntime): Promise<SdStat | number> {
  try {
    return await getStat(dog.daemon(ctx))
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`failed to get stat information: ${failure.label}`)
    return EXIT_FAILURE
  }
}

/** `node stat`: request counters once, or with -w every second until interrupted. */
async function showNodeStat(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let previous: SdStat | undefined
  for (;;) {
    const stat = await fetchStat(ctx, dog)
    if (typeof stat === 'number') return stat
    if (!ctx.opts.watch) {
      ctx.printStdout(statReport(stat, ctx.opts.raw, undefined))
      return EXIT_SUCCESS
    }
    ctx.printStdout(statReport(stat, ctx.opts.raw, previous ?? stat))
    previous = stat
    await sleep(POLL_INTERVAL_MS)
  }
}

// ---- node log level ----------------------------------------------------------------------------

/** `<name>\t(<n>)` for every level, on stderr. */
function printLogLevels(ctx: DogContext): void {
  LOG_LEVEL_NAMES.forEach((name, level) => {
    ctx.printStderrLine(`${name}\t(${level})`)
  })
}

async function setNodeLogLevel(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const levelName = ctx.args[0] as string
  const level = (LOG_LEVEL_NAMES as readonly string[]).indexOf(levelName)
  if (level < 0) {
    ctx.printStderrLine(`invalid loglevel: ${levelName}`)
    ctx.printStderrLine('available loglevels:')
    printLogLevels(ctx)
    return EXIT_FAILURE
  }
  return requestOrReportFailure(ctx, () => setLogLevel(dog.daemon(ctx), level))
}

async function getNodeLogLevel(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let level = -1
  const status = await requestOrReportFailure(ctx, async () => {
    level = await getLogLevel(dog.daemon(ctx))
  })
  if (status === EXIT_SUCCESS) ctx.printStderrLine(`${LOG_LEVEL_NAMES[level] ?? 'unknown'} (${level})`)
  return status
}

/**
 * The requests of log level, recovery throttling and vnodes: any failure prints `Failed to
 * execute request` (after the connect error, if that was it) and exits 1 — the original
 * returned −1 there, exit status 255.
 */
async function requestOrReportFailure(ctx: DogContext, request: () => Promise<unknown>): Promise<number> {
  try {
    await request()
    return EXIT_SUCCESS
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) ctx.printStderrLine(failure.message)
    ctx.printStderrLine('Failed to execute request')
    return EXIT_FAILURE
  }
}

async function listLogLevels(ctx: DogContext): Promise<number> {
  printLogLevels(ctx)
  return EXIT_SUCCESS
}

// ---- node vnodes -------------------------------------------------------------------------------

/** The vnode counts SET_VNODES accepts. */
const MIN_VNODES = 1
const MAX_VNODES = 65535

/** `vnodes set <n>`: the contacted node's vnode count (fixed-vnode clusters only). */
async function setNodeVnodes(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const vnodesText = ctx.args[0] as string
  const vnodes = parseCountUpTo(vnodesText, BigInt(MAX_VNODES))
  if (vnodes === undefined || vnodes < MIN_VNODES) {
    exitMisuse(ctx, `Invalid number of vnodes '${vnodesText}': must be an integer between ${MIN_VNODES} and ${MAX_VNODES}`)
  }
  return requestOrReportFailure(ctx, () => setVnodes(dog.daemon(ctx), Number(vnodes)))
}

// ---- node md -----------------------------------------------------------------------------------

const MD_INFO_HEADER = 'Id\tSize\tUsed\tAvail\tUse%\tPath\n'

/** The original's confirmation with the sheepdog drawn beside `caution`. */
function cautionPrompt(caution: string): string {
  return `    __\n   ()'\`;\n   /\\|\`\n  /  |   ${caution}\n(/_)_|_  Are you sure you want to continue? [yes/no]: `
}

const MD_PLUG_PROMPT = cautionPrompt('Caution! The directories to be plugged will be purged.')
const MD_UNPLUG_PROMPT = cautionPrompt('Caution! Recovery will be triggered after unplugging.')

/** One row per disk of the node at `nodeText` (ip:port): index, size (free + used), used, free, use% and path. */
function mdDiskRow(nodeText: string, disk: MdDisk, raw: boolean): string {
  const size = disk.free + disk.used
  const percent = usePercent(size, disk.free)
  const sizes = [formatSize(size, raw), formatSize(disk.used, raw), formatSize(disk.free, raw)]
  if (raw) return sprintf('%s %d %s %s %s %d%% %s\n', nodeText, disk.idx, ...sizes, percent, disk.path)
  return sprintf('%2d\t%s\t%s\t%s\t%3d%%\t%s\n', disk.idx, ...sizes, percent, disk.path)
}

/** MD_INFO of one node, printed; the exit status. */
async function showNodeDisks(ctx: DogContext, nodeText: string, conn: SheepConnection): Promise<number> {
  let disks: MdDisk[]
  try {
    disks = await mdInfo(conn)
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`failed to get multi-disk information: ${failure.label}`)
    return EXIT_FAILURE
  }
  for (const disk of disks) ctx.printStdout(mdDiskRow(nodeText, disk, ctx.opts.raw))
  return EXIT_SUCCESS
}

/** `md info`: the contacted node's disks, or with -A every node's under a `Node N:` line. */
async function showMdInfo(ctx: DogContext, dog: DogRuntime): Promise<number> {
  if (!ctx.opts.raw) ctx.printStdout(MD_INFO_HEADER)
  if (!ctx.opts.allNodes) {
    const daemonText = nodeAddrText({ addr: addrFromText(ctx.opts.address) ?? Buffer.alloc(SD_ADDR_LEN), port: ctx.opts.port })
    return showNodeDisks(ctx, daemonText, dog.daemon(ctx))
  }
  for (const [id, node] of dog.nodeList(ctx).nodes.entries()) {
    if (!ctx.opts.raw) ctx.printStdout(`Node ${id}:\n`)
    if ((await showNodeDisks(ctx, nodeAddrText(node), dog.connectionTo(node))) !== EXIT_SUCCESS) return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}

/** `md plug` / `md unplug <path[,path...]>` on the contacted node, after the caution unless -f. */
function plugDisks(prompt: string, request: typeof mdPlug) {
  return async (ctx: DogContext, dog: DogRuntime): Promise<number> => {
    if (!ctx.opts.force && !(await confirm(prompt, ctx.io))) return EXIT_SUCCESS
    try {
      await request(dog.daemon(ctx), ctx.args[0] as string)
      return EXIT_SUCCESS
    } catch (error) {
      const failure = asSdError(error)
      if (failure.isTransport) {
        ctx.printStderrLine(failure.message)
        return EXIT_SYSFAIL
      }
      ctx.printStderrLine('Failed to execute request, look for sheep.log for more information')
      return EXIT_FAILURE
    }
  }
}

// ---- the table ---------------------------------------------------------------------------------

/** The node group's option letters (the original's node option table); the global ones come first. */
export const NODE_OPTIONS: readonly DogOptionSpec[] = [
  { letter: 'A', longName: 'all', takesArgument: false, description: 'show md information of all the nodes', apply: setFlag('allNodes') },
  { letter: 'P', longName: 'progress', takesArgument: false, description: 'show progress of recovery in the node', apply: setFlag('progress') },
  { letter: 'w', longName: 'watch', takesArgument: false, description: 'watch the stat every second', apply: setFlag('watch') },
  { letter: 'l', longName: 'local', takesArgument: false, description: 'issue request to local node', apply: setFlag('local') },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'ignore the confirmation', apply: setFlag('force') },
]

/** The node subcommands in the original's order (spec §3.1); `unsupported` runs those of later issues. */
export function nodeCommand(dog: DogRuntime): DogCommand {
  const run = (handler: (ctx: DogContext, dog: DogRuntime) => Promise<number>) => (ctx: DogContext) => handler(ctx, dog)
  const later = dog.unsupported
  const recoverySubcommands: DogSubcommand[] = [
    { name: 'info', description: 'show recovery information of nodes (default)', handler: run(showRecoveryInfo) },
    // one argument is enough to get past the usage, as in the original: the handler wants the second
    { name: 'set-throttle', args: '<max> <interval>', description: 'set new throttling', needsNodeList: true, minArgs: 1, handler: run(setRecoveryThrottle) },
    { name: 'get-throttle', description: 'get current throttling', needsNodeList: true, handler: run(getRecoveryThrottle) },
  ]
  const mdSubcommands: DogSubcommand[] = [
    { name: 'info', description: 'show multi-disk information', needsNodeList: true, handler: run(showMdInfo) },
    { name: 'plug', args: '<path[,path...]>', description: 'plug more disk(s) into node', minArgs: 1, handler: run(plugDisks(MD_PLUG_PROMPT, mdPlug)) },
    {
      name: 'unplug',
      args: '<path[,path...]>',
      description: 'unplug disk(s) from node',
      minArgs: 1,
      handler: run(plugDisks(MD_UNPLUG_PROMPT, mdUnplug)),
    },
  ]
  const logLevelSubcommands: DogSubcommand[] = [
    { name: 'set', args: '<log level>', description: 'set log level', minArgs: 1, handler: run(setNodeLogLevel) },
    { name: 'get', description: 'get log level', handler: run(getNodeLogLevel) },
    { name: 'list', description: 'list log level', handler: listLogLevels },
  ]
  const logSubcommands: DogSubcommand[] = [{ name: 'level', description: 'manipulate log level', subcommands: logLevelSubcommands }]
  const vnodesSubcommands: DogSubcommand[] = [{ name: 'set', args: '<num of vnodes>', description: 'set new vnodes', minArgs: 1, handler: run(setNodeVnodes) }]
  return {
    name: 'node',
    optionTable: NODE_OPTIONS,
    subcommands: [
      { name: 'kill', args: '<node id>', options: 'aprhlT', description: 'kill node', needsNodeList: true, handler: run(killNodeById) },
      { name: 'list', shortcut: 'l', options: 'aprhT', description: 'list nodes', needsNodeList: true, handler: run(listNodes) },
      { name: 'info', options: 'aprhT', description: 'show information about each node', needsNodeList: true, handler: run(showNodeInfo) },
      {
        name: 'recovery',
        options: 'aphPrT',
        description: 'show recovery information or set/get recovery throttling',
        needsNodeList: true,
        subcommands: recoverySubcommands,
        defaultSubcommand: 'info',
      },
      { name: 'md', args: '[disks]', options: 'aprAfhT', description: "See 'dog node md' for more information", subcommands: mdSubcommands },
      { name: 'stat', options: 'aprwhT', description: 'show stat information about the node', handler: run(showNodeStat) },
      { name: 'log', options: 'aphT', description: 'show or set log level of the node', subcommands: logSubcommands },
      { name: 'vnodes', options: 'aph', description: 'set the number of vnodes of the node', subcommands: vnodesSubcommands },
      {
        name: 'scrub',
        args: '[start|stop|status]',
        options: 'aprhT',
        description: 'verify and repair the objects of the node in the background (our own)',
        subcommands: nodeScrubSubcommands(dog),
        defaultSubcommand: 'status',
      },
      {
        name: 'format',
        args: '<sheep dir> <store name>',
        options: 'aphT',
        description: 'format a node with the store (plain or tree)',
        minArgs: 2,
        handler: later,
      },
    ],
  }
}
