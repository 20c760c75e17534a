// The membership state machine every cluster driver feeds (sheep/cluster/membership.ts): its
// rules one by one, then a seeded simulation that replays random interleavings — members
// reading the log at their own pace, masters acting on stale views, crashes, restarts as new
// instances, joiners starting from a snapshot — and checks that every live member reaches the
// same state, sees the same effects from its own accept on, and that every join and block
// completes. A failing case prints its seed.
import type { SdNode } from '../../lib/structs.js'
import { inspect, isDeepStrictEqual } from 'node:util'
import t from 'tap'
import {
  type Member,
  type MemberView,
  type MembershipEffect,
  type MembershipEvent,
  answerToJoin,
  applyEvent,
  blockToRun,
  deadInstances,
  emptyMembership,
  forgetApplied,
  hasJoined,
  isMaster,
  joinToAnswer,
  masterOf,
} from '../../sheep/cluster/membership.js'
import { testNode } from '../helpers/nodes.js'
import { seededRandom } from '../helpers/random.js'

const node = (port: number) => testNode(port)
const member = (port: number, instance: string): Member => ({ node: node(port), instance })
const payload = (text: string) => Buffer.from(text)

/** Folds events from the empty state for the viewer `me`, collecting the effects. */
function fold(me: string, events: MembershipEvent[]): { view: MemberView; effects: MembershipEffect[] } {
  let view: MemberView = { state: emptyMembership(), me }
  const effects: MembershipEffect[] = []
  for (const e of events) {
    const step = applyEvent(view, e)
    view = step.view
    effects.push(...step.effects)
  }
  return { view, effects }
}

const a = member(1, 'a1')
const b = member(2, 'b1')
const c = member(3, 'c1')
const joinOf = (m: Member): MembershipEvent => ({ type: 'join', member: m, payload: payload(`join ${m.instance}`) })
const acceptOf = (m: Member): MembershipEvent => ({ type: 'accept', joiner: m, payload: payload(`accept ${m.instance}`) })

t.test('join and accept: handlers from the own accept on, members in accept order', async (t) => {
  const { view, effects } = fold('b1', [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b), joinOf(c), acceptOf(c)])
  t.same(
    view.state.members.map((m) => m.instance),
    ['a1', 'b1', 'c1'],
  )
  t.same(view.state.joining, [])
  t.same(
    effects.map((e) => (e.kind === 'accepted' ? `${e.joiner.port}:${e.members.map((n) => n.port).join(',')}:${e.self}` : e.kind)),
    ['2:1,2:true', '3:1,2,3:false'],
    "a's accept is history to b",
  )
})

t.test('duplicates are ignored: a join twice, an accept twice, a leave of a non-member', async (t) => {
  const events = [joinOf(a), joinOf(a), acceptOf(a), acceptOf(a), { type: 'leave', member: b } as MembershipEvent]
  const { view, effects } = fold('a1', events)
  t.same(
    view.state.members.map((m) => m.instance),
    ['a1'],
  )
  t.equal(effects.length, 1, 'one accepted')
})

t.test('a node joining again replaces its older joining instance; its accept drops an older member instance', async (t) => {
  const a2 = member(1, 'a2')
  const { view, effects } = fold('b1', [joinOf(b), acceptOf(b), joinOf(a), joinOf(a2)])
  t.same(
    view.state.joining.map((j) => j.instance),
    ['a2'],
  )
  const later = fold('b1', [joinOf(b), acceptOf(b), joinOf(a), acceptOf(a), joinOf(a2), acceptOf(a2)])
  t.same(
    later.view.state.members.map((m) => m.instance),
    ['b1', 'a2'],
  )
  t.same(
    later.effects.map((e) => e.kind),
    ['accepted', 'accepted', 'left', 'accepted'],
    'the older instance leaves before the new one is accepted',
  )
  t.equal(effects.length, 1)
})

t.test('leave: others see left; the left member sees removed; its blocks go with it', async (t) => {
  const events: MembershipEvent[] = [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b), { type: 'block', sender: b, token: 'tb' }, { type: 'leave', member: b }]
  const seenByA = fold('a1', events)
  t.same(seenByA.view.state.blocks, [])
  t.same(
    seenByA.effects.map((e) => e.kind),
    ['accepted', 'accepted', 'left'],
  )
  const seenByB = fold('b1', events)
  t.same(
    seenByB.effects.map((e) => e.kind),
    ['accepted', 'removed'],
  )
  t.notOk(hasJoined(seenByB.view))
})

