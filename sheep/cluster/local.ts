// The `local` cluster driver: several sheep on one machine, no extra service (behaviour.md
// §11.1). All members share one event file (default /tmp/sheepdog_shm, or `-c local:FILE`).
// Every event is one record appended with O_APPEND, so the file itself is the total order;
// each member reads it from the start and feeds it to the membership state machine
// (membership.ts), which every driver shares: all members reach the same membership and block
// queue at the same point of the log. This driver supplies the log and the liveness: a member
// instance is a process (pid and start time, against pid reuse), alive while that process runs.
import fs from 'node:fs'
import path from 'node:path'
import { PendingTable } from '../../lib/async.js'
import { invariant } from '../../lib/errors.js'
import { LivenessProbe, type ProcessIdentity, processStartTime, sameProcessAlive } from '../../lib/proc.js'
import type { SdNode } from '../../lib/structs.js'
import type { ClusterDriver, ClusterHandlers } from './driver.js'
import {
  type DriverSinks,
  type Member,
  type MemberView,
  type MembershipEvent,
  answerToJoin,
  applyEvent,
  blockToRun,
  deadInstances,
  deliverEffects,
  emptyMembership,
  forgetApplied,
  isMaster,
  joinToAnswer,
} from './membership.js'
import { packMessage, unpackMessage } from './message.js'

/** How often the event file is read for new events when it cannot be watched (fs.watch). */
export const LOCAL_POLL_INTERVAL_MS = 20
/** How often the master checks that members are alive. */
export const LOCAL_LIVENESS_INTERVAL_MS = 50
/** Largest event accepted (the original's queue slots held 128 KiB). */
export const LOCAL_MAX_EVENT_BYTES = 4 * 1024 * 1024
const RECORD_MAGIC = 0x5344_4c45 // "SDLE"
/** A record is its magic and its body's length (u32 each), then the body. */
const LOCAL_RECORD_HEADER_SIZE = 8

/** Drivers made in this process so far: several in one process (tests) are distinct instances. */
let driversInProcess = 0

/** A member instance of this driver: `pid.startTime.n`. */
function localInstance(pid: number, startTime: string): string {
  return `${pid}.${startTime}.${++driversInProcess}`
}

/** The process of a member instance. */
function processOf(m: Member): ProcessIdentity {
  const [pid, startTime] = m.instance.split('.')
  return { pid: Number(pid), startTime: startTime ?? '' }
}

/** A member is alive while the process of its instance runs (the same process: not a reused pid). */
function memberAlive(m: Member): boolean {
  return sameProcessAlive(processOf(m))
}

/**
 * Member liveness for one decision: each instance's /proc file is read once however often the
 * membership rules ask (a read blocks the event loop, and this runs every few milliseconds).
 */
function livenessOnce(probe: LivenessProbe): (m: Member) => boolean {
  const seen = new Map<string, boolean>()
  return (m) => {
    let alive = seen.get(m.instance)
    if (alive === undefined) {
      alive = probe.alive(processOf(m))
      seen.set(m.instance, alive)
    }
    return alive
  }
}

/** How long a starting sheep waits for another one to finish its join step. */
export const LOCAL_STARTUP_LOCK_TIMEOUT_MS = 10_000
/** A lock directory without an owner file older than this was left by a process that died. */
const LOCAL_STARTUP_LOCK_ORPHAN_MS = 1_000

/**
 * Runs `step` holding a lock directory (mkdir is atomic). Only joins take it, for milliseconds;
 * a lock left by a process that died holding it is taken over.
 */
function withStartupLock(lockDir: string, step: () => void): void {
  const owner = path.join(lockDir, 'owner')
  const deadline = Date.now() + LOCAL_STARTUP_LOCK_TIMEOUT_MS
  for (;;) {
    try {
      fs.mkdirSync(lockDir)
      fs.writeFileSync(owner, `${process.pid} ${processStartTime(process.pid) ?? ''}`)
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
      let holderAlive = true
      try {
        const [pid, start] = fs.readFileSync(owner, 'utf8').split(' ')
        holderAlive = sameProcessAlive({ pid: Number(pid), startTime: start })
      } catch {
        // no owner file: the holder is about to write it — unless it died right after mkdir
        try {
          holderAlive = Date.now() - fs.statSync(lockDir).mtimeMs < LOCAL_STARTUP_LOCK_ORPHAN_MS
        } catch {
          holderAlive = false
        }
      }
      if (!holderAlive) fs.rmSync(lockDir, { recursive: true, force: true })
      else if (Date.now() > deadline) throw new Error(`${lockDir} is held by another process`)
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5)
    }
  }
  try {
    step()
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true })
  }
}

