// The real dog against real 3-node clusters (local driver, zone = node number): node list, node
// recovery (idle, suspended, throttled, -r, -P on a terminal), recovery throttling, node stat,
// node vnodes set, cluster recover disable/enable/force, reweight, alter-copy and the epoch
// history of cluster info after nodes leave and rejoin. Formats are checked against what the
// original printed in the capture (test/helpers/fixture.ts) where it has the command.
import { spawn, spawnSync } from 'node:child_process'
import t from 'tap'
import { sprintf } from '../../lib/format.js'
import { getNodeList } from '../../lib/sheep-api.js'
import { objectCopies, startCluster, waitForRecovery, type TestCluster } from '../../harness/cluster.js'
import { findCommand, loadFixture } from '../helpers/fixture.js'
import { DOG_BIN, dog, filterDates, isAlive, programEnv, waitFor } from '../../harness/sheep.js'

const fixture = loadFixture()
const MiB = 1024 * 1024
const NODE_ROW = '%4d   %-20s\t%2d%11u\n'
const VNODES = 128
const SIZE = '(?:\\d+|\\d\\.\\d) [MGTPEZY]B'
const USAGE_EXIT = 64

/** What the original printed for a command (the first capture of it). */
function printedByOriginal(...words: string[]): string {
  const command = findCommand(fixture, ...words)
  if (command.stdout === undefined) throw new Error(`no output captured for dog ${words.join(' ')}`)
  return command.stdout
}

/** Deterministic bytes that differ per seed. */
function pattern(length: number, seed: number): Buffer {
  const data = Buffer.alloc(length)
  for (let i = 0; i < length; i++) data[i] = (i * 7 + seed) % 251
  return data
}

async function memberCount(cluster: TestCluster, via: number): Promise<number> {
  return (await getNodeList(cluster.conn(via))).nodes.length
}

/** `[ip:port:vnodes, …]` of `cluster info` for the given nodes (sorted by port, as sheep sorts them). */
function membersText(ports: number[]): string {
  return `[${[...ports]
    .sort((a, b) => a - b)
    .map((port) => `127.0.0.1:${port}:${VNODES}`)
    .join(', ')}]`
}

/** One epoch line of `cluster info` with the date filtered. */
function epochLine(epoch: number, ports: number[]): string {
  return sprintf('YYYY-MM-DD HH:MM:SS %6d %s', epoch, membersText(ports))
}

/** The epoch history lines of `cluster info` (after the `Epoch Time …` header), dates filtered. */
function historyLines(clusterInfoText: string): string[] {
  const lines = filterDates(clusterInfoText).split('\n')
  const header = lines.indexOf('Epoch Time           Version [Host:Port:V-Nodes,,,]')
  return header < 0 ? [] : lines.slice(header + 1).filter((line) => line !== '')
}

/** True when `script` can give dog a terminal (util-linux). */
const HAVE_SCRIPT = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0

/** Runs dog on a pseudo-terminal `columns` wide; answers what the terminal showed (\r\n → \n). */
function dogOnTerminal(args: string[], port: number, columns: number): Promise<{ status: number; screen: string }> {
  const command = `stty cols ${columns}; exec ${DOG_BIN} ${args.join(' ')} -p ${port}`
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: programEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ status: code ?? -1, screen: Buffer.concat(out).toString('utf8').replace(/\r\n/g, '\n') }))
  })
}

