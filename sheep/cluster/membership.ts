// Membership as a pure state machine, shared by every cluster driver (behaviour.md §8, §11; the
// original keeps the same rules in sheep/group.c and each driver's event queue). A driver only
// moves events: it appends them to a totally ordered log (the local driver's event file,
// ZooKeeper's sequential znodes) and feeds every event, in log order, to `applyEvent`, which
// returns the member's next view and the effects to carry out (handler calls, settled waits).
// Every member that applies the same log holds the same state at the same point of it, so the
// decisions only one member takes — declaring a dead member gone, answering a join — are taken
// by the "master" (the first live member) from this state, and duplicates a dying and a new
// master may both write are ignored on apply.
//
// Liveness is the one thing a driver knows that the log does not (a pid that still runs, a
// ZooKeeper session that still lives): the master's duties take it as a predicate.
import type { SdNode } from '../../lib/structs.js'
import { sameNode } from '../../lib/structs.js'
import type { ClusterHandlers } from './driver.js'

/** One incarnation of a node: a node that restarts or loses its session joins as a new instance. */
export interface Member {
  node: SdNode
  instance: string
}

export interface Joiner extends Member {
  /** What the joiner sent with its join (sheep's view of the cluster). */
  payload: Buffer
}

/** A request for the cluster-wide block (the original's block/unblock): the head runs its work. */
export interface Block {
  sender: Member
  token: string
}

/** What every member derives identically from the log. */
export interface MembershipState {
  /** Members in accept order (the first live one is the master). */
  readonly members: readonly Member[]
  /** Joins seen but not yet accepted, in log order. */
  readonly joining: readonly Joiner[]
  /** The cluster-wide block queue. */
  readonly blocks: readonly Block[]
}

export type MembershipEvent =
  | { type: 'join'; member: Member; payload: Buffer }
  | { type: 'accept'; joiner: Member; payload: Buffer }
  /** The master's answer to a join it must not accept (another cluster, a newer epoch …). */
  | { type: 'refuse'; joiner: Member; reason: string }
  | { type: 'leave'; member: Member }
  | { type: 'notify'; sender: Member; token: string; message: Buffer }
  | { type: 'block'; sender: Member; token: string }
  | { type: 'unblock'; sender: Member; token: string; message: Buffer }

/**
 * What applying an event asks of the driver. Handler effects come only once this member's own
 * accept has been applied: the events before it are history the member skips.
 */
export type MembershipEffect =
  | { kind: 'accepted'; joiner: SdNode; members: SdNode[]; payload: Buffer; self: boolean }
  | { kind: 'left'; node: SdNode; members: SdNode[] }
  | { kind: 'notified'; sender: SdNode; message: Buffer }
  /** The notify or block with this token has been applied: its sender's wait is over. */
  | { kind: 'settled'; token: string }
  /** This member was declared gone by the master while it still runs. */
  | { kind: 'removed' }
  /** This member's join was refused: it must not run as a member. */
  | { kind: 'refused'; reason: string }

/** One member's view of the log: the shared state and which instance it is. */
export interface MemberView {
  readonly state: MembershipState
  readonly me: string
}

export function emptyMembership(): MembershipState {
  return { members: [], joining: [], blocks: [] }
}

/** True once this member's own accept has been applied (and it has not been declared gone). */
export function hasJoined(view: MemberView): boolean {
  return view.state.members.some((m) => m.instance === view.me)
}

function nodesOf(members: readonly Member[]): SdNode[] {
  return members.map((m) => m.node)
}

interface Step {
  state: MembershipState
  effects: MembershipEffect[]
}

/** Removes a member (and its blocks); `left` if the viewer had joined. */
function removeMember(state: MembershipState, gone: Member, viewerJoined: boolean): Step {
  const next: MembershipState = {
    members: state.members.filter((m) => m.instance !== gone.instance),
    joining: state.joining,
    blocks: state.blocks.filter((b) => b.sender.instance !== gone.instance),
  }
  return { state: next, effects: viewerJoined ? [{ kind: 'left', node: gone.node, members: nodesOf(next.members) }] : [] }
}