export class LocalDriver implements ClusterDriver {
  readonly name = 'local'
  private fd = -1
  private offset = 0
  private pending = Buffer.alloc(0)
  private handlers: ClusterHandlers | undefined
  private me: Member | undefined
  private view: MemberView = { state: emptyMembership(), me: '' }
  /** Joins this node answered as master, and dead instances it declared gone, until applied. */
  private readonly answering = new Set<string>()
  private readonly declared = new Set<string>()
  private readonly startedBlocks = new Set<string>()
  private joinedResolve: (() => void) | undefined
  private joinedReject: ((e: Error) => void) | undefined
  /** Notifies and blocks sent by this node, until applied. */
  private readonly waiters = new PendingTable<string>()
  private readonly works = new Map<string, () => Promise<Buffer>>()
  private readonly sinks: DriverSinks = {
    joined: () => {
      this.joinedResolve?.()
      this.joinedResolve = undefined
    },
    settled: (token) => this.waiters.settle(token),
    // the master declares a member gone only when its process is: not while we run
    removed: () => invariant(this.stopped, 'this running sheep was declared gone by the local driver'),
    refused: (reason) => {
      this.joinedReject?.(new Error(reason))
      this.joinedResolve = undefined
      void this.leave()
    },
  }
  private pollTimer: NodeJS.Timeout | undefined
  private livenessTimer: NodeJS.Timeout | undefined
  private watcher: fs.FSWatcher | undefined
  private counter = 0
  private stopped = false
  /** Members' /proc files, kept open between liveness checks. */
  private readonly probe = new LivenessProbe()

  constructor(readonly eventFile: string) {}

  async join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void> {
    const startTime = processStartTime(process.pid)
    invariant(startTime !== undefined, 'cannot read this process start time from /proc')
    const me: Member = { node: self, instance: localInstance(process.pid, startTime) }
    this.me = me
    this.view = { state: emptyMembership(), me: me.instance }
    this.handlers = handlers
    const joined = new Promise<void>((resolve, reject) => {
      this.joinedResolve = resolve
      this.joinedReject = reject
    })
    withStartupLock(`${this.eventFile}.lock`, () => {
      this.fd = fs.openSync(this.eventFile, 'a+', 0o666)
      this.catchUp()
      // nobody alive in the history: start the log afresh instead of replaying it for ever
      const { members, joining } = this.view.state
      if (!members.some(memberAlive) && !joining.some(memberAlive)) {
        fs.ftruncateSync(this.fd, 0)
        this.offset = 0
        this.pending = Buffer.alloc(0)
        this.view = { state: emptyMembership(), me: me.instance }
      }
      this.append({ type: 'join', member: me, payload: joinPayload })
    })
    // the liveness check also reads the log: it answers a join deferred while the master was busy
    this.livenessTimer = setInterval(() => this.checkLiveness(), LOCAL_LIVENESS_INTERVAL_MS)
    try {
      this.watcher = fs.watch(this.eventFile, () => this.catchUp())
      this.watcher.on('error', () => this.pollInstead())
    } catch {
      this.pollInstead()
    }
    this.catchUp()
    await joined
  }

  /**
   * Without a watch on the event file, its appends are found by reading it every
   * LOCAL_POLL_INTERVAL_MS. With one, that timer is not run: a timer's wake-up costs ~0.1 ms of
   * CPU on a virtual machine, and 50 of them a second were a third of an idle sheep's CPU.
   */
  private pollInstead(): void {
    this.watcher?.close()
    this.watcher = undefined
    if (!this.stopped && this.pollTimer === undefined) this.pollTimer = setInterval(() => this.catchUp(), LOCAL_POLL_INTERVAL_MS)
  }

  notify(message: Buffer): Promise<void> {
    const sender = this.self()
    const token = this.newToken()
    return this.waitFor(token, () => this.append({ type: 'notify', sender, token, message }))
  }

  exclusive(work: () => Promise<Buffer>): Promise<void> {
    const sender = this.self()
    const token = this.newToken()
    this.works.set(token, work)
    return this.waitFor(token, () => this.append({ type: 'block', sender, token }))
  }

  async leave(): Promise<void> {
    this.stopped = true
    clearInterval(this.pollTimer)
    clearInterval(this.livenessTimer)
    this.watcher?.close()
    this.probe.close()
    if (this.fd >= 0 && this.me) {
      this.append({ type: 'leave', member: this.me })
      fs.closeSync(this.fd)
      this.fd = -1
    }
  }

  private self(): Member {
    invariant(this.me !== undefined, 'local driver used before join')
    return this.me
  }

  private newToken(): string {
    return `${this.self().instance}:${++this.counter}`
  }

