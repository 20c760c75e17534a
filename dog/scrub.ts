// `dog node scrub {start,stop,status}` and `dog cluster scrub {start,stop,status}`: commands of
// our own (not in Sheepdog 1.x) for the scrubber of issue 16 (docs/integrity.md), through our
// own opcode SD_OP_SCRUB. `node` acts on the contacted sheep, `cluster` on every member; each
// answers its scrubber's status, printed as one row per node. A sheep without checksums (-C)
// or a gateway answers "Operation is not supported".
import { asSdError } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, EXIT_USAGE, type DogContext, type DogSubcommand } from './cli.js'
import type { DogRuntime } from './runtime.js'
import type { SheepConnection } from '../lib/client.js'
import { formatSize, sprintf } from '../lib/format.js'
import { type ScrubStatus, type SdNode, scrub } from '../lib/sheep-api.js'
import { SD_ADDR_LEN } from '../lib/addr.js'
import { SCRUB_ACTION_START, SCRUB_ACTION_STATUS, SCRUB_ACTION_STOP, addrFromText, nodeAddrText } from '../lib/structs.js'

/** The largest rate a start may ask for, in MiB/s. */
const SCRUB_MAX_RATE_MIB = 1 << 20

const STATUS_HEADER = '  Id   Host:Port          State     Progress        Read   Corrupt  Repaired  Checksummed  Unverified\n'

function stateText(st: ScrubStatus): string {
  if (st.running) return 'running'
  if (st.startedS === 0n) return 'idle'
  return st.objectsDone === st.objectsTotal ? 'done' : 'stopped'
}

function statusRow(ctx: DogContext, id: number, node: string, st: ScrubStatus): string {
  const total = Number(st.objectsTotal)
  const percent = total === 0 ? 100 : Math.floor((Number(st.objectsDone) * 100) / total)
  const progress = `${st.objectsDone}/${st.objectsTotal} ${percent}%`
  const read = formatSize(st.bytesDone, ctx.opts.raw)
  if (ctx.opts.raw) {
    // one word per column: id node state done total bytes corrupt repaired checksummed unverified
    const words = [id, node, stateText(st), st.objectsDone, st.objectsTotal, read, st.corrupt, st.repaired, st.established, st.unverified]
    return `${words.join(' ')}\n`
  }
  return sprintf(
    '%4d   %-18s %-9s %-13s %6s %9s %9s %12s %11s\n',
    id,
    node,
    stateText(st),
    progress,
    read,
    st.corrupt,
    st.repaired,
    st.established,
    st.unverified,
  )
}

/** The action a subcommand sends, and the rate argument of `start`. */
function actionOf(ctx: DogContext): { action: number; rateMiB: number } | undefined {
  const name = ctx.path.at(-1)?.name
  if (name === 'status') return { action: SCRUB_ACTION_STATUS, rateMiB: 0 }
  if (name === 'stop') return { action: SCRUB_ACTION_STOP, rateMiB: 0 }
  const text = ctx.args[0]
  if (text === undefined) return { action: SCRUB_ACTION_START, rateMiB: 0 }
  const rate = Number(text)
  if (!/^\d+$/.test(text) || rate < 1 || rate > SCRUB_MAX_RATE_MIB) return undefined
  return { action: SCRUB_ACTION_START, rateMiB: rate }
}

/** Sends the action to one node; its status, or the exit status after printing why it failed. */
async function ask(ctx: DogContext, conn: SheepConnection, node: string, what: { action: number; rateMiB: number }): Promise<ScrubStatus | number> {
  try {
    return await scrub(conn, what.action, what.rateMiB)
  } catch (error) {
    const failure = asSdError(error)
    if (failure.isTransport) {
      ctx.printStderrLine(failure.message)
      return EXIT_SYSFAIL
    }
    ctx.printStderrLine(`failed to scrub on ${node}: ${failure.label}`)
    return EXIT_FAILURE
  }
}

async function run(ctx: DogContext, targets: Array<{ id: number; node: string; conn: SheepConnection }>): Promise<number> {
  const what = actionOf(ctx)
  if (!what) {
    ctx.printStderrLine(`Invalid rate '${ctx.args[0]}': an integer number of MiB/s between 1 and ${SCRUB_MAX_RATE_MIB} is expected`)
    return EXIT_USAGE
  }
  const rows: string[] = []
  let status = EXIT_SUCCESS
  for (const t of targets) {
    const st = await ask(ctx, t.conn, t.node, what)
    if (typeof st === 'number') status = st
    else rows.push(statusRow(ctx, t.id, t.node, st))
  }
  if (rows.length > 0) ctx.printStdout((ctx.opts.raw ? '' : STATUS_HEADER) + rows.join(''))
  return status
}

function subcommands(targetsOf: (ctx: DogContext) => Array<{ id: number; node: string; conn: SheepConnection }>): DogSubcommand[] {
  const handler = (ctx: DogContext) => run(ctx, targetsOf(ctx))
  return [
    { name: 'start', args: '[MiB/s]', description: 'start scrubbing (at the given rate; default: the sheep --scrub rate)', needsNodeList: true, handler },
    { name: 'stop', description: 'stop scrubbing', needsNodeList: true, handler },
    { name: 'status', description: 'show scrubbing progress and findings (default)', needsNodeList: true, handler },
  ]
}

function rowOf(id: number, node: SdNode, dog: DogRuntime): { id: number; node: string; conn: SheepConnection } {
  return { id, node: nodeAddrText(node), conn: dog.connectionTo(node) }
}

/** `dog node scrub …`: the contacted sheep (its row id is its place in the node list). */
export function nodeScrubSubcommands(dog: DogRuntime): DogSubcommand[] {
  return subcommands((ctx) => {
    const self = { addr: addrFromText(ctx.opts.address) ?? Buffer.alloc(SD_ADDR_LEN), port: ctx.opts.port }
    const id = dog.nodeList(ctx).nodes.findIndex((n) => n.port === self.port && n.addr.equals(self.addr))
    return [{ id: Math.max(id, 0), node: nodeAddrText(self), conn: dog.daemon(ctx) }]
  })
}

/** `dog cluster scrub …`: every member, in node-list order. */
export function clusterScrubSubcommands(dog: DogRuntime): DogSubcommand[] {
  return subcommands((ctx) => dog.nodeList(ctx).nodes.map((node, id) => rowOf(id, node, dog)))
}
