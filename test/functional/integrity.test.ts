// End-to-end integrity on 3 real sheep with copies=3 (issue 16, docs/integrity.md): a replica
// with 4 KiB flipped, one truncated and one deleted by hand are never served — every read
// through every node returns the written bytes — the mismatch counter rises and each bad
// replica is rewritten in the background (read-repair); with all three replicas corrupt a read
// fails with EIO instead of returning garbage; a node killed with SIGKILL in the middle of
// writes comes back without any false corruption; and a store whose checksums were deleted (as
// a directory the original wrote) gets them from the scrubber, which also rewrites the one
// replica that disagrees with the majority.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { startCluster, waitForRecovery, type TestCluster } from '../../harness/cluster.js'
import { dog, freePort, isAlive, waitFor } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 16 * MiB
const DATA_SIZE = 12 * MiB
const NODES = 3
const REPAIR_WAIT_MS = 20_000

function replicaFile(cluster: TestCluster, node: number, oid: string): string {
  return path.join(cluster.root, `n${node}`, 'obj', oid)
}

function sha1(file: string): string {
  return crypto.createHash('sha1').update(fs.readFileSync(file)).digest('hex')
}

/** Overwrites `length` bytes of a file at `at` with random ones, behind the sheep's back. */
function scribble(file: string, at: number, length: number): void {
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, crypto.randomBytes(length), 0, length, at)
  fs.closeSync(fd)
}

