// dog's entry point: the command table assembled from the group files (vdi, node, cluster), the
// run-time services the handlers share (connections to sheep, the node list loaded for subcommands
// marked needsNodeList), and runDog with the real process I/O. The group files get the services
// as a DogRuntime and import only its type from here, so no module imports this one at run time.
import { EXIT_FAILURE, EXIT_SYSFAIL, runDog, type DogCommand, type DogContext, type DogHandler } from './cli.js'
import { PooledConnection, addressText, SheepConnection, type SheepAddress } from '../lib/client.js'
import { VDI_IO_DEFAULT_CONCURRENCY } from '../lib/vdi-io.js'
import { SdError } from '../lib/errors.js'
import { getNodeList, statClusterProbe, type SdNode } from '../lib/sheep-api.js'
import { addrToText } from '../lib/structs.js'
import { clusterCommand } from './cluster.js'
import { nodeCommand } from './node.js'
import { vdiCommand } from './vdi.js'

/** The members as GET_NODE_LIST answered, with what the STAT_CLUSTER probe told (spec §3). */
export interface DogNodeList {
  /** Sorted by address and port, as the sheep sends them; `node list` ids are indexes here. */
  nodes: SdNode[]
  /** The answering sheep's epoch (the number of epoch-log entries `cluster info` asks for). */
  epoch: number
  /** Distinct zones among the nodes. */
  zoneCount: number
  /** Cluster flags of the latest epoch (SD_CLUSTER_FLAG_*), 0 before the cluster is formatted. */
  clusterFlags: number
}

/** What handlers need besides their context: connections and the node list. */
export interface DogRuntime {
  /** The sheep named by -a/-p (one pipelined connection per run). */
  daemon(ctx: DogContext): SheepConnection
  /** The same sheep through several sockets, for bulk data (vdi read/write). */
  bulkDaemon(ctx: DogContext): SheepConnection
  /** A connection to one member of the node list. */
  connectionTo(node: { addr: Buffer; port: number }): SheepConnection
  /** The node list; only for subcommands marked needsNodeList (it is loaded before they run). */
  nodeList(ctx: DogContext): DogNodeList
  /** The handler of subcommands that are in the tables but not implemented yet. */
  unsupported: DogHandler
}

const NODE_LIST_STATE_KEY = 'nodeList'

/** Every connection opened during this run, by address text; closed when dog ends. */
const openConnections = new Map<string, SheepConnection>()

/** Sockets of a bulk connection: one per object request vdi read/write keeps in flight. */
const BULK_SOCKETS = VDI_IO_DEFAULT_CONCURRENCY

function connectionFor(address: SheepAddress, bulk = false): SheepConnection {
  const key = `${bulk ? 'bulk ' : ''}${addressText(address)}`
  let conn = openConnections.get(key)
  if (conn === undefined) {
    conn = bulk ? new PooledConnection(address, BULK_SOCKETS) : new SheepConnection(address)
    openConnections.set(key, conn)
  }
  return conn
}

function closeConnections(): void {
  for (const conn of openConnections.values()) conn.close()
  openConnections.clear()
}

export const DOG_RUNTIME: DogRuntime = {
  daemon: (ctx) => connectionFor({ host: ctx.opts.address, port: ctx.opts.port }),
  bulkDaemon: (ctx) => connectionFor({ host: ctx.opts.address, port: ctx.opts.port }, true),
  connectionTo: (node) => connectionFor({ host: addrToText(node.addr), port: node.port }),
  nodeList: (ctx) => {
    const list = ctx.state[NODE_LIST_STATE_KEY] as DogNodeList | undefined
    if (list === undefined) throw new Error(`dog ${ctx.command.name} ${ctx.path[0]?.name}: node list used but not loaded`)
    return list
  },
  unsupported: async (ctx) => {
    ctx.printStderrLine(`${ctx.command.name} ${ctx.path.map((level) => level.name).join(' ')} is not supported yet`)
    return EXIT_FAILURE
  },
}

/** The commands in `dog --help` order. */
export const DOG_COMMANDS: readonly DogCommand[] = [vdiCommand(DOG_RUNTIME), nodeCommand(DOG_RUNTIME), clusterCommand(DOG_RUNTIME)]

/**
 * RunDogOptions.loadNodeList: GET_NODE_LIST plus the one-entry STAT_CLUSTER probe for the
 * cluster flags. Prints the original's lines and answers its exit status on failure.
 */
export async function loadNodeList(ctx: DogContext): Promise<number | undefined> {
  if (ctx.state[NODE_LIST_STATE_KEY] !== undefined) return undefined
  const conn = DOG_RUNTIME.daemon(ctx)
  let list: DogNodeList
  try {
    const { nodes, epoch } = await getNodeList(conn)
    if (nodes.length === 0) {
      ctx.printStderrLine('There are no active sheep daemons')
      return EXIT_FAILURE
    }
    const probe = await statClusterProbe(conn)
    list = { nodes, epoch, zoneCount: new Set(nodes.map((node) => node.zone)).size, clusterFlags: probe?.flags ?? 0 }
  } catch (error) {
    if (!(error instanceof SdError)) throw error
    ctx.printStderrLine(error.isTransport ? error.message : `Failed to update node list: ${error.label}`)
    ctx.printStderrLine('Failed to get node list')
    return EXIT_SYSFAIL
  }
  ctx.state[NODE_LIST_STATE_KEY] = list
  return undefined
}

/** Resolves once everything written so far to `stream` has been handed to the system. */
function flushed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.write('', () => resolve())) stream.once('drain', () => resolve())
  })
}

/** Runs dog with the process's arguments, streams and environment, then exits with its status. */
export async function main(argv: readonly string[]): Promise<void> {
  // a reader that went away (`dog vdi read … | head`) ends dog, as SIGPIPE ends the original
  process.stdout.on('error', () => process.exit(EXIT_SYSFAIL))
  let status: number
  try {
    status = await runDog(
      argv,
      DOG_COMMANDS,
      {
        stdout: process.stdout,
        stderr: process.stderr,
        env: process.env,
        stdin: process.stdin,
        argv0: 'dog',
        stdoutIsTty: process.stdout.isTTY === true,
        columns: process.stdout.columns || undefined,
      },
      { loadNodeList },
    )
  } catch (error) {
    // a failure no handler expected: report it the way the original's crash handler does
    const reason = error instanceof Error ? error.message : String(error)
    process.stderr.write(error instanceof SdError && error.isTransport ? `${reason}\n` : `dog exits unexpectedly (${reason}).\n`)
    status = EXIT_SYSFAIL
  }
  closeConnections()
  await flushed(process.stdout)
  await flushed(process.stderr)
  process.exit(status)
}
