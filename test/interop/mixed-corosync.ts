// Mixed cluster on one corosync group: original C sheep and ours together (issue 14). Not a
// CI test — it needs the original built with corosync — but a script run by hand:
//
//   npm run -s build && npx tsx test/interop/mixed-corosync.ts /path/to/original/sheep/sheep
//
// One real corosync on loopback (test/helpers/corosync.ts). Two original sheep form the
// cluster and accept one of ours; format; VDI create, snapshot and delete through either kind;
// writes and reads through either kind of gateway; node loss and rejoin in either direction;
// a rolling replacement (each original node stopped and ours started on its directory and
// port) while a writer keeps writing through a gateway, every acknowledged byte checked on
// every node afterwards; and finally an original sheep accepted by a cluster of ours alone.
// Prints one line per check; exits 1 if any failed. Stops only what it started, by pid.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { SheepConnection } from '../../lib/client.js'
import { SD_RES_SUCCESS } from '../../lib/proto.js'
import { getNodeList, statClusterProbe, statRecovery } from '../../lib/sheep-api.js'
import { VdiHandle } from '../../lib/vdi-io.js'
import { type SheepProcess, dog, isAlive, startSheep, stopSheep, tempDir, waitFor } from '../../harness/sheep.js'
import { corosyncUnavailable, startCorosync } from '../helpers/corosync.js'

const MiB = 1024 * 1024
const VDI_SIZE = 64 * MiB
const DRIVER_ARGS = ['-c', 'corosync', '-b', '127.0.0.1', '-y', '127.0.0.1']
const MEMBERSHIP_TIMEOUT_MS = 30_000
const RECOVERY_TIMEOUT_MS = 180_000
/** The writer's pieces: small and unaligned, so objects are written in part. */
const WRITE_MAX_BYTES = 96 * 1024

type Kind = 'original' | 'ours'

interface Node {
  name: string
  kind: Kind
  dir: string
  port: number
  /** Its own zone: every node advertises 127.0.0.1, from which both kinds would derive one zone. */
  zone: number
  proc: SheepProcess | undefined
}

const started = Date.now()
let failures = 0

function log(line: string): void {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6)
  console.log(`[${s}s] ${line}`)
}

function check(ok: boolean, what: string): boolean {
  log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  if (!ok) failures++
  return ok
}

const conns = new Map<number, SheepConnection>()
function conn(n: Node): SheepConnection {
  let c = conns.get(n.port)
  if (!c) {
    c = new SheepConnection({ host: '127.0.0.1', port: n.port }, { timeoutMs: 60_000 })
    conns.set(n.port, c)
  }
  return c
}
function dropConn(n: Node): void {
  conns.get(n.port)?.close()
  conns.delete(n.port)
}

async function start(n: Node, originalBin: string): Promise<void> {
  const args = [...DRIVER_ARGS, '-z', String(n.zone)]
  n.proc = await startSheep({ dir: n.dir, port: n.port, args, bin: n.kind === 'original' ? originalBin : undefined })
  log(`started ${n.name} (${n.kind}) on port ${n.port}, pid ${n.proc.pid}`)
}

async function stop(n: Node, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  dropConn(n)
  if (n.proc) await stopSheep(n.proc, signal)
  log(`stopped ${n.name} (${n.kind}) with ${signal}`)
  n.proc = undefined
}

async function members(n: Node): Promise<{ count: number; epoch: number }> {
  try {
    const l = await getNodeList(conn(n))
    return { count: l.nodes.length, epoch: l.epoch }
  } catch {
    return { count: -1, epoch: -1 }
  }
}

/** Every running node lists `count` members at one epoch (0 only before the format). */
async function agree(nodes: Node[], count: number, formatted = true): Promise<boolean> {
  const running = nodes.filter((n) => n.proc)
  return waitFor(
    async () => {
      const views = await Promise.all(running.map(members))
      return views.every((v) => v.count === count && v.epoch === views[0]!.epoch && (v.epoch > 0 || !formatted))
    },
    MEMBERSHIP_TIMEOUT_MS,
    200,
  )
}

async function epochs(nodes: Node[]): Promise<string> {
  const views = await Promise.all(nodes.filter((n) => n.proc).map(async (n) => `${n.name}:${(await members(n)).epoch}`))
  return views.join(' ')
}

