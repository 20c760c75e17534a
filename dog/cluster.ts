// `dog cluster`: its option table and subcommand table (the usage texts come from both), and the
// handlers of info, format, shutdown, recover force/enable/disable, reweight and alter-copy
// (cli-and-formats §6.1–6.5, §6.7). The other subcommands are in the table but not implemented
// yet.
import { lightRequest } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, type DogCommand, type DogContext, type DogOptionSpec, type DogSubcommand } from './cli.js'
import { applyBlockSizeShift, applyRedundancy, setFlag } from './options.js'
import { formatRedundancy } from './parsers.js'
import { confirm } from './prompt.js'
import type { DogRuntime } from './runtime.js'
import { SdError } from '../lib/errors.js'
import { formatCtime, formatEpochTime, sprintf } from '../lib/format.js'
import {
  resultLabel,
  SD_CLUSTER_FLAG_AUTO_VNODES,
  SD_CLUSTER_FLAG_AVOID_DISKFULL,
  SD_CLUSTER_FLAG_DISKMODE,
  SD_CLUSTER_FLAG_RECYCLE_VID,
  SD_CLUSTER_FLAG_STRICT,
  SD_CLUSTER_FLAG_USE_LOCK,
  SD_RES_NO_STORE,
  SD_RES_SUCCESS,
} from '../lib/proto.js'
import {
  alterClusterCopy,
  clusterInfo,
  disableRecover,
  enableRecover,
  forceRecover,
  getStoreList,
  makeFs,
  readVdis,
  reweight,
  shutdownCluster,
  statCluster,
  type EpochLog,
} from '../lib/sheep-api.js'
import { nodeAddrText, sameNode } from '../lib/structs.js'
import { listClusterSnapshots, loadClusterSnapshot, saveClusterSnapshot, showClusterSnapshot } from './farm.js'
import { checkCluster } from './vdi-check.js'
import { clusterScrubSubcommands } from './scrub.js'
import { requestedCopies } from './vdi-alter-copy.js'

/** Backend store `cluster format` asks for unless -b names one. */
const DEFAULT_STORE = 'plain'
/** Store names are sent in a 16-byte field with its NUL. */
const STORE_NAME_MAX_LENGTH = 15

const NOT_EMPTY_PROMPT =
  '    __\n' + "   ()'`;\n" + '   /\\|`\n' + '  /  |   Caution! The cluster is not empty.\n' + '(/_)_|_  Are you sure you want to continue? [yes/no]: '

function asSdError(error: unknown): SdError {
  if (error instanceof SdError) return error
  throw error
}

// ---- cluster info ------------------------------------------------------------------------------

/** `ip:port:vnodes` of every node of an epoch, comma-space separated. */
function epochMembers(log: EpochLog): string {
  return log.nodes.map((node) => `${nodeAddrText(node)}:${node.nrVnodes}`).join(', ')
}

/** -d: `+ip:port` for nodes that joined since the older epoch, then `-ip:port` for those that left. */
function epochDifference(log: EpochLog, older: EpochLog): string {
  const joined = log.nodes.filter((node) => !older.nodes.some((other) => sameNode(node, other)))
  const left = older.nodes.filter((node) => !log.nodes.some((other) => sameNode(node, other)))
  return [...joined.map((node) => `+${nodeAddrText(node)}`), ...left.map((node) => `-${nodeAddrText(node)}`)].join(', ')
}