t.test('notify, block and unblock', async (t) => {
  const base = [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b)]
  const events: MembershipEvent[] = [
    ...base,
    { type: 'notify', sender: a, token: 'n1', message: payload('hello') },
    { type: 'block', sender: b, token: 'k1' },
    { type: 'block', sender: a, token: 'k2' },
    { type: 'block', sender: c, token: 'k3' },
  ]
  const { view, effects } = fold('b1', events)
  t.same(
    view.state.blocks.map((x) => x.token),
    ['k1', 'k2'],
    'a non-member cannot queue for the block',
  )
  t.equal(blockToRun(view)?.token, 'k1', 'b runs first')
  t.equal(blockToRun({ state: view.state, me: 'a1' }), undefined, 'a waits')
  t.same(effects.slice(-2), [
    { kind: 'notified', sender: a.node, message: payload('hello') },
    { kind: 'settled', token: 'n1' },
  ])
  const released = fold('b1', [...events, { type: 'unblock', sender: b, token: 'k1', message: payload('result') }])
  t.equal(blockToRun({ state: released.view.state, me: 'a1' })?.token, 'k2', 'then a')
  t.same(released.effects.slice(-2), [
    { kind: 'notified', sender: b.node, message: payload('result') },
    { kind: 'settled', token: 'k1' },
  ])
  const failed = fold('b1', [...events, { type: 'unblock', sender: b, token: 'k1', message: Buffer.alloc(0) }])
  t.same(failed.effects.slice(-1), [{ kind: 'settled', token: 'k1' }], 'a failed work releases the block with nothing to apply')
})

t.test('a notify of a node not (yet) a member is applied by nobody', async (t) => {
  // c sent it while joining (a format retried while the sheep start): had the members applied
  // it, c, which applies nothing before its own accept, would have missed what they did
  const events: MembershipEvent[] = [joinOf(a), acceptOf(a), joinOf(c), { type: 'notify', sender: c, token: 'n1', message: payload('format') }, acceptOf(c)]
  t.same(
    fold('a1', events).effects.filter((e) => e.kind === 'notified' || e.kind === 'settled'),
    [],
    'not by a member',
  )
  t.same(
    fold('c1', events).effects.filter((e) => e.kind === 'notified' || e.kind === 'settled'),
    [],
    'not by its sender',
  )
})

t.test("the master's duties", async (t) => {
  const { view } = fold('b1', [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b), joinOf(c)])
  const all = () => true
  t.equal(masterOf(view.state, all)?.instance, 'a1')
  t.notOk(isMaster(view, all))
  const aDead = (m: Member) => m.instance !== 'a1'
  t.ok(isMaster(view, aDead), 'the next live member takes over')
  t.same(
    deadInstances(view.state, aDead).map((m) => m.instance),
    ['a1'],
  )
  t.equal(joinToAnswer(view, aDead, new Set()), undefined, 'no join is answered while a member is dead')
  t.equal(joinToAnswer(view, all, new Set())?.instance, 'c1')
  t.equal(joinToAnswer(view, all, new Set(['c1'])), undefined, 'one answer at a time')
  // a joiner accepted after a cluster operation's result would never apply it (a format: the
  // joiner stayed waiting for one while the others ran)
  const blockedEvents: MembershipEvent[] = [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b), joinOf(c), { type: 'block', sender: b, token: 'k9' }]
  const blocked = fold('a1', blockedEvents)
  t.equal(joinToAnswer(blocked.view, all, new Set()), undefined, 'no join is answered while a cluster operation holds the block')
  const released = fold('a1', [...blockedEvents, { type: 'unblock', sender: b, token: 'k9', message: payload('result') }])
  t.equal(joinToAnswer(released.view, all, new Set())?.instance, 'c1', 'it is answered once the block is released')
  const first = fold('a1', [joinOf(a), joinOf(b)])
  t.equal(joinToAnswer(first.view, all, new Set())?.instance, 'a1', 'before its own accept the master answers only itself')
  t.notOk(isMaster({ state: first.view.state, me: 'b1' }, all), 'the first live joiner is the master')
  const twice = fold('a1', [joinOf(a), acceptOf(a), joinOf(b), acceptOf(b), joinOf(member(2, 'b2'))])
  t.equal(joinToAnswer(twice.view, all, new Set()), undefined, 'a new instance waits while its older one is a member')
})

// ---- the seeded simulation ------------------------------------------------------------------

