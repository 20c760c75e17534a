// `dog vdi create -P` and `dog vdi alter-copy` on a 3-node cluster formatted with 2 copies,
// through the real dog: preallocation creates every data object (zero-filled, recorded in the
// index), and raising a standalone VDI from 2 to 3 copies ends, once recovery settles, with 3
// replicas of every one of its objects and the data unchanged; VDIs with snapshots are refused.
import crypto from 'node:crypto'
import t from 'tap'
import { objectCopies, startCluster, waitForRecovery } from '../../harness/cluster.js'
import { dog } from '../../harness/sheep.js'

const MiB = 1024 * 1024
const VDI_SIZE = 18 * MiB
/** ceil(18 MiB / 4 MiB) */
const OBJECT_COUNT = 5

t.test('vdi create -P and vdi alter-copy', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '2'], { port })).status, 0, 'formatted with 2 copies')

  const created = await dog(['vdi', 'create', '-P', '-v', '-r', 'full', String(VDI_SIZE)], { port })
  t.equal(created.status, 0, created.stderr)
  t.equal(created.stderr, '')
  const vid = created.stdout.trim()
  t.match(vid, /^[0-9a-f]{1,6}$/, 'no progress bar when stdout is not a terminal, only the vid')
  const oidsOf = (vidText: string) => {
    const vid24 = vidText.padStart(6, '0')
    return [`80${vid24}00000000`, ...Array.from({ length: OBJECT_COUNT }, (_, idx) => `00${vid24}${idx.toString(16).padStart(8, '0')}`)]
  }

  await t.test('-P allocates every object', async (t) => {
    const copies = objectCopies(cluster)
    for (const oid of oidsOf(vid)) t.equal(copies.get(oid), 2, `${oid} exists on 2 nodes`)
    const map = await dog(['vdi', 'object', 'map', 'full'], { port })
    t.equal(
      map.stdout,
      `Index       VID\n${Array.from({ length: OBJECT_COUNT }, (_, idx) => `0000000${idx} ${vid.padStart(8)}\n`).join('')}`,
      'every index entry is set',
    )
    const list = await dog(['vdi', 'list', '-r', 'full'], { port })
    t.match(list.stdout, new RegExp(`^= full 0 ${VDI_SIZE} ${OBJECT_COUNT * 4 * MiB} 0 \\d+ ${vid} 2  22\n$`), 'all objects used')
    const read = await dog(['vdi', 'read', 'full'], { port })
    t.ok(read.stdoutBytes.equals(Buffer.alloc(VDI_SIZE)), 'reads as zeros')
  })

  const data = crypto.randomBytes(VDI_SIZE)
  t.equal((await dog(['vdi', 'write', 'full'], { port, input: data })).status, 0)

  await t.test('alter-copy from 2 to 3 copies', async (t) => {
    const r = await dog(['vdi', 'alter-copy', '-c', '3', 'full'], { port, input: 'yes\n' })
    t.equal(r.status, 0, r.stderr)
    t.match(r.stdout, /Caution! Changing VDI's redundancy level will affect\n/)
    t.equal(r.stderr, "full's redundancy level is set to 3, the old one was 2.\n")
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    const copies = objectCopies(cluster)
    for (const oid of oidsOf(vid)) t.equal(copies.get(oid), 3, `${oid} is on 3 nodes`)
    const list = await dog(['vdi', 'list', '-r', 'full'], { port })
    t.match(list.stdout, new RegExp(` ${vid} 3  22\n$`), 'vdi list shows 3 copies')
    for (const i of [0, 1, 2]) {
      const read = await dog(['vdi', 'read', 'full'], { port: cluster.ports[i] })
      t.ok(read.stdoutBytes.equals(data), `data unchanged through node ${i}`)
    }
    const check = await dog(['vdi', 'check', 'full'], { port })
    t.equal(check.stdout, 'finish check&repair full\n', 'all 3 replicas agree')
  })

  await t.test('refusals', async (t) => {
    const same = await dog(['vdi', 'alter-copy', '-c', '3', '-f', 'full'], { port })
    t.equal(same.status, 1)
    t.equal(same.stderr, "full's redundancy level is already set to 3, nothing changed.\n")
    const declined = await dog(['vdi', 'alter-copy', '-c', '1', 'full'], { port, input: 'no\n' })
    t.equal(declined.status, 0, 'a declined prompt changes nothing')
    t.match((await dog(['vdi', 'list', '-r', 'full'], { port })).stdout, / 3  22\n$/)
    const ec = await dog(['vdi', 'alter-copy', '-c', '2:1', 'full'], { port })
    t.equal(ec.status, 64)
    t.match(ec.stderr, /^Changing redundancy level of erasure coded vdi is not supported yet\.\n/)
    t.equal((await dog(['vdi', 'snapshot', 'full'], { port })).status, 0)
    const notStandalone = await dog(['vdi', 'alter-copy', '-c', '2', '-f', 'full'], { port })
    t.equal(notStandalone.status, 1)
    t.equal(notStandalone.stderr, 'Only standalone vdi supports changing redundancy level.\nPlease clone full with -n (--no-share) option first.\n')
    const defaultCopies = await dog(['vdi', 'alter-copy', '-f', 'nosuch'], { port })
    t.equal(defaultCopies.stdout, "The vdi's redundancy level is not specified, use 3 as default.\n")
    t.equal(defaultCopies.stderr, "Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nReading nosuch's vdi object failure.\n")
    t.equal(defaultCopies.status, 1)
  })
})
