// The table of cluster drivers `-c NAME[:OPTION]` can choose: how each checks its option, which
// address a node advertises when -y is not given, and how the driver is made.
import type { Logger } from '../../lib/log.js'
import { CorosyncDriver } from './corosync.js'
import { corosyncRingAddress } from './corosync-addr.js'
import { loadCpgAddon } from './cpg.js'
import type { ClusterDriver } from './driver.js'
import { LocalDriver } from './local.js'
import { ZookeeperDriver, defaultNodeAddress, parseZookeeperOption } from './zookeeper.js'

/** The local driver's shared event file when `-c local` names none. */
export const LOCAL_DEFAULT_EVENT_FILE = '/tmp/sheepdog_shm'

export interface ClusterDriverKind {
  /** The reason the option text is invalid, or undefined. */
  check(option: string): string | undefined
  /** The address this node advertises when -y is not given. */
  defaultAddress(bindAddr: string | undefined): string
  create(option: string, log: Logger): ClusterDriver
}

export const CLUSTER_DRIVERS: Readonly<Record<string, ClusterDriverKind>> = {
  local: {
    check: () => undefined,
    // every member runs on this machine
    defaultAddress: () => '127.0.0.1',
    create: (option) => new LocalDriver(option || LOCAL_DEFAULT_EVENT_FILE),
  },
  zookeeper: {
    check: (option) => {
      const config = parseZookeeperOption(option)
      return typeof config === 'string' ? config : undefined
    },
    // the members are on different machines: the bind address, else this host's first IPv4
    defaultAddress: (bindAddr) => defaultNodeAddress(bindAddr) ?? '127.0.0.1',
    create: (option, log) => {
      const config = parseZookeeperOption(option)
      if (typeof config === 'string') throw new Error(config)
      return new ZookeeperDriver({ ...config, log })
    },
  },
  corosync: {
    // the original takes no option and ignores one
    check: () => undefined,
    // this host's corosync ring address, as the original; else as zookeeper's
    defaultAddress: (bindAddr) => corosyncRingAddress() ?? defaultNodeAddress(bindAddr) ?? '127.0.0.1',
    create: (_option, log) => {
      // no binding: fail at start, before anything is listened on, saying what to install
      const addon = loadCpgAddon()
      if (addon instanceof Error) throw addon
      return new CorosyncDriver({ log })
    },
  },
}

export const CLUSTER_DRIVER_NAMES = Object.keys(CLUSTER_DRIVERS)

/**
 * The driver of a sheep started without -c: corosync where its binding is built, as the
 * original's default is corosync where it was compiled with it (sheep/cluster.h), else local.
 * Without a running corosync such a sheep fails at start and says so.
 */
export function defaultClusterDriver(): string {
  return loadCpgAddon() instanceof Error ? 'local' : 'corosync'
}