/** Every replica of `oid` is back and identical. */
function replicasAgree(cluster: TestCluster, oid: string): boolean {
  const files = Array.from({ length: NODES }, (_, i) => replicaFile(cluster, i, oid))
  if (!files.every((f) => fs.existsSync(f))) return false
  return new Set(files.map(sha1)).size === 1
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

function mismatchLines(cluster: TestCluster, node: number): number {
  const log = fs.readFileSync(path.join(cluster.root, `n${node}`, 'sheep.log'), 'utf8')
  return log.split('\n').filter((l) => l.includes('checksum mismatch')).length
}

t.test('corrupt replicas are never served, and repaired', async (t) => {
  const cluster = await startCluster(NODES, { start: 0 })
  t.teardown(() => cluster.close())
  const metricsPorts: number[] = []
  const argsOf = (i: number) => ['--metrics', `127.0.0.1:${metricsPorts[i]}`]
  for (let i = 0; i < NODES; i++) {
    metricsPorts.push(await freePort())
    await cluster.start(i, argsOf(i))
  }
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '3'], { port })).status, 0, 'formatted with 3 copies')
  const created = await dog(['vdi', 'create', '-v', '-r', 'disk', String(VDI_SIZE)], { port })
  t.equal(created.status, 0, created.stderr)
  const vid = created.stdout.trim().padStart(6, '0')
  const dataOid = (idx: number) => `00${vid}${idx.toString(16).padStart(8, '0')}`
  const image = Buffer.alloc(VDI_SIZE)
  crypto.randomBytes(DATA_SIZE).copy(image)
  t.equal((await dog(['vdi', 'write', 'disk', '0', String(DATA_SIZE)], { port, input: image.subarray(0, DATA_SIZE) })).status, 0)

  /** Reads the whole VDI through node `i`; true when it is exactly the image. */
  const readsBack = async (i: number): Promise<boolean> => {
    const r = await dog(['vdi', 'read', 'disk'], { port: cluster.ports[i] })
    return r.status === 0 && r.stdoutBytes.equals(image)
  }
  const readEverywhere = async (t: Test, rounds: number, what: string) => {
    let good = 0
    for (let round = 0; round < rounds; round++) for (let i = 0; i < NODES; i++) if (await readsBack(i)) good++
    t.equal(good, rounds * NODES, `${what}: every read through every node returns the written bytes`)
  }

  await t.test('4 KiB flipped in one replica', async (t) => {
    const before = await metric(metricsPorts[1] as number, 'sheepdog_checksum_mismatches_total')
    scribble(replicaFile(cluster, 1, dataOid(0)), MiB, 4096)
    await readEverywhere(t, 3, 'flipped')
    t.ok((await metric(metricsPorts[1] as number, 'sheepdog_checksum_mismatches_total')) > before, 'the mismatch counter rose')
    t.ok(await waitFor(() => replicasAgree(cluster, dataOid(0)), REPAIR_WAIT_MS), 'the replica was rewritten in the background')
    t.ok((await metric(metricsPorts[1] as number, 'sheepdog_read_repairs_total')) >= 1, 'the repair counter rose')
    t.match(fs.readFileSync(path.join(cluster.root, 'n1', 'sheep.log'), 'utf8'), /read-repair: [0-9a-f]{16} rewritten from/, 'a log line says so')
  })

  await t.test('one replica truncated, one deleted', async (t) => {
    fs.truncateSync(replicaFile(cluster, 2, dataOid(1)), MiB)
    fs.rmSync(replicaFile(cluster, 0, dataOid(2)))
    await readEverywhere(t, 1, 'truncated and deleted')
    t.ok(await waitFor(() => replicasAgree(cluster, dataOid(1)), REPAIR_WAIT_MS), 'the truncated replica was rewritten')
    t.ok(await waitFor(() => replicasAgree(cluster, dataOid(2)), REPAIR_WAIT_MS), 'the deleted replica was rewritten')
  })

  await t.test('a node killed during writes comes back without false corruption', async (t) => {
    const mismatchesBefore = Array.from({ length: NODES }, (_, i) => mismatchLines(cluster, i))
    const fresh = crypto.randomBytes(8 * MiB)
    fresh.copy(image)
    const writing = dog(['vdi', 'write', 'disk', '0', String(fresh.length)], { port, input: fresh })
    await new Promise((r) => setTimeout(r, 300))
    await cluster.stop(2, 'SIGKILL')
    t.equal((await writing).status, 0, 'the write went on without the killed node')
    await cluster.start(2, argsOf(2))
    t.ok(await waitForRecovery(cluster), 'recovered')
    await readEverywhere(t, 1, 'after the kill')
    t.same(
      Array.from({ length: NODES }, (_, i) => mismatchLines(cluster, i)),
      mismatchesBefore,
      'no node reported a checksum mismatch',
    )
    t.equal(await metric(metricsPorts[2] as number, 'sheepdog_checksum_mismatches_total'), 0, 'the restarted node counted none')
  })

  await t.test('all three replicas corrupt: EIO, never garbage', async (t) => {
    for (let i = 0; i < NODES; i++) scribble(replicaFile(cluster, i, dataOid(2)), 2 * MiB, 4096)
    const r = await dog(['vdi', 'read', 'disk', String(8 * MiB + 2 * MiB), '4096'], { port })
    t.not(r.status, 0, 'the read fails')
    t.equal(r.stdoutBytes.length, 0, 'no byte is printed')
    t.match(r.stderr, /Failed to read VDI/)
    // a whole object written again is good again
    t.equal((await dog(['vdi', 'write', 'disk', String(8 * MiB), String(4 * MiB)], { port, input: image.subarray(8 * MiB, 12 * MiB) })).status, 0)
    await readEverywhere(t, 1, 'rewritten')
  })

  await t.test('a store without checksums gets them from the scrubber', async (t) => {
    // all at once, so the restart is no membership change (no recovery rewrites the objects)
    t.equal((await dog(['cluster', 'shutdown'], { port })).status, 0, 'shut down')
    t.ok(await waitFor(() => cluster.nodes.every((n) => n === undefined || !isAlive(n.pid)), 20_000), 'every sheep stopped')
    for (let i = 0; i < NODES; i++) await cluster.stop(i)
    for (let i = 0; i < NODES; i++) fs.rmSync(path.join(cluster.root, `n${i}`, 'obj', '.csum'), { recursive: true, force: true })
    // one replica that differs from the two others: the majority must win
    scribble(replicaFile(cluster, 1, dataOid(0)), 3 * MiB, 4096)
    await Promise.all(Array.from({ length: NODES }, (_, i) => cluster.start(i, [...argsOf(i), '--scrub', 'rate=1000'])))
    t.ok(await waitFor(async () => (await dog(['cluster', 'info'], { port })).stdout.includes('running'), 20_000), 'the cluster is back')
    const start = await dog(['cluster', 'scrub', 'start'], { port })
    t.equal(start.status, 0, start.stderr)
    let status = ''
    t.ok(
      await waitFor(async () => {
        status = (await dog(['cluster', 'scrub', 'status', '-r'], { port })).stdout
        return status.split('\n').filter((l) => / done /.test(l)).length === NODES
      }, 30_000),
      'every node finished its scrub',
    )
    const rows = status
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
    // raw rows: id node state done total bytes corrupt repaired checksummed unverified
    t.ok(
      rows.some((r) => Number(r[7]) >= 1),
      'a node found its replica outvoted and repaired it',
    )
    t.ok(
      rows.every((r) => Number(r[8]) > 0),
      'every node gave objects checksums',
    )
    t.ok(replicasAgree(cluster, dataOid(0)), 'the replica that disagreed was rewritten from the majority')
    // a table reaches its file when the object's intent mark is cleaned (idle 2 s), not at once
    t.ok(await waitFor(() => fs.existsSync(path.join(cluster.root, 'n2', 'obj', '.csum', dataOid(1))), 10_000), 'checksum files are back')
    // protected now: a flip is caught
    scribble(replicaFile(cluster, 2, dataOid(1)), 0, 4096)
    t.ok(await readsBack(2), 'a flip after the scrub is not served')
    t.ok(await waitFor(() => replicasAgree(cluster, dataOid(1)), REPAIR_WAIT_MS), 'and is repaired')
  })
})
