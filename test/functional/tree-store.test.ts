// The tree store (`dog cluster format -b tree`, the original's tree_store.c): inodes under
// obj/meta/, data objects under obj/<low byte of the vid>/; a restarted sheep finds its objects
// there, a new node takes the cluster's store when it joins and recovers into the same layout,
// a format with the other store switches the layout, and an unknown store name prints the
// original's failure and the list of stores.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog, waitFor } from '../../harness/sheep.js'
import { getNodeList } from '../../lib/sheep-api.js'

const MiB = 1024 * 1024
const OID_FILE = /^[0-9a-f]{16}$/

/** Object files of a node's obj/, by the sub-directory they are in ('' for the top). */
function objectFiles(dir: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const walk = (sub: string) => {
    for (const entry of fs.readdirSync(path.join(dir, sub), { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue
      if (entry.isDirectory()) walk(path.join(sub, entry.name))
      else if (OID_FILE.test(entry.name)) out.set(sub, [...(out.get(sub) ?? []), entry.name])
    }
  }
  walk('')
  return out
}

t.test('format -b tree: the tree layout through create, restart, a join and recovery; format -b plain switches back', async (t) => {
  const cluster = await startCluster(3, { start: 2 })
  t.teardown(() => cluster.close())
  const port = (i: number) => cluster.ports[i] as number
  const objDir = (i: number) => path.join(cluster.nodes[i]?.dir ?? cluster.root, 'obj')

  const bad = await dog(['cluster', 'format', '-b', 'nosuch', '-c', '2'], { port: port(0) })
  t.equal(bad.status, 2, 'an unknown store fails as the original (exit 2)')
  t.equal(bad.stdout, `using backend nosuch store\nAvailable stores:\n${'-'.repeat(39)}\ntree plain \n`, 'and lists the stores')
  t.equal(bad.stderr, 'Format failed: Targeted backend store is not found\n')

  const fmt = await dog(['cluster', 'format', '-b', 'tree', '-c', '2'], { port: port(0) })
  t.equal(fmt.status, 0)
  t.equal(fmt.stdout, 'using backend tree store\n')
  t.equal((await dog(['vdi', 'create', 'v', '24M'], { port: port(0) })).status, 0)
  const data = crypto.randomBytes(24 * MiB)
  t.equal((await dog(['vdi', 'write', 'v'], { port: port(0), input: data })).status, 0, 'data written')
  const inode = objectFiles(objDir(0)).get('meta')?.[0] ?? ''
  t.match(inode, /^80[0-9a-f]{6}00000000$/, 'node 0: the inode is under meta/')
  const dataDir = inode.slice(6, 8)
  for (const i of [0, 1]) {
    const files = objectFiles(objDir(i))
    t.same(files.get('meta'), [inode], `node ${i}: the inode and nothing else under meta/`)
    t.equal(files.get(dataDir)?.length, 6, `node ${i}: the six data objects are under ${dataDir}/, the low byte of the vid`)
    t.notOk(files.has(''), `node ${i}: nothing at the top of obj/`)
  }

  await cluster.stop(1)
  await cluster.start(1)
  t.ok(await waitForRecovery(cluster), 'node 1 restarted and the cluster settled')
  t.equal(objectFiles(objDir(1)).get(dataDir)?.length, 6, 'the restarted node finds its objects where it left them')
  await cluster.stop(0)
  const r1 = await dog(['vdi', 'read', 'v'], { port: port(1) })
  t.ok(r1.status === 0 && r1.stdoutBytes.equals(data), 'the restarted node serves every byte alone')

  await cluster.start(2)
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(1))).nodes.length === 2, 20_000), 'a new node joins')
  t.ok(await waitForRecovery(cluster), 'and recovery settles')
  const files2 = objectFiles(objDir(2))
  t.equal(files2.get(dataDir)?.length, 6, 'the new node took the tree store: its data objects are under their directory')
  t.equal(files2.get('meta')?.length, 1, 'and the inode under meta/')
  await cluster.stop(1)
  const r2 = await dog(['vdi', 'read', 'v'], { port: port(2) })
  t.ok(r2.status === 0 && r2.stdoutBytes.equals(data), 'the new node serves every byte alone')

  t.equal(
    (await dog(['cluster', 'format', '-b', 'plain', '-c', '1'], { port: port(2), input: 'yes\n' })).status,
    0,
    'format with the plain store (the cluster is not empty: yes)',
  )
  t.equal((await dog(['vdi', 'create', 'p', '8M'], { port: port(2) })).status, 0)
  const plain = crypto.randomBytes(8 * MiB)
  t.equal((await dog(['vdi', 'write', 'p'], { port: port(2), input: plain })).status, 0)
  const after = objectFiles(objDir(2))
  t.same([...after.keys()], [''], 'every object at the top of obj/ now, the tree objects gone')
  t.equal(after.get('')?.length, 3, 'the inode and two data objects')
  const r3 = await dog(['vdi', 'read', 'p'], { port: port(2) })
  t.ok(r3.status === 0 && r3.stdoutBytes.equals(plain), 'and it reads back')
})
