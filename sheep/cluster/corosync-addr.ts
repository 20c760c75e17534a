// The address a corosync member advertises when -y is not given: this host's corosync ring
// address, as the original's corosync_get_local_addr gives it (behaviour.md §11.2). The
// binding has no libcfg, so it is read from the running corosync's configuration map with
// corosync's own tool: this node's position in the node list, then that node's ring0_addr.
import { execFileSync } from 'node:child_process'
import net from 'node:net'

/** corosync's configuration-map tool (Debian package corosync). */
export const CMAPCTL_BIN = 'corosync-cmapctl'
/** How long one look-up may take (it asks the local corosync over its IPC). */
const CMAPCTL_TIMEOUT_MS = 5_000

/** `KEY (TYPE) = VALUE` → VALUE, or undefined when the key is missing or corosync is not reachable. */
function cmapValue(key: string): string | undefined {
  try {
    const out = execFileSync(CMAPCTL_BIN, ['-g', key], { encoding: 'utf8', timeout: CMAPCTL_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'ignore'] })
    const at = out.indexOf(' = ')
    return at < 0 ? undefined : out.slice(at + 3).trim()
  } catch {
    return undefined
  }
}

/** This host's ring address (an IP literal), or undefined when corosync cannot tell it. */
export function corosyncRingAddress(): string | undefined {
  const pos = cmapValue('nodelist.local_node_pos')
  if (pos === undefined || !/^\d+$/.test(pos)) return undefined
  const addr = cmapValue(`nodelist.node.${pos}.ring0_addr`)
  return addr !== undefined && net.isIP(addr) !== 0 ? addr : undefined
}