type Rule<T extends MembershipEvent['type']> = (view: MemberView, event: Extract<MembershipEvent, { type: T }>) => Step

/** The rule of each event, by type. */
const RULES: { [T in MembershipEvent['type']]: Rule<T> } = {
  join(view, e) {
    const { state } = view
    if (state.members.some((m) => m.instance === e.member.instance) || state.joining.some((j) => j.instance === e.member.instance)) {
      return { state, effects: [] } // a duplicate
    }
    // a node that joins again replaces an older instance of itself that was never accepted
    const joining = state.joining.filter((j) => !sameNode(j.node, e.member.node))
    return { state: { ...state, joining: [...joining, { node: e.member.node, instance: e.member.instance, payload: e.payload }] }, effects: [] }
  },

  accept(view, e) {
    const at = view.state.joining.findIndex((j) => j.instance === e.joiner.instance)
    if (at < 0) return { state: view.state, effects: [] } // already accepted, or the joiner left
    let state: MembershipState = { ...view.state, joining: view.state.joining.filter((_, i) => i !== at) }
    const effects: MembershipEffect[] = []
    // an older instance of the same node still listed is gone: it leaves first
    const older = state.members.find((m) => sameNode(m.node, e.joiner.node))
    if (older) {
      const step = removeMember(state, older, hasJoined(view))
      state = step.state
      effects.push(...step.effects)
    }
    state = { ...state, members: [...state.members, { node: e.joiner.node, instance: e.joiner.instance }] }
    const self = e.joiner.instance === view.me
    if (hasJoined({ state, me: view.me })) effects.push({ kind: 'accepted', joiner: e.joiner.node, members: nodesOf(state.members), payload: e.payload, self })
    return { state, effects }
  },

  refuse(view, e) {
    const state: MembershipState = { ...view.state, joining: view.state.joining.filter((j) => j.instance !== e.joiner.instance) }
    return { state, effects: e.joiner.instance === view.me ? [{ kind: 'refused', reason: e.reason }] : [] }
  },

  leave(view, e) {
    const joining = view.state.joining.filter((j) => j.instance !== e.member.instance)
    const member = view.state.members.find((m) => m.instance === e.member.instance)
    const state: MembershipState = { ...view.state, joining }
    if (!member) return { state, effects: [] }
    if (member.instance === view.me) {
      // our own leave: we are stopping, or the master found this instance gone while it runs
      return { state: removeMember(state, member, false).state, effects: [{ kind: 'removed' }] }
    }
    return removeMember(state, member, hasJoined(view))
  },

  notify(view, e) {
    if (!hasJoined(view)) return { state: view.state, effects: [] }
    // as a block: only a member's, or members would apply what its sender, not one, never does
    if (!view.state.members.some((m) => m.instance === e.sender.instance)) return { state: view.state, effects: [] }
    return {
      state: view.state,
      effects: [
        { kind: 'notified', sender: e.sender.node, message: e.message },
        { kind: 'settled', token: e.token },
      ],
    }
  },

  block(view, e) {
    // only a member can hold the block (a member that left has its blocks dropped with it)
    if (!view.state.members.some((m) => m.instance === e.sender.instance)) return { state: view.state, effects: [] }
    return { state: { ...view.state, blocks: [...view.state.blocks, { sender: e.sender, token: e.token }] }, effects: [] }
  },

  unblock(view, e) {
    const state: MembershipState = { ...view.state, blocks: view.state.blocks.filter((b) => b.token !== e.token) }
    if (!hasJoined(view)) return { state, effects: [] }
    // an empty message releases the block of a work that failed: nothing to apply
    const effects: MembershipEffect[] = e.message.length > 0 ? [{ kind: 'notified', sender: e.sender.node, message: e.message }] : []
    effects.push({ kind: 'settled', token: e.token })
    return { state, effects }
  },
}

/** Applies one event of the log: the member's next view and what the driver must do. */
export function applyEvent(view: MemberView, event: MembershipEvent): { view: MemberView; effects: MembershipEffect[] } {
  const rule = RULES[event.type] as Rule<typeof event.type>
  const step = rule(view, event as never)
  return { view: { state: step.state, me: view.me }, effects: step.effects }
}

