// The interface between sheep and a cluster driver (behaviour.md §8, §11): join with an opaque
// payload, leave notifications, and totally ordered broadcasts, including "exclusive" work that
// runs on one node at a time cluster-wide (the original's block/unblock). Every member sees
// accepted/left/notified events in the same order; the rest of sheep cannot tell drivers apart.
import type { SdNode } from '../../lib/structs.js'

export interface ClusterHandlers {
  /**
   * Runs on the member that decides joins (the first node accepts itself): looks at the
   * joiner's payload and returns the payload every member receives with the accept.
   */
  decideJoin(joiner: SdNode, joinPayload: Buffer): Buffer
  /**
   * Optional, on the same member before `decideJoin`: why the joiner must be refused (it
   * belongs to another cluster, its epoch is newer than the running cluster's …), or
   * undefined. A refused joiner's `join` fails with that reason; the members see nothing.
   */
  checkJoin?(joiner: SdNode, joinPayload: Buffer): string | undefined
  /**
   * Optional, on the deciding member: whether events delivered earlier are still being applied
   * here (a format purging the store, and what came after it). A join decided meanwhile would carry the
   * state from before it, and the joiner, not yet a member when the operation's result went by,
   * would never apply it: every driver answers it later instead.
   */
  busy?(): boolean
  /**
   * Optional, on the joiner when its accept comes, for drivers that let every member accept
   * (corosync, as the original): why this node must not join the cluster the accept describes.
   * The joiner then leaves at once and its `join` fails with that reason; the members saw it
   * join and see it leave.
   */
  checkAccept?(acceptPayload: Buffer): string | undefined
  /** Every member, the joiner included, in total order. `members` includes the joiner. */
  accepted(joiner: SdNode, members: SdNode[], acceptPayload: Buffer): void
  left(node: SdNode, members: SdNode[]): void
  notified(sender: SdNode, message: Buffer): void
  /**
   * Optional: a member's sd_node changed (its space or vnode count), for drivers with
   * `updateNode`; every member, in total order.
   */
  nodeUpdated?(node: SdNode): void
  /**
   * Optional: the driver lost this node's membership (its ZooKeeper session expired) and joins
   * again as a new member. Sheep stops acting as a member (status WAIT, no members) until its
   * accept and returns the payload to join with.
   */
  rejoining?(): Buffer
}

export interface ClusterDriver {
  readonly name: string
  /** Joins the cluster; resolves once this node's accept has been delivered, fails if the join is refused. */
  join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void>
  /** Broadcasts `message` to every member (the sender included), in total order. */
  notify(message: Buffer): Promise<void>
  /**
   * Runs `work` while holding the cluster-wide block, then broadcasts its result as a notify
   * before the block is released; resolves after this node has processed that notify.
   */
  exclusive(work: () => Promise<Buffer>): Promise<void>
  /**
   * Optional: announces this node's new sd_node (the original's update_node: corosync's
   * UPDATE_NODE); resolves once this node has applied it. Drivers without it carry weights in
   * sheep's own notifies.
   */
  updateNode?(node: SdNode): Promise<void>
  leave(): Promise<void>
}

export interface DriverSpec {
  name: string
  option: string
}

/** `-c NAME[:OPTION]`: the driver name is matched up to the first colon (cli-and-formats.md §1.2). */
export function parseDriverSpec(text: string): DriverSpec {
  const colon = text.indexOf(':')
  return colon < 0 ? { name: text, option: '' } : { name: text.slice(0, colon), option: text.slice(colon + 1) }
}
