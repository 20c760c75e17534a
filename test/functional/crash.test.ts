// Whole-cluster crash: every sheep SIGKILLed at once while writes are in flight, then all started
// again on their directories — repeatedly. Every write acknowledged before a crash must read back
// through every node afterwards, with every object on exactly `copies` nodes. See churn.test.ts.
import t from 'tap'
import { runChurn } from '../helpers/churn.js'
import { churnVerdict, churnSeed } from '../helpers/churn-verdict.js'

t.test('every node killed at once during writes, three times', async (t) => {
  const report = await runChurn({
    seed: churnSeed(),
    durationMs: 50_000,
    vdiSizeMiB: 128,
    gateways: [0, 1],
    partialShare: 0.3,
    wholeCluster: true,
    killEveryMs: [12_000, 15_000],
    downForMs: [500, 1500],
    log: (l) => t.comment(l),
  })
  churnVerdict(t, report)
})
