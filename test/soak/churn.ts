// The long churn soak (`npm run test:soak`): the data-loss scenario of test/functional/churn*.ts
// run several times for minutes each — 4 sheep, copies=3, real fsync, a 512 MiB VDI, 4 MiB
// writes through node 0 while nodes 1–3 are SIGKILLed every 4–6 s and restarted 2–3 s later —
// then every node reads everything back. Prints one line per run and exits non-zero if any
// acknowledged byte read back wrong. Options: --runs N (10), --minutes M (3), --seed S (first
// run's seed; the others follow), --mode basic|gateways|snapshot|crash|mixed (basic).
import { parseArgs } from 'node:util'
import { type ChurnOptions, churnPassed, runChurn } from '../helpers/churn.js'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    minutes: { type: 'string', default: '3' },
    seed: { type: 'string' },
    mode: { type: 'string', default: 'basic' },
    verbose: { type: 'boolean', default: false },
  },
})

const MODES: Record<string, Partial<ChurnOptions>> = {
  // the scenario as the issue describes it
  basic: {},
  // two writers through nodes 0 and 1, partial writes (index updates, overwrites, creates)
  gateways: { gateways: [0, 1], partialShare: 0.3 },
  // copy-on-write under churn: a snapshot a third of the way in
  snapshot: { partialShare: 0.5, snapshotAtMs: 60_000 },
  // every node killed at once, again and again
  crash: { wholeCluster: true, killEveryMs: [8000, 12000], downForMs: [1000, 2000], partialShare: 0.3 },
}
const order = values.mode === 'mixed' ? Object.keys(MODES) : [values.mode]
for (const m of order) if (!MODES[m]) throw new Error(`unknown mode ${m}`)

const runs = Number(values.runs)
const durationMs = Number(values.minutes) * 60_000
let seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 0x7fffffff)
let bad = 0
for (let run = 1; run <= runs; run++, seed++) {
  const mode = order[(run - 1) % order.length]
  const started = Date.now()
  const report = await runChurn({
    seed,
    durationMs,
    ...MODES[mode],
    snapshotAtMs: MODES[mode].snapshotAtMs !== undefined ? Math.floor(durationMs / 3) : undefined,
    keepFailed: true,
    log: values.verbose ? (l) => console.log(`  ${l}`) : undefined,
  })
  const ok = churnPassed(report)
  if (!ok) bad++
  console.log(
    `run ${run}/${runs} ${mode} seed ${seed}: ${report.kills} kills, ${report.acked} acked, ${report.failed} failed writes, ` +
      `${report.wrongBytes} wrong bytes in ${report.wrong.length} chunk read(s), ${report.replicaProblems.length} replica problem(s), ` +
      `${report.readFailures.length} read failure(s), settled ${report.settled} — ${ok ? 'OK' : 'FAILED'} (${Math.round((Date.now() - started) / 1000)} s)`,
  )
  if (!ok) {
    for (const w of report.wrong.slice(0, 20)) console.log(`  wrong: ${w.where} chunk ${w.chunk} (${w.wrongSectors} sectors)`)
    for (const p of report.replicaProblems.slice(0, 20)) console.log(`  replica: ${p}`)
    for (const f of report.readFailures) console.log(`  read: ${f}`)
    console.log(`  the cluster's files are kept in ${report.keptAt}`)
  }
  for (const e of report.logErrors.slice(0, 10)) console.log(`  logged: ${e}`)
}
console.log(`${runs - bad} passed, ${bad} failed`)
process.exit(bad === 0 ? 0 : 1)