/** Recovery finished everywhere, twice in a row (as harness/cluster.ts waitForRecovery). */
async function settled(nodes: Node[]): Promise<boolean> {
  let once = false
  const unsettled = () => {
    once = false
    return false
  }
  return waitFor(
    async () => {
      const seen = new Set<number>()
      for (const n of nodes.filter((x) => x.proc)) {
        try {
          if ((await statRecovery(conn(n))).inRecovery) return unsettled()
          seen.add((await getNodeList(conn(n))).epoch)
        } catch {
          return unsettled()
        }
      }
      if (seen.size !== 1) return unsettled()
      if (once) return true
      once = true
      return false
    },
    RECOVERY_TIMEOUT_MS,
    500,
  )
}

async function readVdi(n: Node, name: string, selector: { snapid?: number; tag?: string } = {}): Promise<Buffer> {
  return (await VdiHandle.open(conn(n), name, selector)).read(0, VDI_SIZE)
}

async function dogOk(args: string[], via: Node, what: string): Promise<string> {
  const r = await dog(args, { port: via.port })
  check(r.status === 0, `${what} (dog ${args.join(' ')} via ${via.name}, ${via.kind})${r.status === 0 ? '' : `: ${r.stderr.trim()}`}`)
  return r.stdout
}

/** Lists of VDIs (name, snapshot flag) as every running node answers `dog vdi list -r`. */
async function vdiListsAgree(nodes: Node[], expect: RegExp[], reject: RegExp[], what: string): Promise<void> {
  for (const n of nodes.filter((x) => x.proc)) {
    const out = (await dog(['vdi', 'list', '-r'], { port: n.port })).stdout
    const ok = expect.every((e) => e.test(out)) && !reject.some((r) => r.test(out))
    check(ok, `${what}: vdi list via ${n.name} (${n.kind})${ok ? '' : `\n${out}`}`)
  }
}

/**
 * Writes random pieces at random offsets through one gateway, one at a time, until stopped; a
 * piece that fails is written again until it is acknowledged, so `shadow` is exactly what the
 * VDI must hold.
 */
