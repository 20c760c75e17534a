// dog as the original behaves (issue 12, items 16 and 17), with real sheep: positional arguments
// of `node recovery set-throttle` and `node vnodes set` (after `--`, as the original's tests pass
// them) and their misuse lines without a usage; the error texts of a strict cluster short of
// zones (`vdi create`: VDI_WRITE; `vdi write`: the refused object with HALT's text) and of a
// cluster of gateways; and dog at the head of a pipe whose reader stops early.
import { spawnSync } from 'node:child_process'
import t from 'tap'
import { startCluster } from '../../harness/cluster.js'
import { DOG_BIN, dog, programEnv, waitFor } from '../../harness/sheep.js'
import { oidToHex, vidToDataOid } from '../../lib/oid.js'
import { getNodeList, getVdiInfo } from '../../lib/sheep-api.js'

const MiB = 1024 * 1024

/** Runs `dog ARGS -p PORT | READER` under bash with pipefail: the pipeline's status and output. */
function dogPipedTo(port: number, args: string, reader: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', `"${DOG_BIN}" ${args} -p ${port} | ${reader}`], { encoding: 'utf8', env: programEnv(), timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('dog at the head of a pipe ends without an error when the reader stops', async (t) => {
  const cluster = await startCluster(1)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '1'], { port })).status, 0)
  for (let i = 0; i < 40; i++) t.equal((await dog(['vdi', 'create', `vdi-${String(i).padStart(2, '0')}`, '4M'], { port })).status, 0)
  const data = Buffer.alloc(16 * MiB, 7)
  t.equal((await dog(['vdi', 'create', 'big', '16M'], { port })).status, 0)
  t.equal((await dog(['vdi', 'write', 'big'], { port, input: data })).status, 0)

  const head = dogPipedTo(port, 'vdi list', 'head -1')
  t.same([head.status, head.stderr], [0, ''], 'vdi list | head -1')
  t.match(head.stdout, /^ {2}Name {8}Id {4}Size/)
  t.equal(dogPipedTo(port, 'vdi list', 'grep -q vdi-07').status, 0, 'vdi list | grep -q NAME')
  const gone = dogPipedTo(port, 'vdi list', 'true')
  t.same([gone.status, gone.stderr], [0, ''], 'a reader that is gone before dog writes')
  const read = dogPipedTo(port, 'vdi read big', 'head -c 100 | wc -c')
  t.same([read.status, read.stdout.trim(), read.stderr], [0, '100', ''], 'vdi read | head -c 100: dog stops reading')
  const whole = spawnSync(DOG_BIN, ['vdi', 'read', 'big', '-p', String(port)], { env: programEnv(), maxBuffer: 64 * MiB })
  t.ok(whole.stdout.equals(data), 'a reader that takes everything gets everything')
})

t.test('node recovery set-throttle and node vnodes set take their arguments', async (t) => {
  const cluster = await startCluster(1, { extraArgs: ['-V', '100'] })
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-V', '-c', '1'], { port })).status, 0)

  // the options go before `--`: after it everything is an argument, for the original's getopt too
  const set = await dog(['node', 'recovery', 'set-throttle', '-p', String(port), '--', '10', '1000'])
  t.same([set.status, set.stdout, set.stderr], [0, '', ''])
  t.equal((await dog(['node', 'recovery', 'get-throttle'], { port })).stderr, 'max (10), interval (1000)\n')
  const largest = await dog(['node', 'recovery', 'set-throttle', '-p', String(port), '--', '4294967295', '9223372036854775807'])
  t.equal(largest.status, 0, largest.stderr)
  t.equal((await dog(['node', 'recovery', 'get-throttle'], { port })).stderr, 'max (4294967295), interval (9223372036854775807)\n')
  const misuse = await dog(['node', 'recovery', 'set-throttle', '-p', String(port), '--', '1', '0'])
  t.same([misuse.status, misuse.stdout, misuse.stderr], [64, '', 'Invalid interval max (1), interval (0)\n'], 'one line, no usage')
  const tooBig = await dog(['node', 'recovery', 'set-throttle', '-p', String(port), '--', '1', '9223372036854775808'])
  t.same([tooBig.status, tooBig.stdout, tooBig.stderr], [64, '', 'Invalid interval (9223372036854775808)\n'])

  const vnodes = await dog(['node', 'vnodes', 'set', '-p', String(port), '--', '65535'])
  t.same([vnodes.status, vnodes.stdout, vnodes.stderr], [0, '', ''])
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes[0]?.nrVnodes === 65535), 'the node announces 65535 vnodes')
  const badVnodes = await dog(['node', 'vnodes', 'set', '42a'], { port })
  t.same([badVnodes.status, badVnodes.stdout, badVnodes.stderr], [64, '', "Invalid number of vnodes '42a': must be an integer between 1 and 65535\n"])
})

t.test('a strict cluster short of zones refuses creates and writes with the original texts', async (t) => {
  const cluster = await startCluster(2)
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  t.equal((await dog(['cluster', 'format', '-c', '2', '-t'], { port })).status, 0)
  t.equal((await dog(['vdi', 'create', 'keep', '8M'], { port })).status, 0)
  const { vid } = await getVdiInfo(cluster.conn(0), 'keep', {})
  await cluster.stop(1)
  t.ok(await waitFor(async () => (await getNodeList(cluster.conn(0))).nodes.length === 1), 'node 1 has left')

  const create = await dog(['vdi', 'create', 'new', '8M'], { port })
  t.same([create.status, create.stdout, create.stderr], [1, '', 'Failed to create VDI new: Failed to write to requested VDI\n'])
  const write = await dog(['vdi', 'write', 'keep', '0', '4M'], { port, input: Buffer.alloc(4 * MiB, 1) })
  t.same(
    [write.status, write.stdout, write.stderr],
    [1, '', `Failed to write object ${oidToHex(vidToDataOid(vid, 0))}: IO has halted as there are not enough living nodes\nFailed to write VDI\n`],
  )
  const read = await dog(['vdi', 'read', 'keep', '0', '512'], { port })
  t.equal(read.status, 0, 'reads go on')
})

t.test('a cluster of gateways cannot write the inode of a new VDI', async (t) => {
  const cluster = await startCluster(2, { extraArgs: ['-g'] })
  t.teardown(() => cluster.close())
  const port = cluster.ports[0] as number
  const format = await dog(['cluster', 'format', '-c', '1'], { port })
  t.equal(format.status, 0, format.stderr)
  const create = await dog(['vdi', 'create', 'nowhere', '8M'], { port })
  t.same([create.status, create.stdout, create.stderr], [1, '', 'Failed to create VDI nowhere: Failed to write to requested VDI\n'])
})
