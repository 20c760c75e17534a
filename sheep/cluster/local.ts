// The `local` cluster driver: several sheep on one machine, no extra service (behaviour.md
// §11.1). All members share one event file (default /tmp/sheepdog_shm, or `-c local:FILE`).
// Every event is one record appended with O_APPEND, so the file itself is the total order;
// each member reads it from the start and applies the events deterministically, so all members
// reach the same membership and block queue at the same point of the log. Decisions that need
// one node (accepting a join, declaring a dead member gone) are taken by the "master" — the
// first live member — and duplicates written by a dying and a new master are ignored on apply.
// Dead members are found by checking their pid (with its start time, against pid reuse).
import fs from 'node:fs'
import path from 'node:path'
import { invariant } from '../../lib/errors.js'
import { processStartTime, sameProcessAlive } from '../../lib/proc.js'
import { type SdNode, sameNode } from '../../lib/structs.js'
import type { ClusterDriver, ClusterHandlers } from './driver.js'
import { packMessage, unpackMessage } from './message.js'

/** How often the event file is read for new events. */
export const LOCAL_POLL_INTERVAL_MS = 20
/** How often the master checks that members are alive. */
export const LOCAL_LIVENESS_INTERVAL_MS = 50
/** Largest event accepted (the original's queue slots held 128 KiB). */
export const LOCAL_MAX_EVENT_BYTES = 4 * 1024 * 1024
const RECORD_MAGIC = 0x5344_4c45 // "SDLE"

interface Member {
  node: SdNode
  pid: number
  /** Process start time (from /proc), so a reused pid is not taken for the member. */
  startTime: string
}

type LocalEvent =
  | { type: 'join'; member: Member; payload: Buffer }
  | { type: 'accept'; joiner: Member; payload: Buffer }
  | { type: 'leave'; node: SdNode }
  | { type: 'notify'; sender: SdNode; message: Buffer }
  | { type: 'block'; sender: SdNode; token: string }
  | { type: 'unblock'; sender: SdNode; token: string; message: Buffer }