function startWriter(via: () => Node, name: string, shadow: Buffer): { stop(): Promise<{ acked: number; retried: number }> } {
  let running = true
  let acked = 0
  let retried = 0
  const loop = (async () => {
    while (running) {
      const length = 512 + crypto.randomInt(WRITE_MAX_BYTES - 512)
      const offset = crypto.randomInt(VDI_SIZE - length)
      const data = crypto.randomBytes(length)
      for (;;) {
        try {
          await (await VdiHandle.open(conn(via()), name)).write(offset, data)
          break
        } catch {
          retried++
          dropConn(via())
          await new Promise((r) => setTimeout(r, 200))
        }
      }
      data.copy(shadow, offset)
      acked++
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return { acked, retried }
    },
  }
}

async function main(): Promise<void> {
  const originalBin = process.argv[2]
  if (!originalBin || !fs.existsSync(originalBin)) {
    console.error('usage: npx tsx test/interop/mixed-corosync.ts ORIGINAL_SHEEP_BINARY')
    process.exit(64)
  }
  const why = corosyncUnavailable()
  if (why) {
    console.error(`cannot run: ${why}`)
    process.exit(1)
  }
  const version = fs.readFileSync(originalBin).includes(Buffer.from('corosync')) ? 'with corosync' : 'WITHOUT corosync?'
  log(`original sheep: ${originalBin} (${version}); ours: bin/sheep of ${path.resolve(import.meta.dirname, '../..')}`)
  const root = tempDir('sheep-mixed-')
  const corosync = await startCorosync({ dir: path.join(root, 'corosync') })
  log(`corosync on loopback, pid ${corosync.pid}`)
  const { freePort } = await import('../../harness/sheep.js')
  let zones = 0
  const node = async (name: string, kind: Kind): Promise<Node> => ({
    name,
    kind,
    dir: path.join(root, name),
    port: await freePort(),
    zone: ++zones,
    proc: undefined,
  })
  const o1 = await node('o1', 'original')
  const o2 = await node('o2', 'original')
  const n1 = await node('n1', 'ours')
  const all = [o1, o2, n1]
  const everyone: Node[] = [...all]
  try {
    // ---- an original cluster accepts one of ours -------------------------------------------------
    log('== original sheep form the group; ours joins')
    await start(o1, originalBin)
    await start(o2, originalBin)
    await start(n1, originalBin)
    check(await agree(all, 3, false), `3 members everywhere, before the format (${await epochs(all)})`)
    await dogOk(['cluster', 'format', '-c', '2'], o1, 'format through an original')
    check(await agree(all, 3), `every node formatted at one epoch (${await epochs(all)})`)
    const info = await dog(['cluster', 'info'], { port: n1.port })
    check(/running|OK/i.test(info.stdout), `ours says the cluster runs: ${info.stdout.split('\n')[0]}`)

    // ---- VDI operations both ways ----------------------------------------------------------------
    log('== VDIs: create, write, read, snapshot, delete through either kind')
    await dogOk(['vdi', 'create', 'alpha', '64M'], n1, 'create alpha through ours')
    await dogOk(['vdi', 'create', 'beta', '64M'], o1, 'create beta through an original')
    await vdiListsAgree(all, [/^= alpha 0 /m, /^= beta 0 /m], [], 'both VDIs known everywhere')
    const alpha = Buffer.alloc(VDI_SIZE)
    const beta = Buffer.alloc(VDI_SIZE)
    const a1 = crypto.randomBytes(8 * MiB)
    await (await VdiHandle.open(conn(o2), 'alpha')).write(4 * MiB, a1)
    a1.copy(alpha, 4 * MiB)
    check((await readVdi(n1, 'alpha')).equals(alpha), 'alpha written through an original gateway, read through ours')
    const b1 = crypto.randomBytes(8 * MiB)
    await (await VdiHandle.open(conn(n1), 'beta')).write(20 * MiB + 333, b1)
    b1.copy(beta, 20 * MiB + 333)
    check((await readVdi(o1, 'beta')).equals(beta), 'beta written through ours, read through an original')
    check((await readVdi(o2, 'beta')).equals(beta), 'and through the other original')

    await dogOk(['vdi', 'snapshot', '-s', 'snap-a', 'alpha'], o1, 'snapshot of alpha through an original')
    await dogOk(['vdi', 'snapshot', '-s', 'snap-b', 'beta'], n1, 'snapshot of beta through ours')
    await vdiListsAgree(
      all,
      [/^s alpha 1 \d+ \d+ \d+ \d+ \w+ 2 snap-a /m, /^s beta 1 .* snap-b /m, /^= alpha 0 /m, /^= beta 0 /m],
      [],
      'snapshots and new working VDIs everywhere',
    )
    const a2 = crypto.randomBytes(MiB)
    await (await VdiHandle.open(conn(n1), 'alpha')).write(4 * MiB, a2)
    const alphaSnap = Buffer.from(alpha)
    a2.copy(alpha, 4 * MiB)
    check((await readVdi(o1, 'alpha', { tag: 'snap-a' })).equals(alphaSnap), 'the snapshot keeps the old data (read through an original)')
    check((await readVdi(o2, 'alpha')).equals(alpha), 'the working VDI has the new data (copy-on-write through ours, read through an original)')

    await dogOk(['vdi', 'create', 'gamma', '16M'], o2, 'create gamma through an original')
    await dogOk(['vdi', 'delete', 'gamma'], n1, 'delete gamma through ours')
    await dogOk(['vdi', 'create', 'delta', '16M'], n1, 'create delta through ours')
    await dogOk(['vdi', 'delete', 'delta'], o1, 'delete delta through an original')
    await vdiListsAgree(all, [/^= alpha 0 /m, /^s alpha 1 /m], [/ gamma /, / delta /], 'deleted VDIs are gone everywhere')
    await dogOk(['vdi', 'create', 'gamma', '16M'], n1, 'a name deleted can be created again')

    // ---- node loss and recovery in either direction -------------------------------------------------
    log('== node loss: an original killed, then ours killed')
    await stop(o2, 'SIGKILL')
    check(await agree(all, 2), `the original node left (${await epochs(all)})`)
    check(await settled(all), 'recovery settled on the survivors (one original, ours)')
    check((await readVdi(n1, 'alpha')).equals(alpha), 'alpha whole through ours')
    check((await readVdi(o1, 'beta')).equals(beta), 'beta whole through the original')
    const a3 = crypto.randomBytes(2 * MiB)
    await (await VdiHandle.open(conn(o1), 'alpha')).write(40 * MiB, a3)
    a3.copy(alpha, 40 * MiB)
    await start(o2, originalBin)
    check(await agree(all, 3), `the original rejoined (${await epochs(all)})`)
    check(await settled(all), 'recovery settled')
    check((await readVdi(o2, 'alpha')).equals(alpha), 'the rejoined original serves what was written while it was away')

    await stop(n1, 'SIGKILL')
    check(await agree(all, 2), `ours left (${await epochs(all)})`)
    check(await settled(all), 'recovery settled on the two originals')
    const b2 = crypto.randomBytes(2 * MiB)
    await (await VdiHandle.open(conn(o2), 'beta')).write(50 * MiB, b2)
    b2.copy(beta, 50 * MiB)
    await start(n1, originalBin)
    check(await agree(all, 3), `ours rejoined, accepted by an original (${await epochs(all)})`)
    check(await settled(all), 'recovery settled')
    check((await readVdi(n1, 'beta')).equals(beta), 'ours serves what was written while it was away')

    // ---- rolling replacement ------------------------------------------------------------------------
    log('== rolling replacement under a writer')
    // the writer's gateway is the other original while o1 is replaced, then the new o1 (ours)
    let gateway = o2
    const writer = startWriter(() => gateway, 'alpha', alpha)
    for (const [old, next] of [
      [o1, o2],
      [o2, o1],
    ] as const) {
      gateway = next
      log(`writer's gateway: ${gateway.name} (${gateway.kind})`)
      await new Promise((r) => setTimeout(r, 3_000))
      await stop(old)
      check(await agree(all, 2), `${old.name} left (${await epochs(all)})`)
      old.kind = 'ours'
      await start(old, originalBin)
      check(await agree(all, 3), `ours runs on ${old.name}'s directory and joined (${await epochs(all)})`)
      check(await settled(all), 'recovery settled')
    }
    await new Promise((r) => setTimeout(r, 3_000))
    const written = await writer.stop()
    log(`writer: ${written.acked} writes acknowledged, ${written.retried} retried`)
    for (const n of all) check((await readVdi(n, 'alpha')).equals(alpha), `every acknowledged byte of alpha, read through ${n.name} (${n.kind})`)
    for (const n of all) check((await readVdi(n, 'beta')).equals(beta), `beta intact, read through ${n.name}`)
    check((await readVdi(o2, 'alpha', { tag: 'snap-a' })).equals(alphaSnap), 'the snapshot intact')
    const checkOut = await dog(['vdi', 'check', 'alpha'], { port: o1.port })
    check(checkOut.status === 0, `dog vdi check alpha: ${checkOut.stdout.trim().split('\n').slice(-1)[0] ?? ''}`)

    // ---- ours accept an original --------------------------------------------------------------------
    log('== a cluster of ours accepts an original sheep')
    const o3 = await node('o3', 'original')
    everyone.push(o3)
    const four = [...all, o3]
    await start(o3, originalBin)
    check(await agree(four, 4), `the original joined a cluster of ours (${await epochs(four)})`)
    check(await settled(four), 'recovery settled')
    check((await readVdi(o3, 'alpha')).equals(alpha), 'the original serves alpha')
    await dogOk(['vdi', 'create', 'epsilon', '16M'], o3, 'create through the original')
    await vdiListsAgree(four, [/^= epsilon 0 /m], [], 'known everywhere')
    await stop(o3, 'SIGKILL')
    check(await agree(all, 3), `the original killed, ours go on (${await epochs(all)})`)
    check(await settled(all), 'recovery settled')
    check((await readVdi(n1, 'alpha')).equals(alpha), 'alpha whole')
    const probe = await statClusterProbe(conn(n1))
    check(probe?.result === SD_RES_SUCCESS, 'the cluster runs')
  } finally {
    for (const c of conns.values()) c.close()
    for (const n of everyone) if (n.proc && isAlive(n.proc.pid)) await stop(n)
    await corosync.close()
    if (failures === 0 && !process.env.KEEP) fs.rmSync(root, { recursive: true, force: true })
    else log(`files kept in ${root}`)
  }
  log(failures === 0 ? 'PASS: every check passed' : `FAILED: ${failures} check(s)`)
  process.exit(failures === 0 ? 0 : 1)
}

main().catch((e: unknown) => {
  console.error(e)
  process.exit(1)
})
