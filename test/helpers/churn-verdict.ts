// The assertions every churn test makes on a churn report (test/helpers/churn.ts), and the seed
// it runs with: CHURN_SEED replays a failing run's random choices.
import type { Test } from 'tap'
import type { ChurnReport } from './churn.js'

export function churnSeed(): number {
  return Number(process.env.CHURN_SEED ?? Math.floor(Math.random() * 0x7fffffff))
}

export function churnVerdict(t: Test, report: ChurnReport): void {
  t.comment(`seed ${report.seed}: ${report.kills} kills, ${report.acked} acknowledged and ${report.failed} failed writes, ${report.snapshots} snapshot(s)`)
  t.ok(report.kills > 0 && report.acked > 0, 'nodes died while writes were acknowledged')
  t.ok(report.settled, 'recovery settled on every node')
  t.same(report.readFailures, [], 'every node reads the whole VDI')
  t.same(report.wrong, [], `every acknowledged byte reads back through every node (${report.wrongBytes} wrong bytes; CHURN_SEED=${report.seed} replays)`)
  t.same(report.replicaProblems, [], 'every object on exactly as many nodes as copies, replicas identical')
}