function memberAlive(m: Member): boolean {
  return sameProcessAlive(m)
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
  /** Members in join order (the first live one is the master). */
  private members: Member[] = []
  /** Joins seen but not yet accepted, in log order, with what each joiner sent. */
  private joining: Array<Member & { payload: Buffer }> = []
  /** Join instances this node has answered as master (each is answered once). */
  private readonly answered = new Set<string>()
  private blocks: Array<{ sender: SdNode; token: string; started: boolean }> = []
  private joinedResolve: (() => void) | undefined
  private readonly waiters = new Map<string, { resolve: () => void; reject: (e: Error) => void }>()
  private readonly works = new Map<string, () => Promise<Buffer>>()
  private pollTimer: NodeJS.Timeout | undefined
  private livenessTimer: NodeJS.Timeout | undefined
  private watcher: fs.FSWatcher | undefined
  private counter = 0
  private stopped = false

  constructor(readonly eventFile: string) {}

  async join(self: SdNode, handlers: ClusterHandlers, joinPayload: Buffer): Promise<void> {
    const startTime = processStartTime(process.pid)
    invariant(startTime !== undefined, 'cannot read this process start time from /proc')
    this.me = { node: self, pid: process.pid, startTime }
    this.handlers = handlers
    const joined = new Promise<void>((resolve) => {
      this.joinedResolve = resolve
    })
    withStartupLock(`${this.eventFile}.lock`, () => {
      this.fd = fs.openSync(this.eventFile, 'a+', 0o666)
      this.catchUp()
      // nobody alive in the history: start the log afresh instead of replaying it for ever
      if (!this.members.some(memberAlive) && !this.joining.some(memberAlive)) {
        fs.ftruncateSync(this.fd, 0)
        this.offset = 0
        this.pending = Buffer.alloc(0)
        this.members = []
        this.joining = []
        this.blocks = []
      }
      this.append({ type: 'join', member: this.me!, payload: joinPayload })
    })
    this.pollTimer = setInterval(() => this.catchUp(), LOCAL_POLL_INTERVAL_MS)
    this.livenessTimer = setInterval(() => this.checkLiveness(), LOCAL_LIVENESS_INTERVAL_MS)
    try {
      this.watcher = fs.watch(this.eventFile, () => this.catchUp())
    } catch {
      // polling alone still works
    }
    this.catchUp()
    await joined
  }

  notify(message: Buffer): Promise<void> {
    const sender = this.self()
    const token = this.newToken()
    return this.waitFor(token, () => this.append({ type: 'notify', sender, message: packMessage({ token, message }) }))
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
    if (this.fd >= 0 && this.me) {
      this.append({ type: 'leave', node: this.me.node })
      fs.closeSync(this.fd)
      this.fd = -1
    }
  }

  private self(): SdNode {
    invariant(this.me !== undefined, 'local driver used before join')
    return this.me.node
  }

  private newToken(): string {
    return `${process.pid}:${++this.counter}`
  }

  private waitFor(token: string, send: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.set(token, { resolve, reject })
      send()
      this.catchUp()
    })
  }

  /** Appends one event as a single write: O_APPEND makes it atomic and ordered. */
  private append(event: LocalEvent): void {
    if (this.fd < 0) return
    const body = packMessage(event)
    invariant(body.length <= LOCAL_MAX_EVENT_BYTES, `cluster event of ${body.length} bytes`)
    const record = Buffer.allocUnsafe(8 + body.length)
    record.writeUInt32LE(RECORD_MAGIC, 0)
    record.writeUInt32LE(body.length, 4)
    body.copy(record, 8)
    fs.writeSync(this.fd, record)
  }

  /** Reads and applies every complete event past our offset. */
  private catchUp(): void {
    if (this.fd < 0 || this.stopped) return
    const size = fs.fstatSync(this.fd).size
    if (size <= this.offset) return
    const chunk = Buffer.allocUnsafe(size - this.offset)
    const got = fs.readSync(this.fd, chunk, 0, chunk.length, this.offset)
    this.offset += got
    let buf = this.pending.length > 0 ? Buffer.concat([this.pending, chunk.subarray(0, got)]) : chunk.subarray(0, got)
    while (buf.length >= 8) {
      invariant(buf.readUInt32LE(0) === RECORD_MAGIC, `corrupt event file ${this.eventFile}`)
      const length = buf.readUInt32LE(4)
      if (buf.length < 8 + length) break
      this.apply(unpackMessage<LocalEvent>(Buffer.from(buf.subarray(8, 8 + length))))
      buf = buf.subarray(8 + length)
    }
    this.pending = Buffer.from(buf)
    this.startBlockedWork()
  }

  /** The member that decides joins and leaves: the first live one in join order, else the first joiner. */
  private master(): Member | undefined {
    return this.members.find(memberAlive) ?? this.joining.find(memberAlive)
  }

  private iAmMaster(): boolean {
    const m = this.master()
    return m !== undefined && this.me !== undefined && m.pid === this.me.pid && sameNode(m.node, this.me.node)
  }

  private isMember(node: SdNode): boolean {
    return this.members.some((m) => sameNode(m.node, node))
  }

  private apply(e: LocalEvent): void {
    const handlers = this.handlers!
    switch (e.type) {
      case 'join': {
        // a node that joins again replaces an older instance of itself
        this.joining = this.joining.filter((j) => !sameNode(j.node, e.member.node))
        this.joining.push({ ...e.member, payload: e.payload })
        this.answerJoins()
        break
      }
      case 'accept': {
        const idx = this.joining.findIndex((j) => sameNode(j.node, e.joiner.node) && j.pid === e.joiner.pid)
        if (idx < 0) break // already accepted, or the joiner left
        this.joining.splice(idx, 1)
        this.members = this.members.filter((m) => !sameNode(m.node, e.joiner.node))
        this.members.push({ node: e.joiner.node, pid: e.joiner.pid, startTime: e.joiner.startTime })
        if (!this.reached()) break
        handlers.accepted(
          e.joiner.node,
          this.members.map((m) => m.node),
          e.payload,
        )
        if (this.me && e.joiner.pid === this.me.pid && sameNode(e.joiner.node, this.me.node)) {
          this.joinedResolve?.()
          this.joinedResolve = undefined
        }
        this.answerJoins()
        break
      }
      case 'leave': {
        this.joining = this.joining.filter((j) => !sameNode(j.node, e.node))
        if (!this.isMember(e.node)) break
        this.members = this.members.filter((m) => !sameNode(m.node, e.node))
        this.blocks = this.blocks.filter((b) => !sameNode(b.sender, e.node))
        if (this.reached())
          handlers.left(
            e.node,
            this.members.map((m) => m.node),
          )
        this.answerJoins()
        break
      }
      case 'notify': {
        if (!this.reached()) break
        const { token, message } = unpackMessage<{ token: string; message: Buffer }>(e.message)
        handlers.notified(e.sender, message)
        this.settle(token)
        break
      }
      case 'block':
        if (this.isMember(e.sender)) this.blocks.push({ sender: e.sender, token: e.token, started: false })
        break
      case 'unblock': {
        const at = this.blocks.findIndex((b) => b.token === e.token)
        if (at >= 0) this.blocks.splice(at, 1)
        if (!this.reached()) break
        if (e.message.length > 0) handlers.notified(e.sender, e.message)
        this.settle(e.token)
        break
      }
    }
  }

  /** True once this node's own accept has been applied: earlier events are history it skips. */
  private reached(): boolean {
    return this.me !== undefined && this.members.some((m) => m.pid === this.me!.pid && sameNode(m.node, this.me!.node))
  }

  private settle(token: string): void {
    const w = this.waiters.get(token)
    if (!w) return
    this.waiters.delete(token)
    w.resolve()
  }

  /** On the master: answer every pending join with the cluster's view. */
  /**
   * On the master: answer the oldest pending join. Joins are answered one at a time — the next
   * only after the previous accept was applied — so each decision sees every earlier joiner as
   * a member (nodes of the last epoch starting together must find each other).
   */
  private answerJoins(): void {
    if (!this.iAmMaster() || !this.handlers || this.stopped) return
    const j = this.joining.find(memberAlive)
    if (!j) return
    const key = `${j.pid}:${j.startTime}`
    if (this.answered.has(key)) return
    this.answered.add(key)
    const payload = this.handlers.decideJoin(j.node, j.payload)
    const joiner: Member = { node: j.node, pid: j.pid, startTime: j.startTime }
    this.append({ type: 'accept', joiner, payload })
  }

  /** Runs this node's exclusive work when its block reaches the head of the queue. */
  private startBlockedWork(): void {
    const head = this.blocks[0]
    if (!head || head.started || !this.me || !sameNode(head.sender, this.me.node)) return
    const work = this.works.get(head.token)
    if (!work) return
    head.started = true
    this.works.delete(head.token)
    work()
      .then(
        (message) => this.append({ type: 'unblock', sender: head.sender, token: head.token, message }),
        (err: unknown) => {
          // release the block with no message so others proceed; the caller sees the error
          this.append({ type: 'unblock', sender: head.sender, token: head.token, message: Buffer.alloc(0) })
          const w = this.waiters.get(head.token)
          this.waiters.delete(head.token)
          w?.reject(err instanceof Error ? err : new Error(String(err)))
        },
      )
      .finally(() => this.catchUp())
  }

  /** On the master: members (and joiners) whose process is gone are declared left. */
  private checkLiveness(): void {
    this.catchUp()
    if (!this.iAmMaster() || this.stopped) return
    for (const m of [...this.members, ...this.joining]) {
      if (!memberAlive(m)) this.append({ type: 'leave', node: m.node })
    }
    this.catchUp()
  }
}