async function showClusterInfo(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const raw = ctx.opts.raw
  const list = dog.nodeList(ctx)
  let answer: { result: number; logs: EpochLog[] }
  try {
    answer = await statCluster(dog.daemon(ctx), list.nodes.length, list.epoch)
  } catch (error) {
    ctx.printStderrLine(asSdError(error).message)
    return EXIT_SYSFAIL
  }
  const { result, logs } = answer
  const running = result === SD_RES_SUCCESS
  const latest = logs[0]
  const flags = latest?.flags ?? 0
  const prefix = (label: string): string => (raw ? '' : label)

  let text = prefix('Cluster status: ')
  text += running ? `running, auto-recovery ${latest?.disableRecovery ? 'disabled' : 'enabled'}\n` : `${resultLabel(result)}\n`
  if (ctx.opts.verbose) {
    text += prefix('Cluster store: ')
    if (running) {
      text += `${latest?.drvName ?? ''} with ${formatRedundancy(latest?.nrCopies ?? 0, latest?.copyPolicy ?? 0)} redundancy policy\n`
      text += `${prefix('Cluster vnodes strategy: ')}${flags & SD_CLUSTER_FLAG_AUTO_VNODES ? 'auto' : 'fixed'}\n`
    } else {
      text += `${resultLabel(result)}\n`
    }
    text += `${prefix('Cluster vnode mode: ')}${flags & SD_CLUSTER_FLAG_DISKMODE ? 'disk' : 'node'}\n`
  } else {
    text += '\n'
  }
  if (!raw && latest !== undefined) {
    text += `Cluster created at ${formatCtime(Number(latest.ctime >> 32n))}\n\n`
    text += 'Epoch Time           Version [Host:Port:V-Nodes,,,]\n'
  }
  logs.forEach((log, position) => {
    const time = raw ? String(log.time) : formatEpochTime(Number(log.time))
    text += raw ? `${time} ${log.epoch}` : sprintf('%s %6d', time, log.epoch)
    const older = logs[position + 1]
    let members: string
    if (!ctx.opts.diff) members = epochMembers(log)
    else if (older === undefined) members = 'formated'
    else members = epochDifference(log, older)
    text += ` [${members}]\n`
  })
  ctx.printStdout(text)
  return EXIT_SUCCESS
}

// ---- cluster format ----------------------------------------------------------------------------

/**
 * Every data node must follow the vnode strategy -V asks for: CLUSTER_INFO's AUTO_VNODES bit is
 * the formatted cluster's, or before the first format the node's own (its -V option).
 */
async function checkVnodeStrategy(ctx: DogContext, dog: DogRuntime): Promise<number | undefined> {
  for (const node of dog.nodeList(ctx).nodes) {
    let info: Awaited<ReturnType<typeof clusterInfo>>
    try {
      info = await clusterInfo(dog.connectionTo(node))
    } catch (error) {
      const failure = asSdError(error)
      if (failure.isTransport) ctx.printStderrLine(failure.message)
      ctx.printStderrLine(failure.isTransport ? 'Fail to execute request' : failure.label)
      return EXIT_FAILURE
    }
    if (node.nrVnodes === 0) continue
    const autoVnodes = (info.flags & SD_CLUSTER_FLAG_AUTO_VNODES) !== 0
    if (autoVnodes && ctx.opts.fixedVnodes) {
      ctx.printStderrLine("Can not apply the option of '-V', because there are vnode strategy of sheep is auto in the cluster")
      return EXIT_FAILURE
    }
    if (!autoVnodes && !ctx.opts.fixedVnodes) {
      ctx.printStderrLine("Need to specify the option of '-V', because there are vnode strategy of sheep is fixed in the cluster")
      return EXIT_FAILURE
    }
  }
  return undefined
}

/** The cluster flags MAKE_FS carries for the given options. */
function formatFlags(ctx: DogContext): number {
  const { opts } = ctx
  return (
    (opts.strict ? SD_CLUSTER_FLAG_STRICT : 0) |
    (opts.lock ? SD_CLUSTER_FLAG_USE_LOCK : 0) |
    (opts.recycleVid ? SD_CLUSTER_FLAG_RECYCLE_VID : 0) |
    (opts.fixedVnodes ? 0 : SD_CLUSTER_FLAG_AUTO_VNODES) |
    (opts.avoidDiskfull ? SD_CLUSTER_FLAG_AVOID_DISKFULL : 0)
  )
}

/** Now in the cluster ctime encoding: seconds << 32 | nanoseconds (wire-protocol.md §3.5). */
function clusterCtimeNow(): bigint {
  const nowMs = Date.now()
  return (BigInt(Math.floor(nowMs / 1000)) << 32n) | BigInt((nowMs % 1000) * 1_000_000)
}

