// `dog vdi lock list` and `dog vdi lock unlock` (cli-and-formats §4.17): the VDIs whose lock
// state (GET_VDI_COPIES) is not "unlocked" with their owner or participants, and the forced
// RELEASE_VDI of one VDI's lock.
import { asSdError, failureLabel, forEachVdi, printTransportFailure, selectorOf } from './common.js'
import { EXIT_FAILURE, EXIT_SUCCESS, EXIT_SYSFAIL, type DogContext } from './cli.js'
import type { DogRuntime } from './runtime.js'
import type { SheepConnection } from '../lib/client.js'
import { sprintf } from '../lib/format.js'
import { isClone, isSnapshot } from '../lib/inode.js'
import { readFields } from '../lib/layout.js'
import { LOCK_TYPE_NORMAL, LOCK_TYPE_SHARED } from '../lib/proto.js'
import { getVdiCopies, getVdiInfo, releaseVdi, type SnapshotSelector, type VdiStateRecord } from '../lib/sheep-api.js'
import { LOCK_STATE_NORMAL, LOCK_STATE_SHARED, LOCK_STATE_UNLOCKED, NODE_ID, nodeDescription } from '../lib/structs.js'

const LOCK_LIST_HEADER = '  Name         Id  VDI id  Tag            Owner node(s)\n'
const LOCK_LIST_ROW = '%c %-8s  %5u  %6x  %-13s '
/** How `lock list` marks each participant of a shared lock (vdi_state participants_state). */
const PARTICIPANT_STATE_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'modified'],
  [2, 'shared'],
  [3, 'invalidated'],
])
/** RELEASE_VDI's lock type for each locked state. */
const RELEASE_TYPE_OF_STATE: ReadonlyMap<number, number> = new Map([
  [LOCK_STATE_NORMAL, LOCK_TYPE_NORMAL],
  [LOCK_STATE_SHARED, LOCK_TYPE_SHARED],
])

/** `IPv4 ip:A.B.C.D port:P` of a 40-byte node_id. */
function describeNodeId(nodeId: Buffer): string {
  return nodeDescription(readFields(nodeId, NODE_ID))
}

/** GET_VDI_COPIES by vid; undefined (after printing why) when it failed. */
async function lockStates(ctx: DogContext, conn: SheepConnection): Promise<Map<number, VdiStateRecord> | undefined> {
  try {
    return new Map((await getVdiCopies(conn)).map((state) => [state.vid, state]))
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    if (!failure.isTransport) ctx.printStderrLine(`failed to execute SD_OP_GET_VDI_COPIES: ${failure.label}`)
    ctx.printStderrLine('Failed to get VDI state')
    return undefined
  }
}

/** The owner column: the lock owner, or each participant of a shared lock with its state. */
function ownersText(state: VdiStateRecord): string {
  if (state.lockState === LOCK_STATE_NORMAL) return ` ${describeNodeId(state.lockOwner)}`
  return state.participants
    .map((participant, i) => {
      const stateCode = state.participantStates[i] as number
      const stateName = PARTICIPANT_STATE_NAMES.get(stateCode) ?? `UNKNOWN ${stateCode}, BUG!`
      return ` ${describeNodeId(participant)}(${stateName})`
    })
    .join('')
}

export async function listLockedVdis(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const conn = dog.daemon(ctx)
  const states = await lockStates(ctx, conn)
  if (states === undefined) return EXIT_SYSFAIL
  ctx.printStdout(LOCK_LIST_HEADER)
  const walked = await forEachVdi(ctx, conn, ({ vid, header }) => {
    const state = states.get(vid)
    if (state === undefined || state.lockState === LOCK_STATE_UNLOCKED) return
    const snapshot = isSnapshot(header)
    const typeChar = snapshot ? 's' : isClone(header) ? 'c' : ' '
    ctx.printStdout(sprintf(LOCK_LIST_ROW, typeChar, header.name, snapshot ? header.snapId : 0, vid, header.tag) + ownersText(state) + '\n')
  })
  return walked ? EXIT_SUCCESS : EXIT_SYSFAIL
}

/** `name (vid=…)`, `name (tag=…, vid=…)` or `name (snapid=…, vid=…)`; without the vid when unknown. */
function describeVdi(name: string, selector: SnapshotSelector, vid?: number): string {
  const parts: string[] = []
  if (selector.snapid) parts.push(`snapid=${selector.snapid}`)
  else if (selector.tag) parts.push(`tag=${selector.tag}`)
  if (vid !== undefined) parts.push(`vid=${vid.toString(16)}`)
  return parts.length === 0 ? name : `${name} (${parts.join(', ')})`
}

export async function unlockVdi(ctx: DogContext, dog: DogRuntime): Promise<number> {
  const name = ctx.args[0] as string
  const selector = selectorOf(ctx)
  const conn = dog.daemon(ctx)
  let vid: number
  try {
    ;({ vid } = await getVdiInfo(conn, name, selector))
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to find VDI ${describeVdi(name, selector)}: ${failureLabel(failure)}`)
    return EXIT_FAILURE
  }
  const description = describeVdi(name, selector, vid)
  const states = await lockStates(ctx, conn)
  if (states === undefined) return EXIT_SYSFAIL
  const state = states.get(vid)
  if (state === undefined) {
    ctx.printStderrLine(`Failed to find VDI state ${description}`)
    return EXIT_SYSFAIL
  }
  if (state.lockState === LOCK_STATE_UNLOCKED) {
    ctx.printStderrLine(`VDI ${description} is not locked`)
    return EXIT_FAILURE
  }
  const releaseType = RELEASE_TYPE_OF_STATE.get(state.lockState)
  if (releaseType === undefined) {
    ctx.printStderrLine(`VDI ${description} unknown lock state (${state.lockState})`)
    return EXIT_SYSFAIL
  }
  try {
    await releaseVdi(conn, vid, { shared: releaseType === LOCK_TYPE_SHARED })
  } catch (error) {
    const failure = asSdError(error)
    printTransportFailure(ctx, failure)
    ctx.printStderrLine(`Failed to unlock VDI ${description}: ${failureLabel(failure)}`)
    return EXIT_FAILURE
  }
  return EXIT_SUCCESS
}