  private waitFor(token: string, send: () => void): Promise<void> {
    const applied = this.waiters.wait(token)
    try {
      send()
    } catch (e) {
      this.waiters.fail(token, e)
    }
    this.catchUp()
    return applied
  }

  /** Appends one event as a single write: O_APPEND makes it atomic and ordered. */
  private append(event: MembershipEvent): void {
    if (this.fd < 0) return
    const body = packMessage(event)
    invariant(body.length <= LOCAL_MAX_EVENT_BYTES, `cluster event of ${body.length} bytes`)
    const record = Buffer.allocUnsafe(LOCAL_RECORD_HEADER_SIZE + body.length)
    record.writeUInt32LE(RECORD_MAGIC, 0)
    record.writeUInt32LE(body.length, 4)
    body.copy(record, LOCAL_RECORD_HEADER_SIZE)
    fs.writeSync(this.fd, record)
  }

  /**
   * Reads and applies every complete event past our offset, then does this node's duties. A
   * join is decided on the whole log, in the same turn as its accept is appended, so that no
   * cluster operation's result falls between the decision and the accept.
   */
  private catchUp(): void {
    // events read here may bring this node's block to the head of the queue: its work starts
    if (this.readLog()) this.startBlockedWork()
    this.answerJoin()
  }

  /** Reads and applies every complete event past our offset; false when there was none. */
  private readLog(): boolean {
    if (this.fd < 0 || this.stopped) return false
    const size = fs.fstatSync(this.fd).size
    if (size <= this.offset) return false
    const chunk = Buffer.allocUnsafe(size - this.offset)
    const got = fs.readSync(this.fd, chunk, 0, chunk.length, this.offset)
    this.offset += got
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk.subarray(0, got)]) : chunk.subarray(0, got)
    while (buf.length >= LOCAL_RECORD_HEADER_SIZE) {
      invariant(buf.readUInt32LE(0) === RECORD_MAGIC, `corrupt event file ${this.eventFile}`)
      const length = buf.readUInt32LE(4)
      if (buf.length < LOCAL_RECORD_HEADER_SIZE + length) break
      this.apply(unpackMessage<MembershipEvent>(Buffer.from(buf.subarray(LOCAL_RECORD_HEADER_SIZE, LOCAL_RECORD_HEADER_SIZE + length))))
      buf = buf.subarray(LOCAL_RECORD_HEADER_SIZE + length)
    }
    this.pending = Buffer.from(buf)
    return true
  }

  private apply(event: MembershipEvent): void {
    const { view, effects } = applyEvent(this.view, event)
    this.view = view
    const handlers = this.handlers!
    deliverEffects(effects, handlers, this.sinks)
    if (event.type === 'unblock') this.startedBlocks.delete(event.token)
    forgetApplied(this.answering, this.view.state.joining)
    forgetApplied(this.declared, [...this.view.state.members, ...this.view.state.joining])
  }

  /** On the master: answer the join the membership rules pick (one at a time). */
  private answerJoin(): void {
    // nobody joining (nearly every call): no liveness to read from /proc
    if (this.view.state.joining.length === 0 || !this.handlers || this.stopped) return
    const alive = livenessOnce(this.probe)
    if (!isMaster(this.view, alive) || this.handlers.busy?.()) return
    const j = joinToAnswer(this.view, alive, this.answering)
    if (!j) return
    this.answering.add(j.instance)
    this.append(answerToJoin(j, this.handlers))
  }

  /** Runs this node's exclusive work when its block reaches the head of the queue. */
  private startBlockedWork(): void {
    const head = blockToRun(this.view)
    if (!head || this.startedBlocks.has(head.token)) return
    const work = this.works.get(head.token)
    if (!work) return
    this.startedBlocks.add(head.token)
    this.works.delete(head.token)
    work()
      .then(
        (message) => this.append({ type: 'unblock', sender: head.sender, token: head.token, message }),
        (err: unknown) => {
          // release the block with no message so others proceed; the caller sees the error
          this.append({ type: 'unblock', sender: head.sender, token: head.token, message: Buffer.alloc(0) })
          this.waiters.fail(head.token, err)
        },
      )
      .finally(() => this.catchUp())
  }

  /** On the master: members (and joiners) whose process is gone are declared left. */
  private checkLiveness(): void {
    this.catchUp()
    this.probe.endRound()
    const alive = livenessOnce(this.probe)
    if (this.stopped || !isMaster(this.view, alive)) return
    for (const m of deadInstances(this.view.state, alive)) {
      if (this.declared.has(m.instance)) continue
      this.declared.add(m.instance)
      this.append({ type: 'leave', member: m })
    }
    this.catchUp()
  }
}