t.test('recovery control, throttling, stats and redundancy on 3 nodes', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const run = (args: string[], input?: string) => dog(args, { port, input })
  const sortedPorts = [...cluster.ports].sort((a, b) => a - b)
  /** The `node list` id of node i. */
  const idOf = (i: number): number => sortedPorts.indexOf(cluster.ports[i] as number)
  const allPorts = [...cluster.ports]
  const portsWithout = (i: number): number[] => allPorts.filter((_, j) => j !== i)
  const alpha = pattern(20 * MiB, 1)
  const beta = pattern(40 * MiB, 2)
  /** The members of each epoch so far, oldest first. */
  const epochs: number[][] = []
  /** Waits until node 0 sees `count` members, and records the new epoch's members. */
  const membershipBecomes = async (ports: number[]): Promise<boolean> => {
    const settled = await waitFor(async () => (await memberCount(cluster, 0)) === ports.length, 5000)
    epochs.push(ports)
    return settled
  }

  await t.test('cluster format -c 3, node list', async (t) => {
    const format = await run(['cluster', 'format', '-c', '3'])
    t.equal(format.status, 0, format.stderr)
    t.equal(format.stdout, 'using backend plain store\n')
    epochs.push(allPorts)
    const list = await run(['node', 'list'])
    t.equal(list.status, 0, list.stderr)
    const lines = list.stdout.split('\n')
    t.equal(lines[0], printedByOriginal('node', 'list').split('\n')[0], 'the header of the original')
    const expected = sortedPorts.map((p, id) => sprintf(NODE_ROW, id, `127.0.0.1:${p}`, VNODES, cluster.ports.indexOf(p))).join('')
    t.equal(list.stdout, `${lines[0]}\n${expected}`, 'three rows with V-Nodes and Zone')
  })

  await t.test('node recovery while nothing recovers', async (t) => {
    const original = printedByOriginal('node', 'recovery')
    t.equal(original, 'Nodes In Recovery:\n  Id   Host:Port         V-Nodes       Zone       Progress\n')
    for (const args of [
      ['node', 'recovery'],
      ['node', 'recovery', 'info'],
    ]) {
      const r = await run(args)
      t.equal(r.status, 0, r.stderr)
      t.equal(r.stdout, original, `dog ${args.join(' ')}: the header and no rows`)
    }
    const raw = await run(['node', 'recovery', '-r'])
    t.same([raw.status, raw.stdout], [0, ''], 'raw: nothing at all')
    const progress = await run(['node', 'recovery', '-P'])
    t.same([progress.status, progress.stdout, progress.stderr], [0, '', ''], '-P ends at once')
  })

  await t.test('recovery throttle: set-throttle / get-throttle round trip', async (t) => {
    const set = await run(['node', 'recovery', 'set-throttle', '10', '500'])
    t.same([set.status, set.stdout, set.stderr], [0, '', ''])
    const get = await run(['node', 'recovery', 'get-throttle'])
    t.same([get.status, get.stdout, get.stderr], [0, '', 'max (10), interval (500)\n'])
    const off = await run(['node', 'recovery', 'set-throttle', '0', '0'])
    t.equal(off.status, 0, off.stderr)
    const getOff = await run(['node', 'recovery', 'get-throttle'])
    t.equal(getOff.stderr, 'max (0), interval (0)\n', 'both zero turns throttling off')
    const misuses: Array<[string[], string]> = [
      [['5', '0'], 'Invalid interval max (5), interval (0)'],
      [['0', '5'], 'Invalid interval max (0), interval (5)'],
      [['x', '5'], 'Invalid max (x)'],
      [['4294967296', '5'], 'Invalid max (4294967296)'],
      [['5', '1.5'], 'Invalid interval (1.5)'],
    ]
    for (const [args, message] of misuses) {
      const r = await run(['node', 'recovery', 'set-throttle', ...args])
      t.equal(r.status, USAGE_EXIT, `set-throttle ${args.join(' ')} is a misuse`)
      t.equal(r.stderr, `${message}\n`)
      t.equal(r.stdout, '', 'no usage: the original exits at once')
    }
    const missing = await run(['node', 'recovery', 'set-throttle', '5'])
    t.equal(missing.status, USAGE_EXIT, 'one argument is not enough')
  })

  await t.test('node stat has the layout of the original', async (t) => {
    const original = printedByOriginal('node', 'stat').split('\n')
    const r = await run(['node', 'stat'])
    t.equal(r.status, 0, r.stderr)
    const lines = r.stdout.split('\n')
    t.equal(lines.length, 4, 'header, two rows, end')
    t.equal(lines[0], original[0], 'the header of the original')
    const row = (label: string, flush: string) => new RegExp(`^${label}\\t\\d+\\t\\d+\\t\\d+\\t\\d+\\t\\d+\\t${flush}\\t${SIZE}\\t${SIZE}$`)
    t.match(original[1], row('Client', '\\d+'), 'the capture follows the client row pattern')
    t.match(original[2], row('Peer', '0'), 'the capture follows the peer row pattern')
    t.match(lines[1], row('Client', '\\d+'))
    t.match(lines[2], row('Peer', '0'))
    const raw = await run(['node', 'stat', '-r'])
    t.match(raw.stdout, /^(?:\d+\t){7}\d+\n(?:\d+\t){7}\d+\n$/, 'raw: numbers only, sizes in bytes')
  })

  await t.test('node vnodes set', async (t) => {
    const r = await run(['node', 'vnodes', 'set', '64'])
    t.same([r.status, r.stdout, r.stderr], [1, '', 'Failed to execute request\n'], 'the sheep refuses: failure, exit 1')
    for (const value of ['0', '65536', 'x', '12x']) {
      const bad = await run(['node', 'vnodes', 'set', value])
      t.equal(bad.status, USAGE_EXIT, `vnodes ${value} is a misuse`)
      t.equal(bad.stderr, `Invalid number of vnodes '${value}': must be an integer between 1 and 65535\n`)
    }
  })

  await t.test('cluster reweight', async (t) => {
    const r = await run(['cluster', 'reweight'])
    t.same([r.status, r.stdout, r.stderr], [0, '', ''])
  })

  await t.test('suspended recovery: lose a node, write, rejoin, resume', async (t) => {
    const disable = await run(['cluster', 'recover', 'disable'])
    t.same([disable.status, disable.stdout], [0, 'Cluster recovery: disable\n'])
    const info = await run(['cluster', 'info'])
    t.equal(info.stdout.split('\n')[0], 'Cluster status: running, auto-recovery disabled')

    await cluster.stop(2, 'SIGKILL')
    t.ok(await membershipBecomes(portsWithout(2)), 'the killed node leaves')
    t.equal((await run(['vdi', 'create', 'alpha', '32M'])).status, 0)
    const write = await dog(['vdi', 'write', 'alpha'], { port, input: alpha })
    t.equal(write.status, 0, write.stderr)
    t.ok(
      [...objectCopies(cluster).values()].every((n) => n === 2),
      'written on the two remaining nodes',
    )
    const [client] = (await run(['node', 'stat', '-r'])).stdout.split('\n')
    const [, , writes, reads, , , rxBytes] = (client ?? '').split('\t').map(Number)
    t.ok((writes ?? 0) > 0 && (writes ?? 0) > (reads ?? 0), `the Write column counts the writes (${writes} writes, ${reads} reads)`)
    t.ok((rxBytes ?? 0) >= alpha.length, `All WR counts the bytes written (${rxBytes})`)

    await cluster.start(2)
    t.ok(await membershipBecomes(allPorts), 'the node rejoins')
    await new Promise((resolve) => setTimeout(resolve, 1500))
    t.ok(
      [...objectCopies(cluster).values()].every((n) => n === 2),
      'no object is recovered while recovery is disabled',
    )

    const recovering = await run(['node', 'recovery'])
    t.equal(recovering.status, 0, recovering.stderr)
    const row = sprintf('%4d   %-20s%5d%11d%11s%%', idOf(2), `127.0.0.1:${cluster.ports[2]}`, VNODES, 2, '0.0')
    t.equal(recovering.stdout, `${printedByOriginal('node', 'recovery')}${row}\n`, 'the rejoined node is listed at 0.0%')
    const raw = await run(['node', 'recovery', '-r'])
    t.match(raw.stdout, new RegExp(`^${idOf(2)} 127\\.0\\.0\\.1:${cluster.ports[2]} ${VNODES} 2 0 [1-9]\\d*\\n$`), 'raw: finished 0 of the total')

    const enable = await run(['cluster', 'recover', 'enable'])
    t.same([enable.status, enable.stdout], [0, 'Cluster recovery: enable\n'])
    t.equal((await run(['cluster', 'info'])).stdout.split('\n')[0], 'Cluster status: running, auto-recovery enabled')
    t.ok(await waitForRecovery(cluster), 'recovery completes')
    t.ok(
      [...objectCopies(cluster).values()].every((n) => n === 3),
      'every object is on all three nodes again',
    )
    const read = await dog(['vdi', 'read', 'alpha', '0', String(alpha.length)], { port: cluster.ports[2] })
    t.equal(read.status, 0, read.stderr)
    t.ok(read.stdoutBytes.equals(alpha), 'the data reads back through the recovered node')
    t.same((await run(['node', 'recovery'])).stdout, printedByOriginal('node', 'recovery'), 'nobody is recovering any more')
  })

  await t.test('node recovery -P on a terminal follows a throttled recovery', { skip: HAVE_SCRIPT ? false : 'script(1) is not installed' }, async (t) => {
    await cluster.stop(2, 'SIGKILL')
    t.ok(await membershipBecomes(portsWithout(2)), 'the killed node leaves')
    t.equal((await run(['vdi', 'create', 'beta', '64M'])).status, 0)
    t.equal((await dog(['vdi', 'write', 'beta'], { port, input: beta })).status, 0)
    await cluster.start(2, ['-R', 'max=1,interval=400'])
    epochs.push(allPorts)
    const { status, screen } = await dogOnTerminal(['node', 'recovery', '-P'], cluster.ports[2] as number, 100)
    t.equal(status, 0, screen)
    const bars = screen.split('\r').filter((part) => part.includes(' % ['))
    t.ok(bars.length >= 2, `progress bars were drawn (${bars.length})`)
    for (const bar of bars) t.equal(bar.replace(/\n$/, '').length, 100, 'as wide as the terminal')
    for (const bar of bars) t.match(bar, /^[ \d]{2}\d\.\d % \[[=> ]{70}\] \d+ \/ \d+ *\n?$/, 'a bar 100 columns wide with plain numbers')
    const last = bars[bars.length - 1] as string
    t.match(last, /^100\.0 % \[={70}\] (\d+) \/ \1 +\n$/, 'the last bar is full and ends the line')
    t.equal(last.length, 101, 'the last bar fills the terminal width')
    const throttle = await dog(['node', 'recovery', 'get-throttle'], { port: cluster.ports[2] })
    t.equal(throttle.stderr, 'max (1), interval (400)\n', 'get-throttle shows the throttle sheep -R set')
    t.ok(await waitForRecovery(cluster), 'recovery settles')
    t.equal(await memberCount(cluster, 0), 3, 'three members again')
  })

  await t.test('cluster info shows the epoch history, newest first', async (t) => {
    await cluster.stop(1)
    t.ok(await membershipBecomes(portsWithout(1)), 'node 1 leaves')
    await cluster.start(1)
    t.ok(await membershipBecomes(allPorts), 'node 1 rejoins')
    const info = await run(['cluster', 'info'])
    t.equal(info.status, 0, info.stderr)
    const expected = epochs.map((ports, index) => epochLine(index + 1, ports)).reverse()
    t.same(historyLines(info.stdout), expected, `epochs ${epochs.length} down to 1 with their members`)
    const diff = await run(['cluster', 'info', '-d'])
    const diffLines = historyLines(diff.stdout)
    t.equal(diffLines[0], sprintf('YYYY-MM-DD HH:MM:SS %6d [+127.0.0.1:%d]', epochs.length, cluster.ports[1]), '-d: who joined')
    t.equal(diffLines[1], sprintf('YYYY-MM-DD HH:MM:SS %6d [-127.0.0.1:%d]', epochs.length - 1, cluster.ports[1]), '-d: who left')
    t.equal(diffLines[diffLines.length - 1], sprintf('YYYY-MM-DD HH:MM:SS %6d [formated]', 1))
  })

  await t.test('cluster alter-copy', async (t) => {
    const declined = await run(['cluster', 'alter-copy', '-c', '2'], 'no\n')
    t.equal(declined.status, 0, 'declining is not a failure')
    t.match(
      declined.stdout,
      /Caution! Changing cluster's redundancy level will affect\n {2}\/ {2}\| {3}all the VDIs to be created later\.\n\(\/_\)_\|_ {2}Are you sure you want to continue\? \[yes\/no\]: $/,
    )
    t.match((await run(['cluster', 'info', '-v'])).stdout, /^Cluster store: plain with 3 redundancy policy$/m, 'unchanged after no')

    const altered = await run(['cluster', 'alter-copy', '-c', '2', '-f'])
    t.same([altered.status, altered.stdout, altered.stderr], [0, '', "The cluster's redundancy level is set to 2, the old one was 3.\n"])
    const verbose = await run(['cluster', 'info', '-v'])
    t.equal(
      verbose.stdout.split('\n').slice(0, 4).join('\n'),
      'Cluster status: running, auto-recovery enabled\nCluster store: plain with 2 redundancy policy\n' +
        'Cluster vnodes strategy: auto\nCluster vnode mode: node',
    )

    const again = await run(['cluster', 'alter-copy', '-c', '2', '-f'])
    t.same([again.status, again.stderr], [1, "The cluster's redundancy level is already set to 2, nothing changed.\n"])
    const erasure = await run(['cluster', 'alter-copy', '-c', '2:1', '-f'])
    t.equal(erasure.status, USAGE_EXIT)
    t.equal(erasure.stderr, 'Changing redundancy level of erasure coded vdi is not supported yet.\n')

    const before = [...objectCopies(cluster).values()].filter((n) => n === 2).length
    t.equal((await run(['vdi', 'create', 'gamma', '8M'])).status, 0)
    t.equal((await dog(['vdi', 'write', 'gamma', '0', '4M'], { port, input: pattern(4 * MiB, 3) })).status, 0)
    t.ok(await waitForRecovery(cluster), 'settled')
    const after = [...objectCopies(cluster).values()].filter((n) => n === 2).length
    t.equal(after - before, 2, 'a VDI created afterwards gets 2 copies (inode and data object)')

    const byDefault = await run(['cluster', 'alter-copy', '-f'])
    t.equal(byDefault.status, 0, byDefault.stderr)
    t.equal(byDefault.stdout, "The cluster's redundancy level is not specified, use 3 as default.\n")
    t.equal(byDefault.stderr, "The cluster's redundancy level is set to 3, the old one was 2.\n")
  })

  await t.test('cluster recover force on a running cluster', async (t) => {
    const r = await run(['cluster', 'recover', 'force', '-f'])
    t.same([r.status, r.stdout, r.stderr], [1, '', 'failed to execute request, Cluster is running/halted and cannot be force recovered\n'])
  })
})

