// Loaded into every test process (package.json, tap's node-arg). tap's process tracking
// (@tapjs/processinfo: ESM loader hooks on a thread of their own) puts itself into the
// NODE_OPTIONS of every process a test spawns, through the spawn hook of `process-on-spawn`. Each
// sheep, dog and sheepfs a test started loaded it: a dog call cost three times the CPU (0.3 s →
// 0.95 s), and the suite is CPU-bound on 2 cores. The programs under test are not tap's to
// track: a hook of ours, run after tap's, takes it out of their environment again.
interface SpawnHookState {
  listeners: ((opts: { env: NodeJS.ProcessEnv }) => void)[]
}

/** NODE_OPTIONS without tap's process tracking; undefined when nothing is left. */
function withoutTracking(nodeOptions: string | undefined): string | undefined {
  const kept = (nodeOptions ?? '')
    .split(/\s+/)
    .filter((option) => option !== '' && !option.includes('@tapjs/processinfo'))
    .join(' ')
  return kept === '' ? undefined : kept
}

function untracked(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { NODE_OPTIONS, ...rest } = env
  const kept = withoutTracking(NODE_OPTIONS)
  return kept === undefined ? rest : { ...rest, NODE_OPTIONS: kept }
}

const ownOptions = withoutTracking(process.env.NODE_OPTIONS)
if (ownOptions === undefined) delete process.env.NODE_OPTIONS
else process.env.NODE_OPTIONS = ownOptions
const spawnHooks = (globalThis as Record<symbol, SpawnHookState | undefined>)[Symbol.for('process-on-spawn@*:singletonId')]
spawnHooks?.listeners.push((opts) => {
  opts.env = untracked(opts.env)
})