/** After `Format failed: Targeted backend store is not found`: the stores the sheep knows. */
async function listStores(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let stores: string[]
  try {
    stores = await getStoreList(dog.daemon(ctx))
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`Restore failed: ${failure.label}`)
    return EXIT_FAILURE
  }
  // the sheep's buffer as it comes: each name followed by a space
  ctx.printStdout(`Available stores:\n${'-'.repeat(39)}\n${stores.map((s) => `${s} `).join('')}\n`)
  return EXIT_SYSFAIL
}

async function formatCluster(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const strategyProblem = await checkVnodeStrategy(ctx, dog)
  if (strategyProblem !== undefined) return strategyProblem
  const copies = ctx.opts.redundancy?.copies ?? 0
  const { zoneCount } = dog.nodeList(ctx)
  if (copies > zoneCount) {
    const prompt = `Number of copies (${copies}) is larger than number of zones (${zoneCount}).\n` + 'Are you sure you want to continue? [yes/no]: '
    if (!(await confirm(prompt, ctx.io))) return EXIT_SUCCESS
  }
  const conn = dog.daemon(ctx)
  let inUse: Buffer
  try {
    inUse = await readVdis(conn)
  } catch (error) {
    const failure = asSdError(error)
    ctx.printStderrLine(failure.isTransport ? failure.message : failure.label)
    return failure.isTransport ? EXIT_SYSFAIL : EXIT_FAILURE
  }
  if (inUse.some((byte) => byte !== 0) && !ctx.opts.force && !(await confirm(NOT_EMPTY_PROMPT, ctx.io))) return EXIT_SUCCESS

  const store = (ctx.opts.store ?? DEFAULT_STORE).slice(0, STORE_NAME_MAX_LENGTH)
  ctx.printStdout(`using backend ${store} store\n`)
  try {
    await makeFs(conn, {
      ctime: clusterCtimeNow(),
      copies,
      copyPolicy: ctx.opts.redundancy?.copyPolicy ?? 0,
      flags: formatFlags(ctx),
      blockSizeShift: ctx.opts.blockSizeShift ?? 0,
      store,
    })
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`Format failed: ${failure.label}`)
    return failure.code === SD_RES_NO_STORE ? listStores(ctx, dog) : EXIT_SYSFAIL
  }
  return EXIT_SUCCESS
}

// ---- cluster shutdown --------------------------------------------------------------------------

async function shutDownCluster(ctx: DogContext, dog: DogRuntime): Promise<number> {
  if (await lightRequest(ctx, () => shutdownCluster(dog.daemon(ctx)))) return EXIT_SUCCESS
  ctx.printStderrLine('failed to execute request')
  return EXIT_FAILURE
}

// ---- cluster recover ---------------------------------------------------------------------------

const FORCE_RECOVER_PROMPT =
  'Caution! Please try starting all the cluster nodes normally before\n' +
  'running this command.\n\n' +
  'The cluster may need to be force recovered if:\n' +
  '  - the master node fails to start because of epoch mismatch; or\n' +
  '  - some nodes fail to start after a cluster shutdown.\n\n' +
  'Are you sure you want to continue? [yes/no]: '

/** `recover force`: start a cluster that waits for nodes with the members it has (behaviour §7.6). */
async function forceRecoverCluster(ctx: DogContext, dog: DogRuntime): Promise<number> {
  if (!ctx.opts.force && !(await confirm(FORCE_RECOVER_PROMPT, ctx.io))) return EXIT_SUCCESS
  try {
    await forceRecover(dog.daemon(ctx))
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`failed to execute request, ${failure.label}`)
    return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}

/** `recover enable` / `recover disable`: the request, then `Cluster recovery: <word>` on stdout. */
function switchRecovery(request: typeof enableRecover, word: string) {
  return async (ctx: DogContext, dog: DogRuntime): Promise<number> => {
    if (!(await lightRequest(ctx, () => request(dog.daemon(ctx))))) return EXIT_FAILURE
    ctx.printStdout(`Cluster recovery: ${word}\n`)
    return EXIT_SUCCESS
  }
}