interface SimMember {
  m: Member
  view: MemberView
  /** Log position read up to. */
  applied: number
  alive: boolean
  answering: Set<string>
  declared: Set<string>
  /** Effects with the log position of the event that caused them. */
  effects: Array<{ at: number; effect: MembershipEffect }>
  /** Position of its own accept. */
  acceptedAt: number | undefined
  pending: Set<string>
  finishedBlocks: Set<string>
  tokens: number
  refused?: boolean
}

const NODES = 5

function simulate(seed: number, steps: number): string | undefined {
  const random = seededRandom(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T
  const log: MembershipEvent[] = []
  const sims: SimMember[] = []
  const liveInstances = new Set<string>()
  const isLive = (x: Member) => liveInstances.has(x.instance)
  let instances = 0

  // a node of another cluster now and then: the master must refuse it
  const handlers = {
    checkJoin: (_joiner: SdNode, joinPayload: Buffer) => (joinPayload.toString().startsWith('foreign') ? 'another cluster' : undefined),
    decideJoin: (joiner: SdNode) => payload(`accept of ${joiner.port}`),
    accepted: () => undefined,
    left: () => undefined,
    notified: () => undefined,
  }
  const start = (port: number, mayBeForeign = true) => {
    const m = member(port, `n${port}.${++instances}`)
    // a joiner reads the log from the start (local driver) or from another member's snapshot (ZooKeeper)
    const source = random() < 0.5 ? pick(sims.filter((s) => s.alive)) : undefined
    const sim: SimMember = {
      m,
      view: { state: source ? source.view.state : emptyMembership(), me: m.instance },
      applied: source ? source.applied : 0,
      alive: true,
      answering: new Set(),
      declared: new Set(),
      effects: [],
      acceptedAt: undefined,
      pending: new Set(),
      finishedBlocks: new Set(),
      tokens: 0,
    }
    sims.push(sim)
    liveInstances.add(m.instance)
    log.push({ type: 'join', member: m, payload: payload(`${mayBeForeign && random() < 0.1 ? 'foreign' : 'join'} ${m.instance}`) })
  }

  const read = (s: SimMember, count: number) => {
    for (let i = 0; i < count && s.applied < log.length; i++) {
      const at = s.applied++
      const step = applyEvent(s.view, log[at] as MembershipEvent)
      s.view = step.view
      for (const effect of step.effects) {
        s.effects.push({ at, effect })
        if (effect.kind === 'accepted' && effect.self) s.acceptedAt = at
        if (effect.kind === 'settled') s.pending.delete(effect.token)
        if (effect.kind === 'refused') {
          // a refused sheep exits
          s.alive = false
          s.refused = true
          liveInstances.delete(s.m.instance)
        }
      }
      forgetApplied(s.answering, s.view.state.joining)
      forgetApplied(s.declared, [...s.view.state.members, ...s.view.state.joining])
    }
  }

  const duties = (s: SimMember) => {
    if (!isMaster(s.view, isLive)) return
    for (const dead of deadInstances(s.view.state, isLive)) {
      if (s.declared.has(dead.instance)) continue
      s.declared.add(dead.instance)
      log.push({ type: 'leave', member: dead })
    }
    const j = joinToAnswer(s.view, isLive, s.answering)
    if (!j) return
    s.answering.add(j.instance)
    log.push(answerToJoin(j, handlers))
  }

  const finishWork = (s: SimMember) => {
    const head = blockToRun(s.view)
    if (!head || s.finishedBlocks.has(head.token)) return
    s.finishedBlocks.add(head.token)
    log.push({ type: 'unblock', sender: s.m, token: head.token, message: random() < 0.8 ? payload(`work ${head.token}`) : Buffer.alloc(0) })
  }

  for (let port = 1; port <= 3; port++) start(port)
  for (let i = 0; i < steps; i++) {
    const live = sims.filter((s) => s.alive)
    const r = random()
    if (live.length === 0 || (r < 0.04 && live.length < NODES)) {
      const used = new Set(live.map((s) => s.m.node.port))
      const free = Array.from({ length: NODES }, (_, k) => k + 1).filter((p) => !used.has(p))
      start(pick(free))
      continue
    }
    const s = pick(live)
    if (r < 0.45) read(s, 1 + Math.floor(random() * 3))
    else if (r < 0.65) duties(s)
    else if (r < 0.72 && hasJoined(s.view)) {
      const token = `${s.m.instance}:${++s.tokens}`
      s.pending.add(token)
      log.push({ type: 'notify', sender: s.m, token, message: payload(`note ${token}`) })
    } else if (r < 0.78 && hasJoined(s.view)) {
      const token = `${s.m.instance}:${++s.tokens}`
      s.pending.add(token)
      log.push({ type: 'block', sender: s.m, token })
    } else if (r < 0.9) finishWork(s)
    else if (r < 0.93 && live.length > 1) {
      s.alive = false
      liveInstances.delete(s.m.instance)
    }
  }

  // quiesce: no more crashes; every live member reads everything and does its duties
  for (let round = 0; round < 1_000; round++) {
    // the last live node may have been refused: a node of this cluster starts
    if (!sims.some((x) => x.alive)) start(1, false)
    const before = log.length
    for (const s of sims.filter((x) => x.alive)) {
      read(s, Number.POSITIVE_INFINITY)
      duties(s)
      finishWork(s)
    }
    if (log.length === before && sims.some((x) => x.alive) && sims.every((x) => !x.alive || x.applied === log.length)) break
  }

  const live = sims.filter((s) => s.alive)
  const reference = fold('nobody', log).view.state
  for (const s of live) {
    if (s.applied !== log.length) return `${s.m.instance} did not reach the end of the log`
    if (!isDeepStrictEqual(s.view.state, reference)) return `${s.m.instance} holds a different state`
    if (!hasJoined(s.view)) return `${s.m.instance} was never accepted`
    if (s.pending.size > 0) return `${s.m.instance} still waits for ${[...s.pending].join(', ')}`
    if (s.effects.some((e) => e.effect.kind === 'removed')) return `${s.m.instance} was declared gone while alive`
  }
  if (sims.some((s) => s.refused && !s.view.state.members.every((m) => m.instance !== s.m.instance))) return 'a refused node became a member'
  if (reference.members.some((m) => sims.find((s) => s.m.instance === m.instance)?.refused)) return 'a refused node is a member'
  if (sims.some((s) => s.alive && s.view.state.joining.some((j) => j.payload.toString().startsWith('foreign')))) return 'a foreign join is still pending'
  if (reference.joining.length > 0) return `joins left unanswered: ${reference.joining.map((j) => j.instance).join(', ')}`
  if (reference.blocks.length > 0) return 'blocks left queued'
  if (reference.members.some((m) => !liveInstances.has(m.instance))) return 'a dead instance is still a member'
  const ports = reference.members.map((m) => m.node.port)
  if (new Set(ports).size !== ports.length) return 'a node is a member twice'
  // from the later of two members' accepts on, both saw the same effects
  const shown = (e: MembershipEffect) => inspect(e.kind === 'accepted' ? { ...e, self: undefined } : e, { depth: 5 })
  for (const x of live) {
    for (const y of live) {
      const from = Math.max(x.acceptedAt ?? 0, y.acceptedAt ?? 0)
      const ex = x.effects.filter((e) => e.at > from && e.effect.kind !== 'settled').map((e) => shown(e.effect))
      const ey = y.effects.filter((e) => e.at > from && e.effect.kind !== 'settled').map((e) => shown(e.effect))
      if (!isDeepStrictEqual(ex, ey)) return `${x.m.instance} and ${y.m.instance} saw different effects`
    }
  }
  return undefined
}

t.test('seeded random interleavings: every live member reaches the same state', async (t) => {
  const seeds = 300
  const failures: string[] = []
  for (let seed = 1; seed <= seeds; seed++) {
    const failure = simulate(seed, 400)
    if (failure) failures.push(`seed ${seed}: ${failure}`)
  }
  t.same(failures, [], `${seeds} seeds`)
})

t.test('refuse: the joiner is told why and never becomes a member; the others see nothing', async (t) => {
  const events: MembershipEvent[] = [joinOf(a), acceptOf(a), joinOf(b), { type: 'refuse', joiner: b, reason: 'another cluster' }]
  const seenByB = fold('b1', events)
  t.same(seenByB.effects, [{ kind: 'refused', reason: 'another cluster' }])
  t.same(seenByB.view.state.joining, [])
  t.notOk(hasJoined(seenByB.view))
  const seenByA = fold('a1', events)
  t.same(
    seenByA.effects.map((e) => e.kind),
    ['accepted'],
  )
  const answer = answerToJoin(
    { ...b, payload: payload('x') },
    {
      checkJoin: () => 'no',
      decideJoin: () => payload('never'),
      accepted: () => undefined,
      left: () => undefined,
      notified: () => undefined,
    },
  )
  t.same(answer, { type: 'refuse', joiner: b, reason: 'no' }, 'a check that says why refuses')
})
