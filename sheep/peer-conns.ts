// Connections from this sheep to the other sheep, for everything it asks of them (replica I/O,
// recovery, object lists, epoch logs, VDI state): the original's sockfd cache
// (lib/sockfd_cache.c). A few pooled connections per node, named by the node's main address.
// A node that announces an I/O NIC (io_port ≠ 0, `sheep -i`) is reached on its I/O address
// while that answers. When a connection to the I/O address cannot be made, the node's channel
// falls back to the main address ("fallback to non-io connection" in the log) and the request
// goes there; a monitor tries the I/O address every IO_MONITOR_INTERVAL_MS and switches back
// once it can connect, as the original's connectivity monitor does. A request that failed
// after it was sent is not sent again here: its caller gets the network error (the original's
// sockfd_cache_del) and retries, and that retry connects afresh.
// One addition: the monitor also tries the I/O address of nodes still using it. Connections
// already open to an address that went away do not fail, they stall until their requests time
// out (35 s, longer than a client waits); a failed try falls back at once and closes them, so
// their requests fail within one interval and are retried on the main address.
import net from 'node:net'
import { CLIENT_CONNECT_TIMEOUT_MS, ConnectionPool, type Reply, type RequestOptions, type SheepAddress, addressText, describeErrno } from '../lib/client.js'
import { SdConnectError } from '../lib/errors.js'
import type { Layout } from '../lib/layout.js'
import type { Logger } from '../lib/log.js'
import { type NodeId, addrToText, nodeDescription } from '../lib/structs.js'

/** How often each node's I/O address is tried (the original's MONITOR_INTERVAL). */
export const IO_MONITOR_INTERVAL_MS = 5_000
/** How long one try of the I/O address may take to connect (as long as any peer connect). */
export const IO_PROBE_TIMEOUT_MS = CLIENT_CONNECT_TIMEOUT_MS
/** Pooled connections per node and channel. */
export const PEER_CONNECTIONS_PER_NODE = 2

/** Which address of a node with an I/O NIC its requests go to (the original's channel_status). */
type Channel = 'io' | 'main'

interface Entry {
  node: NodeId
  io: { host: string; port: number }
  channel: Channel
  /** A try of the I/O address is under way. */
  probing: boolean
}

/** Requests to one node over the channel in use when each is sent. */
export interface PeerChannel {
  request<L extends Layout>(opts: RequestOptions<L>): Promise<Reply>
}

export interface PeerConnectionsOptions {
  perNode?: number
  monitorIntervalMs?: number
  probeTimeoutMs?: number
}

export function mainAddressOf(node: NodeId): { host: string; port: number } {
  return { host: addrToText(node.addr), port: node.port }
}

/** The I/O address a node announces, or undefined when it has none (io_port 0). */
export function ioAddressOf(node: NodeId): { host: string; port: number } | undefined {
  return node.ioPort === 0 ? undefined : { host: addrToText(node.ioAddr), port: node.ioPort }
}