// ---- cluster reweight --------------------------------------------------------------------------

async function reweightCluster(ctx: DogContext, dog: DogRuntime): Promise<number> {
  return (await lightRequest(ctx, () => reweight(dog.daemon(ctx)))) ? EXIT_SUCCESS : EXIT_FAILURE
}

// ---- cluster alter-copy ------------------------------------------------------------------------

const ALTER_CLUSTER_COPY_PROMPT =
  '    __\n' +
  "   ()'`;\n" +
  "   /\\|`  Caution! Changing cluster's redundancy level will affect\n" +
  '  /  |   all the VDIs to be created later.\n' +
  '(/_)_|_  Are you sure you want to continue? [yes/no]: '

/** `alter-copy -c N`: the cluster's default number of copies for VDIs created later (replication only). */
async function changeClusterCopies(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const copies = await requestedCopies(ctx, dog, 'cluster')
  if (copies === undefined) return EXIT_SUCCESS
  const conn = dog.daemon(ctx)
  let answer: Awaited<ReturnType<typeof statCluster>>
  try {
    answer = await statCluster(conn, 0, 1)
  } catch (error) {
    ctx.printStderrLine(asSdError(error).message)
    return EXIT_FAILURE
  }
  const latest = answer.logs[0]
  if (answer.result !== SD_RES_SUCCESS || latest === undefined) {
    ctx.printStderrLine(`Response's result: ${resultLabel(answer.result)}`)
    return EXIT_FAILURE
  }
  if (latest.copyPolicy !== 0) {
    ctx.printStderrLine("The cluster's copy policy is erasure code, changing it is not supported yet.")
    return EXIT_FAILURE
  }
  const oldCopies = latest.nrCopies
  if (oldCopies === copies) {
    ctx.printStderrLine(`The cluster's redundancy level is already set to ${copies}, nothing changed.`)
    return EXIT_FAILURE
  }
  if (!ctx.opts.force && !(await confirm(ALTER_CLUSTER_COPY_PROMPT, ctx.io))) return EXIT_SUCCESS
  if (!(await lightRequest(ctx, () => alterClusterCopy(conn, copies)))) {
    ctx.printStderrLine("Changing the cluster's redundancy level failure.")
    return EXIT_FAILURE
  }
  ctx.printStderrLine(`The cluster's redundancy level is set to ${copies}, the old one was ${oldCopies}.`)
  return EXIT_SUCCESS
}

// ---- the table ---------------------------------------------------------------------------------

/** The cluster group's option letters (the original's cluster option table); the global ones come first. */
export const CLUSTER_OPTIONS: readonly DogOptionSpec[] = [
  {
    letter: 'b',
    longName: 'store',
    takesArgument: true,
    description: 'specify backend store',
    apply: (opts, argument) => {
      opts.store = argument
      return undefined
    },
  },
  { letter: 'c', longName: 'copies', takesArgument: true, description: 'specify the default data redundancy (number of copies)', apply: applyRedundancy },
  { letter: 'f', longName: 'force', takesArgument: false, description: 'do not prompt for confirmation', apply: setFlag('force') },
  {
    letter: 'F',
    longName: 'avoid-diskfull',
    takesArgument: false,
    description: 'skip recovery if recovery process can cause disk full',
    apply: setFlag('avoidDiskfull'),
  },
  { letter: 'l', longName: 'lock', takesArgument: false, description: 'Lock vdi to exclude multiple users', apply: setFlag('lock') },
  {
    // The original also turned on -t here (a missing break); -m means multithread only.
    letter: 'm',
    longName: 'multithread',
    takesArgument: false,
    description: "use multi-thread for 'cluster snapshot save'",
    apply: setFlag('multithread'),
  },
  { letter: 'R', longName: 'recyclevid', takesArgument: false, description: 'enable recycling of VID', apply: setFlag('recycleVid') },
  {
    letter: 't',
    longName: 'strict',
    takesArgument: false,
    description: 'do not serve write request if number of nodes is not sufficient',
    apply: setFlag('strict'),
  },
  {
    letter: 'z',
    longName: 'block_size_shift',
    takesArgument: true,
    description: 'specify the shift num of default data object size',
    apply: applyBlockSizeShift,
  },
  { letter: 'V', longName: 'fixedvnodes', takesArgument: false, description: 'disable automatic vnodes calculation', apply: setFlag('fixedVnodes') },
  {
    letter: 'd',
    longName: 'diff',
    takesArgument: false,
    description: 'just output the changes between the two adjacent epoches for cluster info',
    apply: setFlag('diff'),
  },
]

