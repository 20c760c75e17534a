// The -F (avoid disk full) rule on its own: which nodes a recovery would fill past their capacity.
import t from 'tap'
import { vidToDataOid, vidToVdiOid } from '../../lib/oid.js'
import type { SdNode } from '../../lib/structs.js'
import { nodesOverCapacity } from '../../sheep/recovery.js'
import { testNode } from '../helpers/nodes.js'

const MiB = 1024 * 1024
const OBJECT = 4 * MiB

function node(port: number, spaceMiB: number): SdNode {
  return { ...testNode(port), space: BigInt(spaceMiB * MiB) }
}

t.test('data objects count their size on every holder; other objects do not count', async (t) => {
  const big = node(7000, 100)
  const small = node(7001, 10)
  const data = [0, 1, 2].map((i) => vidToDataOid(7, i))
  const oids = [...data, vidToVdiOid(7)]
  const over = nodesOverCapacity(
    oids,
    [big, small],
    () => [big, small],
    () => OBJECT,
  )
  t.same(
    over.map((o) => [o.node.port, o.requiredBytes]),
    [[7001, BigInt(3 * OBJECT)]],
    'only the small node is over: three data objects, the inode not counted',
  )
  t.same(
    nodesOverCapacity(
      data.slice(0, 2),
      [big, small],
      () => [big, small],
      () => OBJECT,
    ),
    [],
    'two objects fit in 10 MiB',
  )
})

t.test('an object counts once however many members list it, and only for current members', async (t) => {
  const a = node(7000, 5)
  const gone = node(7009, 0)
  const oid = vidToDataOid(9, 0)
  t.same(
    nodesOverCapacity(
      [oid, oid],
      [a],
      () => [a, gone],
      () => OBJECT,
    ),
    [],
    'one 4 MiB object fits in 5 MiB, a departed holder is skipped',
  )
})