t.test('cluster recover force starts a cluster that waits for a lost node', async (t) => {
  const cluster = await startCluster(3)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const run = (args: string[], input?: string) => dog(args, { port, input })
  const data = pattern(12 * MiB, 4)
  t.equal((await run(['cluster', 'format', '-c', '3'])).status, 0)
  t.equal((await run(['vdi', 'create', 'delta', '16M'])).status, 0)
  t.equal((await dog(['vdi', 'write', 'delta'], { port, input: data })).status, 0)

  const shutdown = await run(['cluster', 'shutdown'])
  t.equal(shutdown.status, 0, shutdown.stderr)
  t.ok(await waitFor(() => cluster.nodes.every((node) => node === undefined || !isAlive(node.pid)), 10_000), 'every sheep ended')
  for (let i = 0; i < 3; i++) await cluster.stop(i)
  await cluster.start(0)
  await cluster.start(1)
  t.ok(await waitFor(async () => (await memberCount(cluster, 0)) === 2, 5000), 'two of the three nodes are back')

  const waiting = await run(['cluster', 'info'])
  t.equal(waiting.stdout.split('\n')[0], 'Cluster status: Waiting for other nodes to join cluster')
  t.same(historyLines(waiting.stdout), [epochLine(1, cluster.ports)])

  const declined = await run(['cluster', 'recover', 'force'], 'no\n')
  t.equal(declined.status, 0)
  t.equal(
    declined.stdout,
    'Caution! Please try starting all the cluster nodes normally before\nrunning this command.\n\n' +
      'The cluster may need to be force recovered if:\n' +
      '  - the master node fails to start because of epoch mismatch; or\n' +
      '  - some nodes fail to start after a cluster shutdown.\n\n' +
      'Are you sure you want to continue? [yes/no]: ',
  )
  t.equal((await run(['cluster', 'info'])).stdout.split('\n')[0], 'Cluster status: Waiting for other nodes to join cluster', 'still waiting after no')

  const forced = await run(['cluster', 'recover', 'force'], 'yes\n')
  t.equal(forced.status, 0, forced.stderr)
  t.equal(forced.stderr, '')
  const running = await run(['cluster', 'info'])
  t.equal(running.stdout.split('\n')[0], 'Cluster status: running, auto-recovery enabled')
  t.same(
    historyLines(running.stdout),
    [epochLine(2, cluster.ports.slice(0, 2)), epochLine(1, cluster.ports)],
    'a new epoch with the two members, then the old one',
  )
  t.ok(await waitForRecovery(cluster), 'recovery settles')
  const read = await dog(['vdi', 'read', 'delta', '0', String(data.length)], { port: cluster.ports[1] })
  t.ok(read.stdoutBytes.equals(data), 'the data reads back')
  t.ok(
    [...objectCopies(cluster).values()].every((n) => n === 2),
    'every object on both running nodes',
  )
})
