// Process liveness from /proc (lib/proc.ts): a process is alive while it runs, dead once it has
// exited, and never the process a start time does not match; LivenessProbe keeps each process's
// /proc file open between checks and closes what nobody asks about any more.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'
import { LivenessProbe, PROBE_IDLE_ROUNDS, processStartTime, sameProcessAlive } from '../../lib/proc.js'

t.test('a probe answers like sameProcessAlive, through one descriptor per process, and forgets', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const pid = child.pid as number
  const startTime = processStartTime(pid) as string
  t.ok(startTime, 'the child has a start time')
  const probe = new LivenessProbe()
  t.teardown(() => probe.close())
  t.ok(probe.alive({ pid, startTime }), 'alive')
  t.ok(probe.alive({ pid, startTime }), 'alive again, through the kept descriptor')
  t.equal(probe.size, 1, 'one descriptor for the process')
  t.notOk(probe.alive({ pid, startTime: `${startTime}1` }), 'another start time is not this process')
  t.equal(probe.size, 1, 'and is not kept')
  t.ok(probe.alive({ pid: process.pid, startTime: processStartTime(process.pid) as string }), 'this process is alive')
  t.equal(probe.size, 2)

  child.kill('SIGKILL')
  await once(child, 'exit')
  t.notOk(sameProcessAlive({ pid, startTime }), 'sameProcessAlive: dead once killed')
  t.notOk(probe.alive({ pid, startTime }), 'the probe: dead once killed')
  t.equal(probe.size, 1, 'its descriptor is closed')

  for (let i = 0; i <= PROBE_IDLE_ROUNDS; i++) probe.endRound()
  t.equal(probe.size, 0, `a process nobody asked about for ${PROBE_IDLE_ROUNDS} rounds is let go`)
  t.notOk(probe.alive({ pid: 0x3fffffff, startTime: '1' }), 'a pid that does not exist is not alive')
})
