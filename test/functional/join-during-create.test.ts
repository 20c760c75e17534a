// A VDI created while a node joins must not vanish (issue: copies=1, one node, `dog vdi create`
// while a second sheep starts; afterwards both nodes answered "No object found" for the inode).
// Creates run back to back while the second node joins at a different moment in each round;
// every create that dog acknowledged must then be listed and readable through both nodes, and
// every object must be on exactly one node — the one the ring says.
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import { makeFs } from '../../lib/sheep-api.js'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog } from '../../harness/sheep.js'

/** When the second node starts, after the creates began, in each round. */
const JOIN_DELAYS_MS = [0, 400]
/** Enough that the creates still run when the second node (about a second to start) joins. */
const CREATES_PER_ROUND = 12

for (const delayMs of JOIN_DELAYS_MS) {
  t.test(`copies=1: a node joins ${delayMs} ms into a run of creates`, async (t) => {
    const cluster = await startCluster(2, { start: 1 })
    t.teardown(() => cluster.close())
    const port = (i: number) => cluster.ports[i] as number
    await makeFs(cluster.conn(0), { ctime: BigInt(Math.floor(Date.now() / 1000)) << 32n, copies: 1, flags: SD_CLUSTER_FLAG_AUTO_VNODES, store: 'plain' })
    const created: string[] = []
    const creates = (async () => {
      for (let k = 0; k < CREATES_PER_ROUND; k++) {
        const name = `v${k}`
        const r = await dog(['vdi', 'create', name, '4G'], { port: port(0) })
        if (r.status === 0) created.push(name)
        else t.comment(`create ${name}: ${r.status} ${r.stderr.trim()}`)
      }
    })()
    await new Promise((r) => setTimeout(r, delayMs))
    await cluster.start(1)
    const joinedAfter = created.length
    await creates
    t.ok(joinedAfter < created.length, `the join came during the creates (after ${joinedAfter})`)
    t.ok(created.length > 0, `${created.length} of ${CREATES_PER_ROUND} creates acknowledged`)
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    for (const i of [0, 1]) {
      const list = await dog(['vdi', 'list', '-r'], { port: port(i) })
      const listed = new Set(list.stdout.split('\n').map((line) => line.split(' ')[1]))
      t.same(
        created.filter((name) => !listed.has(name)),
        [],
        `node ${i} lists every acknowledged VDI`,
      )
      for (const name of created) {
        const r = await dog(['vdi', 'read', name, '0', '512'], { port: port(i) })
        t.equal(r.status, 0, `${name} readable through node ${i}${r.status === 0 ? '' : `: ${r.stderr.trim()}`}`)
      }
    }
    t.same(
      [...objectCopies(cluster)].filter(([, n]) => n !== 1),
      [],
      'every object on exactly one node',
    )
  })
}