/** What a driver does with the effects that are its own rather than sheep's. */
export interface DriverSinks {
  /** This member's own accept was applied: its join is complete. */
  joined(members: readonly SdNode[]): void
  settled(token: string): void
  /** This member was declared gone by the master. */
  removed(): void
  /** This member's join was refused. */
  refused(reason: string): void
}

/** Carries out effects: handler calls for sheep, the rest for the driver. */
export function deliverEffects(effects: readonly MembershipEffect[], handlers: ClusterHandlers, sinks: DriverSinks): void {
  for (const effect of effects) {
    switch (effect.kind) {
      case 'accepted':
        handlers.accepted(effect.joiner, effect.members, effect.payload)
        if (effect.self) sinks.joined(effect.members)
        break
      case 'left':
        handlers.left(effect.node, effect.members)
        break
      case 'notified':
        handlers.notified(effect.sender, effect.message)
        break
      case 'settled':
        sinks.settled(effect.token)
        break
      case 'removed':
        sinks.removed()
        break
      case 'refused':
        sinks.refused(effect.reason)
        break
    }
  }
}

// ---- the master's duties -----------------------------------------------------------------

/** Whether a member instance is alive, as the driver can tell (a running pid, a live session). */
export type IsLive = (member: Member) => boolean

/** The member that decides: the first live member, else (nobody accepted is alive) the first live joiner. */
export function masterOf(state: MembershipState, isLive: IsLive): Member | undefined {
  return state.members.find(isLive) ?? state.joining.find(isLive)
}

export function isMaster(view: MemberView, isLive: IsLive): boolean {
  return masterOf(view.state, isLive)?.instance === view.me
}

/** Members and joiners that are no longer alive: the master declares them gone (a leave each). */
export function deadInstances(state: MembershipState, isLive: IsLive): Member[] {
  return [...state.members, ...state.joining].filter((m) => !isLive(m)).map((m) => ({ node: m.node, instance: m.instance }))
}

/**
 * The join the master answers now, if any. Joins are answered one at a time — the next only
 * once the previous answer has been applied (its joiner no longer joining) — so each decision
 * sees every earlier joiner as a member (the nodes of the last epoch starting together find
 * each other); and only while every member is alive (dead ones are declared gone first).
 * Before its own accept the master answers only itself (the first node of a cluster); a joiner
 * whose node is still a member (an older instance) waits until that instance is gone.
 */
export function joinToAnswer(view: MemberView, isLive: IsLive, answering: ReadonlySet<string>): Joiner | undefined {
  const { state } = view
  if (state.joining.some((j) => answering.has(j.instance))) return undefined
  // a cluster operation holds the block: its result comes later in the log, and a joiner
  // accepted after that result would miss it (the original's event queue waits as well)
  if (state.blocks.length > 0) return undefined
  if (state.members.some((m) => !isLive(m))) return undefined
  const joined = hasJoined(view)
  return state.joining.find((j) => isLive(j) && (joined || j.instance === view.me) && !state.members.some((m) => sameNode(m.node, j.node)))
}

/** The master's answer to `j`: refused if sheep's check says why, else accepted with sheep's decision. */
export function answerToJoin(j: Joiner, handlers: ClusterHandlers): MembershipEvent {
  const joiner: Member = { node: j.node, instance: j.instance }
  const reason = handlers.checkJoin?.(j.node, j.payload)
  if (reason !== undefined) return { type: 'refuse', joiner, reason }
  return { type: 'accept', joiner, payload: handlers.decideJoin(j.node, j.payload) }
}

/** The block this member must run its work for now: the head of the queue, if it is ours. */
export function blockToRun(view: MemberView): Block | undefined {
  const head = view.state.blocks[0]
  return head !== undefined && head.sender.instance === view.me ? head : undefined
}

/** Keeps in `set` only the instances still present in `present` (answers and declarations applied). */
export function forgetApplied(set: Set<string>, present: readonly Member[]): void {
  for (const instance of set) if (!present.some((m) => m.instance === instance)) set.delete(instance)
}
