// Acknowledged writes survive churn with two gateways writing at once and a snapshot taken in the
// middle (copy-on-write under churn): writers through nodes 0 and 1 (each owning half of the
// chunks), full and partial writes — first writes that update the inode index, overwrites,
// copy-on-write after the snapshot — while nodes 2–4 are SIGKILLed and restarted. Every node
// must read back the VDI and the snapshot as acknowledged. See churn.test.ts.
import t from 'tap'
import { runChurn } from '../helpers/churn.js'
import { churnVerdict, churnSeed } from '../helpers/churn-verdict.js'

t.test('two gateways, snapshot in the middle, nodes killed and restarted', async (t) => {
  const report = await runChurn({
    seed: churnSeed(),
    durationMs: 75_000,
    nodes: 5,
    vdiSizeMiB: 128,
    gateways: [0, 1],
    partialShare: 0.5,
    snapshotAtMs: 30_000,
    log: (l) => t.comment(l),
  })
  churnVerdict(t, report)
  t.ok(report.snapshots >= 1, 'the snapshot was taken under churn')
})
