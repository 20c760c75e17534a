// dog as a library: a DogSession owns what one run of dog opens — connections to the sheep of
// -a/-p (one pipelined socket, and several for bulk data), to other members, and the node list
// loaded for subcommands marked needsNodeList — and closes the connections in close(). The
// command table is built against a session's DogRuntime. dog's process entry (main.ts) and
// sheepfs's status files each open a session, run commands through runDog, and close it; the
// group files import only the DogRuntime type from here.
import { EXIT_FAILURE, EXIT_SYSFAIL, type DogCommand, type DogContext, type DogHandler } from './cli.js'
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

/** One run of dog (or of many commands, for sheepfs): its command table and what it opened. */
export interface DogSession {
  runtime: DogRuntime
  /** The commands in `dog --help` order, bound to this session. */
  commands: readonly DogCommand[]
  /** RunDogOptions.loadNodeList for this session. */
  loadNodeList(ctx: DogContext): Promise<number | undefined>
  /** Closes every connection the session opened; it can be used again afterwards (they reopen). */
  close(): void
}

const NODE_LIST_STATE_KEY = 'nodeList'

/** Sockets of a bulk connection: one per object request vdi read/write keeps in flight. */
const BULK_SOCKETS = VDI_IO_DEFAULT_CONCURRENCY

export function openDogSession(): DogSession {
  /** Every connection opened in this session, by address text. */
  const openConnections = new Map<string, SheepConnection>()
  const connectionFor = (address: SheepAddress, bulk = false): SheepConnection => {
    const key = `${bulk ? 'bulk ' : ''}${addressText(address)}`
    let conn = openConnections.get(key)
    if (conn === undefined) {
      conn = bulk ? new PooledConnection(address, BULK_SOCKETS) : new SheepConnection(address)
      openConnections.set(key, conn)
    }
    return conn
  }
  const runtime: DogRuntime = {
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
  return {
    runtime,
    commands: [vdiCommand(runtime), nodeCommand(runtime), clusterCommand(runtime)],
    loadNodeList: (ctx) => loadNodeList(runtime, ctx),
    close: () => {
      for (const conn of openConnections.values()) conn.close()
      openConnections.clear()
    },
  }
}

/**
 * RunDogOptions.loadNodeList: GET_NODE_LIST plus the one-entry STAT_CLUSTER probe for the
 * cluster flags. Prints the original's lines and answers its exit status on failure.
 */
async function loadNodeList(runtime: DogRuntime, ctx: DogContext): Promise<number | undefined> {
  if (ctx.state[NODE_LIST_STATE_KEY] !== undefined) return undefined
  const conn = runtime.daemon(ctx)
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