export class PeerConnections {
  private readonly pool: ConnectionPool
  /** Nodes with an I/O NIC, by main address. */
  private readonly entries = new Map<string, Entry>()
  private readonly monitorIntervalMs: number
  private readonly probeTimeoutMs: number
  /** Tries the I/O address of every entry each interval; started with the first entry. */
  private monitor: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    private readonly log: Logger,
    opts: PeerConnectionsOptions = {},
  ) {
    this.pool = new ConnectionPool(opts.perNode ?? PEER_CONNECTIONS_PER_NODE)
    this.monitorIntervalMs = opts.monitorIntervalMs ?? IO_MONITOR_INTERVAL_MS
    this.probeTimeoutMs = opts.probeTimeoutMs ?? IO_PROBE_TIMEOUT_MS
  }

  /** The connections to `node` (its node_id: main and I/O address). */
  get(node: NodeId): PeerChannel {
    return { request: (opts) => this.request(node, opts) }
  }

  /** Where requests to `node` go now: its I/O address while that channel is up, else its main one. */
  addressFor(node: NodeId): SheepAddress {
    const entry = this.entryOf(node)
    return entry?.channel === 'io' ? entry.io : mainAddressOf(node)
  }

  /** Forgets a node (it left the cluster): its connections are closed and its monitor stops. */
  drop(node: NodeId): void {
    const key = addressText(mainAddressOf(node))
    const entry = this.entries.get(key)
    if (entry) {
      this.pool.drop(entry.io)
      this.entries.delete(key)
    }
    this.pool.drop(mainAddressOf(node))
  }

  closeAll(): void {
    this.closed = true
    clearInterval(this.monitor)
    this.monitor = undefined
    this.entries.clear()
    this.pool.closeAll()
  }

  private async request<L extends Layout>(node: NodeId, opts: RequestOptions<L>): Promise<Reply> {
    const entry = this.entryOf(node)
    if (entry?.channel === 'io') {
      try {
        return await this.pool.get(entry.io).request(opts)
      } catch (e) {
        if (!(e instanceof SdConnectError)) throw e
        // never sent: it goes to the main address instead, as the original's prepare_conns does
        this.fallBack(node, entry, e.message)
      }
    }
    return this.pool.get(mainAddressOf(node)).request(opts)
  }

  /** The entry of a node with an I/O NIC (made on first use, renewed when its I/O address changed). */
  private entryOf(node: NodeId): Entry | undefined {
    const io = ioAddressOf(node)
    if (!io) return undefined
    const key = addressText(mainAddressOf(node))
    const known = this.entries.get(key)
    if (known && addressText(known.io) === addressText(io)) return known
    // the node came back with another I/O address (a restart with another -i)
    if (known) this.pool.drop(known.io)
    const entry: Entry = { node, io, channel: 'io', probing: false }
    this.entries.set(key, entry)
    if (!this.monitor && !this.closed) {
      this.monitor = setInterval(() => this.monitorAll(), this.monitorIntervalMs)
      this.monitor.unref()
    }
    return entry
  }

  private fallBack(node: NodeId, entry: Entry, reason: string): void {
    if (entry.channel !== 'io' || this.closed) return
    entry.channel = 'main'
    this.log.error(`fallback to non-io connection: ${nodeDescription(node)}, I/O address ${addressText(entry.io)}: ${reason}`)
  }

  private monitorAll(): void {
    for (const entry of this.entries.values()) void this.probe(entry)
  }

  /**
   * One try of a node's I/O address: a fallen-back node goes back to it when it answers; a node
   * using it falls back when it does not, and the connections open to it are closed (requests
   * on them fail now rather than stall: their callers retry, on the main address).
   */
  private async probe(entry: Entry): Promise<void> {
    if (entry.probing) return
    entry.probing = true
    const failure = await connectFailure(entry.io, this.probeTimeoutMs)
    entry.probing = false
    // dropped or renewed meanwhile: that entry is no longer ours to switch
    if (this.closed || this.entries.get(addressText(mainAddressOf(entry.node))) !== entry) return
    if (failure !== undefined && entry.channel === 'io') {
      this.fallBack(entry.node, entry, failure)
      this.pool.drop(entry.io)
    } else if (failure === undefined && entry.channel === 'main') {
      entry.channel = 'io'
      this.log.info(`I/O channel of ${nodeDescription(entry.node)} is back: ${addressText(entry.io)}`)
    }
  }
}

/** Why a TCP connection to `address` cannot be made within `timeoutMs`; undefined when it can (it is closed right away). */
function connectFailure(address: { host: string; port: number }, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.createConnection({ host: address.host, port: address.port })
    let settled = false
    const done = (failure: string | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(failure)
    }
    // timers run before I/O events in a turn of the loop: after a stall of this process, a
    // connection made in time is seen first, so a busy sheep does not take itself for cut off
    const timer = setTimeout(() => setImmediate(() => done('Connection timed out')), timeoutMs)
    socket.once('connect', () => done(undefined))
    socket.once('error', (err: NodeJS.ErrnoException) => done(describeErrno(err)))
  })
}