/** The cluster subcommands in the original's order (spec §3.1); `unsupported` runs those of later issues. */
export function clusterCommand(dog: DogRuntime): DogCommand {
  const run = (handler: (ctx: DogContext, dog: DogRuntime) => Promise<number>) => (ctx: DogContext) => handler(ctx, dog)
  const snapshotSubcommands: DogSubcommand[] = [
    {
      name: 'save',
      args: '<tag> <path> [vdi1] [vdi2] ...',
      description: 'save snapshot to localpath',
      needsNodeList: true,
      minArgs: 1,
      handler: run(saveClusterSnapshot),
    },
    { name: 'list', args: '<path>', description: 'list snapshot of localpath', minArgs: 1, handler: listClusterSnapshots },
    {
      name: 'load',
      args: '<tag|idx> <path> [vdi1] [vdi2] ...',
      description: 'load snapshot from localpath',
      needsNodeList: true,
      minArgs: 1,
      handler: run((ctx) => loadClusterSnapshot(ctx, dog, (formatCtx) => formatCluster(formatCtx, dog))),
    },
    {
      name: 'show',
      args: '<tag|idx> <path> [vdi1] [vdi2] ...',
      description: 'show vdi list from snapshot',
      needsNodeList: true,
      minArgs: 1,
      handler: showClusterSnapshot,
    },
  ]
  const recoverSubcommands: DogSubcommand[] = [
    { name: 'force', description: 'force recover cluster immediately', handler: run(forceRecoverCluster) },
    { name: 'enable', description: 'enable automatic recovery and run once recover if necessary', handler: run(switchRecovery(enableRecover, 'enable')) },
    { name: 'disable', description: 'disable automatic recovery', handler: run(switchRecovery(disableRecover, 'disable')) },
  ]
  return {
    name: 'cluster',
    optionTable: CLUSTER_OPTIONS,
    subcommands: [
      { name: 'info', options: 'aprhvTd', description: 'show cluster information', needsNodeList: true, handler: run(showClusterInfo) },
      { name: 'format', options: 'bcltaphzTVRfF', description: 'create a Sheepdog store', needsNodeList: true, handler: run(formatCluster) },
      { name: 'shutdown', options: 'aphT', description: 'stop Sheepdog', handler: run(shutDownCluster) },
      {
        name: 'snapshot',
        movesData: true,
        args: '<tag|idx> <path> [vdi1] [vdi2] ...',
        options: 'aphTm',
        description: 'snapshot/restore the cluster',
        subcommands: snapshotSubcommands,
      },
      { name: 'recover', options: 'afphT', description: "See 'dog cluster recover' for more information", subcommands: recoverSubcommands },
      { name: 'reweight', options: 'aphT', description: 'reweight the cluster', handler: run(reweightCluster) },
      { name: 'check', options: 'aphT', description: 'check and repair cluster', needsNodeList: true, handler: run(checkCluster) },
      { name: 'alter-copy', options: 'aphTcf', description: "set the cluster's redundancy level", needsNodeList: true, handler: run(changeClusterCopies) },
      {
        name: 'scrub',
        args: '[start|stop|status]',
        options: 'aprhT',
        description: 'verify and repair every object of the cluster in the background (our own)',
        subcommands: clusterScrubSubcommands(dog),
        defaultSubcommand: 'status',
      },
    ],
  }
}
