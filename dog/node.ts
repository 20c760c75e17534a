// `dog node`: the subcommand table with its usage texts, and the handlers of list, info, kill and
// log level set/get/list (cli-and-formats §5.1–5.3, §5.7). The other subcommands are in the
// table but not implemented yet.
import {
  DogExit, EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE, UsageError, type DogCommand, type DogContext,
  type DogSubcommand,
} from './cli.js'
import type { DogRuntime } from './main.js'
import { SdError } from '../lib/errors.js'
import { formatSize, sprintf } from '../lib/format.js'
import { isSnapshot } from '../lib/inode.js'
import { getLogLevel, killNode, setLogLevel, statSheep, type SdNode } from '../lib/sheep-api.js'
import { nodeAddrText } from '../lib/structs.js'
import { forEachVdi } from './vdi.js'

/** Log level names by number (sheep's -l level=…), as `node log level` prints and accepts them. */
const LOG_LEVEL_NAMES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const

function asSdError(error: unknown): SdError {
  if (error instanceof SdError) return error
  throw error
}

/**
 * A request that answers nothing (the original's send_light_req): false after printing why —
 * the connect failure, or `Response's result: <label>`.
 */
export async function lightRequest(ctx: DogContext, request: () => Promise<unknown>): Promise<boolean> {
  try {
    await request()
    return true
  } catch (error) {
    const failure = asSdError(error)
    ctx.printStderrLine(failure.isTransport ? failure.message : `Response's result: ${failure.label}`)
    return false
  }
}

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
    const answered = await lightRequest(ctx, async () => { stat = await statSheep(dog.connectionTo(node)) })
    if (!answered || stat === undefined) continue
    const { storeSize, storeFree } = stat
    ctx.printStdout(sprintf(raw ? '%d %s %s %s %d%%\n' : '%2d\t%s\t%s\t%s\t%3d%%\n', shown,
      formatSize(storeSize, raw), formatSize(storeSize - storeFree, raw), formatSize(storeFree, raw), usePercent(storeSize, storeFree)))
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
  ctx.printStdout(sprintf(template, formatSize(totalSize, raw), formatSize(totalSize - totalFree, raw), formatSize(totalFree, raw),
    usePercent(totalSize, totalFree), formatSize(totalVdiSize, raw)))
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
  const conn = ctx.opts.local || idText === undefined
    ? dog.daemon(ctx)
    : dog.connectionTo(nodeById(ctx, dog.nodeList(ctx).nodes, idText))
  if (!(await lightRequest(ctx, () => killNode(conn)))) {
    ctx.printStderrLine('Failed to execute request')
    return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}

// ---- node log level ----------------------------------------------------------------------------

/** `<name>\t(<n>)` for every level, on stderr. */
function printLogLevels(ctx: DogContext): void {
  LOG_LEVEL_NAMES.forEach((name, level) => ctx.printStderrLine(`${name}\t(${level})`))
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
  return requestLogLevel(ctx, () => setLogLevel(dog.daemon(ctx), level))
}

async function getNodeLogLevel(ctx: DogContext, dog: DogRuntime): Promise<number> {
  let level = -1
  const status = await requestLogLevel(ctx, async () => { level = await getLogLevel(dog.daemon(ctx)) })
  if (status === EXIT_SUCCESS) ctx.printStderrLine(`${LOG_LEVEL_NAMES[level] ?? 'unknown'} (${level})`)
  return status
}

/** SET_LOGLEVEL / GET_LOGLEVEL: `Failed to execute request` on any failure. */
async function requestLogLevel(ctx: DogContext, request: () => Promise<void>): Promise<number> {
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

// ---- the table ---------------------------------------------------------------------------------

/** The node subcommands in the original's order (spec §3.1); `unsupported` runs those of later issues. */
export function nodeCommand(dog: DogRuntime): DogCommand {
  const run = (handler: (ctx: DogContext, dog: DogRuntime) => Promise<number>) => (ctx: DogContext) => handler(ctx, dog)
  const later = dog.unsupported
  const recoverySubcommands: DogSubcommand[] = [
    { name: 'info', description: 'show recovery information of nodes (default)', handler: later },
    { name: 'set-throttle', args: '<max> <interval>', description: 'set new throttling', needsNodeList: true, minArgs: 2, handler: later },
    { name: 'get-throttle', description: 'get current throttling', needsNodeList: true, handler: later },
  ]
  const mdSubcommands: DogSubcommand[] = [
    { name: 'info', description: 'show multi-disk information', needsNodeList: true, handler: later },
    { name: 'plug', args: '<path[,path...]>', description: 'plug more disk(s) into node', minArgs: 1, handler: later },
    { name: 'unplug', args: '<path[,path...]>', description: 'unplug disk(s) from node', minArgs: 1, handler: later },
  ]
  const logLevelSubcommands: DogSubcommand[] = [
    { name: 'set', args: '<log level>', description: 'set log level', minArgs: 1, handler: run(setNodeLogLevel) },
    { name: 'get', description: 'get log level', handler: run(getNodeLogLevel) },
    { name: 'list', description: 'list log level', handler: listLogLevels },
  ]
  const logSubcommands: DogSubcommand[] = [
    { name: 'level', description: 'manipulate log level', subcommands: logLevelSubcommands },
  ]
  const vnodesSubcommands: DogSubcommand[] = [
    { name: 'set', args: '<num of vnodes>', description: 'set new vnodes', minArgs: 1, handler: later },
  ]
  return {
    name: 'node',
    subcommands: [
      { name: 'kill', args: '<node id>', options: 'aprhlT', description: 'kill node', needsNodeList: true, handler: run(killNodeById) },
      { name: 'list', options: 'aprhT', description: 'list nodes', needsNodeList: true, handler: run(listNodes) },
      { name: 'info', options: 'aprhT', description: 'show information about each node', needsNodeList: true, handler: run(showNodeInfo) },
      {
        name: 'recovery', options: 'aphPrT', description: 'show recovery information or set/get recovery throttling',
        needsNodeList: true, subcommands: recoverySubcommands, defaultSubcommand: 'info',
      },
      { name: 'md', args: '[disks]', options: 'aprAfhT', description: "See 'dog node md' for more information", subcommands: mdSubcommands },
      { name: 'stat', options: 'aprwhT', description: 'show stat information about the node', handler: later },
      { name: 'log', options: 'aphT', description: 'show or set log level of the node', subcommands: logSubcommands },
      { name: 'vnodes', options: 'aph', description: 'set the number of vnodes of the node', subcommands: vnodesSubcommands },
      { name: 'format', args: '<sheep dir> <store name>', options: 'aphT', description: 'format a node with the store (plain or tree)', minArgs: 2, handler: later },
    ],
  }
}

