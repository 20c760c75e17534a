// The vnode-strategy rules of sheep/group.ts, as the original's cluster_join_check,
// init_config_file and create_cluster apply them: which joiners a formatted cluster refuses
// (with the original's lines, labels as it prints them), and which -V options a restarted node
// is refused with.
import t from 'tap'
import { SD_CLUSTER_FLAG_AUTO_VNODES } from '../../lib/proto.js'
import type { SdNode } from '../../lib/structs.js'
import { vnodeStartProblem, vnodeStrategyMismatch } from '../../sheep/group.js'

const FIXED_JOINER = 'failed to join for vnodes strategy unmatch.  cluster:fixed, joined:auto'
const AUTO_JOINER = 'failed to join for vnodes strategy unmatch.  cluster:auto, joined:fixed'
const FORMATTED = 1n << 32n

function node(port: number, nrVnodes: number): SdNode {
  const addr = Buffer.alloc(16)
  addr.set([127, 0, 0, 1], 12)
  return { addr, port, ioAddr: Buffer.alloc(16), ioPort: 0, nrVnodes, zone: port, space: 1n << 30n }
}

t.test('a formatted cluster refuses a data node of the other strategy', async (t) => {
  const fixed = { clusterCtime: FORMATTED, clusterAuto: false }
  const auto = { clusterCtime: FORMATTED, clusterAuto: true }
  t.equal(vnodeStrategyMismatch(auto, { nrVnodes: 64 }, false), FIXED_JOINER, '-V joiner, auto cluster')
  t.equal(vnodeStrategyMismatch(fixed, { nrVnodes: 128 }, true), AUTO_JOINER, 'joiner without -V, fixed cluster')
  t.equal(vnodeStrategyMismatch(fixed, { nrVnodes: 64 }, false), undefined, 'same strategy (fixed)')
  t.equal(vnodeStrategyMismatch(auto, { nrVnodes: 128 }, true), undefined, 'same strategy (auto)')
  t.equal(vnodeStrategyMismatch(fixed, { nrVnodes: 0 }, true), undefined, 'a gateway is not checked')
  t.equal(vnodeStrategyMismatch({ clusterCtime: 0n, clusterAuto: true }, { nrVnodes: 64 }, false), undefined, 'an unformatted cluster is not checked')
  t.equal(vnodeStrategyMismatch(fixed, { nrVnodes: 64 }, undefined), undefined, 'an earlier payload without the strategy is not checked')
})

t.test('a restarted node keeps the formatted strategy and, fixed, its latest count', async (t) => {
  const self = node(7000, 64)
  const base = { gateway: false, fixedVnodes: true, self, ctime: FORMATTED, flags: 0, epoch: 3, latestEpochNodes: [node(7001, 100), node(7000, 64)] }
  t.equal(vnodeStartProblem(base), undefined, 'fixed cluster, the count of the latest epoch')
  t.equal(
    vnodeStartProblem({ ...base, latestEpochNodes: [node(7000, 200)] }),
    'mismatch specified vnodes is compared with the previous. previous vnodes:200',
    'another count than the latest epoch has',
  )
  t.equal(
    vnodeStartProblem({ ...base, latestEpochNodes: [node(7001, 100)] }),
    'mismatch specified vnodes is compared with the previous. previous vnodes:0',
    'not in its latest epoch',
  )
  const designation = 'Designation of before a restart and a vnodes option is different.'
  t.equal(vnodeStartProblem({ ...base, fixedVnodes: false, self: node(7000, 128) }), designation, 'no -V on a fixed cluster')
  t.equal(vnodeStartProblem({ ...base, flags: SD_CLUSTER_FLAG_AUTO_VNODES }), designation, '-V on an auto cluster')
  t.equal(
    vnodeStartProblem({ ...base, fixedVnodes: false, flags: SD_CLUSTER_FLAG_AUTO_VNODES, self: node(7000, 128), latestEpochNodes: [node(7000, 77)] }),
    undefined,
    'auto cluster: counts are computed, not checked',
  )
  t.equal(vnodeStartProblem({ ...base, gateway: true, fixedVnodes: false, self: node(7000, 0) }), undefined, 'a gateway is not checked')
  t.equal(vnodeStartProblem({ ...base, ctime: 0n, epoch: 0, latestEpochNodes: [] }), undefined, 'a node never formatted')
})
