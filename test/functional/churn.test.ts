// Acknowledged writes survive nodes that die and come back during writes (docs/recovery.md has
// the invariant). 4 real sheep, copies=3, real fsync; a writer runs `dog vdi write` through
// node 0 — whole chunks and parts of chunks — while nodes 1–3 are SIGKILLed and restarted every
// few seconds; afterwards every node reads back every acknowledged byte and every object is on
// exactly 3 nodes with identical replicas. Bounded for CI; `npm run test:soak` runs it long.
import t from 'tap'
import { runChurn } from '../helpers/churn.js'
import { churnVerdict, churnSeed } from '../helpers/churn-verdict.js'

t.test('one gateway, full and partial writes, nodes killed and restarted', async (t) => {
  const report = await runChurn({ seed: churnSeed(), durationMs: 75_000, vdiSizeMiB: 128, partialShare: 0.3, log: (l) => t.comment(l) })
  churnVerdict(t, report)
})
