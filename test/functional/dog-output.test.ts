// Snapshot-style checks of what the real dog prints against what the original printed (the capture
// that test/helpers/fixture.ts reads), on a one-node cluster formatted with -c 1: node list, node info,
// cluster info, vdi list (aligned and raw) and the misuse exit statuses. Dates are filtered out;
// where the capture's 3-node, 2-copy cluster differs (addresses, zones, copies) the template the
// original used is checked against the capture and our output against the same template.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { sprintf } from '../../lib/format.js'
import { findCommand, findCommands, loadFixture } from '../helpers/fixture.js'
import { dog, filterDates, freePort, isAlive, startSheep, stopSheep, tempDir, waitFor } from '../../harness/sheep.js'

const fixture = loadFixture()
const MiB = 1024 * 1024

/** What the original printed for a command (the first capture of it). */
function printedByOriginal(...words: string[]): string {
  const command = findCommand(fixture, ...words)
  if (command.stdout === undefined) throw new Error(`no output captured for dog ${words.join(' ')}`)
  return command.stdout
}

/** The 6 MiB the capture wrote: byte i = i mod 251. */
function capturePattern(length: number): Buffer {
  const data = Buffer.alloc(length)
  for (let i = 0; i < length; i++) data[i] = i % 251
  return data
}

const NODE_ROW = '%4d   %-20s\t%2d%11u\n'
/** The zone of a node on 127.0.0.1 without -z: the address's last 4 bytes, little-endian. */
const LOOPBACK_ZONE = 0x0100007f

t.test('dog prints what the original prints', async (t) => {
  // a cluster of its own: an event file nobody else uses
  const root = tempDir('dog-output-')
  const sheep = await startSheep({ dir: path.join(root, 'sheep'), args: ['-c', `local:${path.join(root, 'shm')}`] })
  t.teardown(async () => {
    await stopSheep(sheep)
    fs.rmSync(root, { recursive: true, force: true })
  })
  const port = sheep.port
  const address = `127.0.0.1:${port}`

  await t.test('cluster format', async (t) => {
    const r = await dog(['cluster', 'format', '-c', '1'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, printedByOriginal('cluster', 'format'))
    t.equal(r.stdout, 'using backend plain store\n')
  })

  await t.test('node list', async (t) => {
    const original = printedByOriginal('node', 'list').split('\n')
    t.equal(original[1] + '\n', sprintf(NODE_ROW, 0, '127.0.0.1:7000', 128, 0), 'the capture follows the row template')
    const r = await dog(['node', 'list'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, `${original[0]}\n${sprintf(NODE_ROW, 0, address, 128, LOOPBACK_ZONE)}`)
    t.match(r.stdout, /\t128 {3}16777343\n$/, 'a tab before the vnodes column')
    const raw = await dog(['node', 'list', '-r'], { port })
    t.equal(raw.stdout, `0 ${address} 128 ${LOOPBACK_ZONE}\n`)
  })

  await t.test('node info', async (t) => {
    const original = printedByOriginal('node', 'info').split('\n')
    const r = await dog(['node', 'info'], { port })
    t.equal(r.status, 0, r.stderr)
    const lines = r.stdout.split('\n')
    t.equal(lines[0], original[0], 'header')
    const size = '(?:\\d+|\\d\\.\\d) [MGTPEZY]B'
    const row = new RegExp(`^ 0\\t${size}\\t${size}\\t${size}\\t[ \\d]{2}\\d%$`)
    t.match(original[1], row, 'the capture follows the row pattern')
    t.match(lines[1], row)
    t.match(lines[2], new RegExp(`^Total\\t${size}\\t${size}\\t${size}\\t[ \\d]{2}\\d%$`))
    t.same(lines.slice(3), original.slice(5), 'blank line, total virtual image size, end')
  })

  await t.test('cluster info', async (t) => {
    const original = filterDates(printedByOriginal('cluster', 'info')).split('\n')
    const r = await dog(['cluster', 'info'], { port })
    t.equal(r.status, 0, r.stderr)
    const lines = filterDates(r.stdout).split('\n')
    t.same(lines.slice(0, 5), original.slice(0, 5), 'status, blank, created at, blank, epoch header')
    t.equal(lines[4], 'Epoch Time           Version [Host:Port:V-Nodes,,,]')
    t.match(original[5], /^YYYY-MM-DD HH:MM:SS {6}1 \[127\.0\.0\.1:7000:128, /, 'the capture follows the epoch row layout')
    t.equal(lines[5], `YYYY-MM-DD HH:MM:SS      1 [${address}:128]`)
    t.equal(lines.length, 7)
  })

  await t.test('vdi create, write and list like the capture', async (t) => {
    const created = await dog(['vdi', 'create', 'alpha', '16M'], { port })
    t.equal(created.status, 0, created.stderr)
    t.equal(created.stdout, printedByOriginal('vdi', 'create'))
    const written = await dog(['vdi', 'write', 'alpha', '0', '6M'], { port, input: capturePattern(6 * MiB) })
    t.equal(written.status, 0, written.stderr)
    t.equal(written.stdout, '')

    // the capture's cluster had 2 copies, ours 1; the vid comes from the name, so it is the same
    const [firstList] = findCommands(fixture, 'vdi', 'list').filter((c) => c.argv.length === 2)
    const expected = filterDates(firstList?.stdout ?? '').replace(/ed202b {6}2 /, 'ed202b      1 ')
    const listed = await dog(['vdi', 'list'], { port })
    t.equal(listed.status, 0, listed.stderr)
    t.equal(filterDates(listed.stdout), expected)
    t.match(listed.stdout, /alpha {8}0 {3}16 MB {2}8\.0 MB {2}0\.0 MB/, 'used 8.0 MB for 6 MiB written into 4 MiB objects')

    const rawOriginal = printedByOriginal('vdi', 'list', '-r')
    t.match(rawOriginal, /^= alpha 0 16777216 8388608 0 \d+ ed202b 2 {2}22\n$/)
    const raw = await dog(['vdi', 'list', '-r'], { port })
    t.equal(raw.status, 0, raw.stderr)
    t.match(raw.stdout, /^= alpha 0 16777216 8388608 0 \d+ ed202b 1 {2}22\n$/)
    const seconds = Number(raw.stdout.split(' ')[6])
    t.ok(Math.abs(seconds - Date.now() / 1000) < 600, 'creation time in Unix seconds')

    const named = await dog(['vdi', 'list', 'alpha', '-r'], { port })
    t.equal(named.stdout, raw.stdout, 'a name filter keeps the matching row')
    const other = await dog(['vdi', 'list', 'beta', '-r'], { port })
    t.equal(other.stdout, '', 'and drops the others')

    const read = await dog(['vdi', 'read', 'alpha', '4096', '8192'], { port })
    t.equal(read.status, 0, read.stderr)
    t.ok(read.stdoutBytes.equals(capturePattern(4096 + 8192).subarray(4096)), 'vdi read alpha 4096 8192 as in the capture')
  })

  await t.test('misuse exits 64', async (t) => {
    const unknownCommand = await dog(['frobnicate'])
    t.equal(unknownCommand.status, 64)
    t.equal(unknownCommand.stderr, "Invalid command 'frobnicate'\nTry 'dog --help' for more information.\n")

    const unknownSubcommand = await dog(['vdi', 'frobnicate'])
    t.equal(unknownSubcommand.status, 64)
    t.match(unknownSubcommand.stderr, /^Invalid command 'vdi frobnicate'\nAvailable vdi commands:\n {2}vdi check\n {2}vdi create\n/)

    const missingName = await dog(['vdi', 'delete'])
    t.equal(missingName.status, 64)
    t.match(missingName.stdout, /^Usage: dog vdi delete \[-s snapshot\] \[-a address\] \[-p port\] \[-h\] \[-T\] .*<vdiname>\n/)

    const missingSize = await dog(['vdi', 'create', 'gamma'], { port })
    t.equal(missingSize.status, 64)
    t.equal(missingSize.stderr, 'Please specify the VDI size\n')
    t.match(missingSize.stdout, /^Usage: dog vdi create /)

    const badSize = await dog(['vdi', 'create', 'gamma', '12Q'], { port })
    t.equal(badSize.status, 64)
    t.match(badSize.stderr, /^Invalid size '12Q'\n/)

    const badPort = await dog(['node', 'list', '-p', 'seventy'])
    t.equal(badPort.status, 64)
    t.equal(badPort.stderr, "Invalid port number 'seventy'\n")

    const badOption = await dog(['node', 'list', '-Q'], { port })
    t.equal(badOption.status, 64)

    const shrink = await dog(['vdi', 'resize', 'alpha', '8M'], { port })
    t.equal(shrink.status, 64)
    t.match(shrink.stderr, /^Shrinking VDIs is not implemented\n/)
  })

  await t.test('vdi tree of a VDI without snapshots', async (t) => {
    const r = await dog(['vdi', 'tree'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, 'alpha---(you are here)\n')
  })

  await t.test('no daemon: the node list cannot be fetched', async (t) => {
    const r = await dog(['node', 'list'], { port: await freePort() })
    t.equal(r.status, 2)
    t.match(r.stderr, /^failed to connect to 127\.0\.0\.1:\d+: Connection refused\nFailed to get node list\n$/)
  })

  await t.test('cluster shutdown', async (t) => {
    const r = await dog(['cluster', 'shutdown'], { port })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stdout, printedByOriginal('cluster', 'shutdown'))
    t.ok(await waitFor(() => !isAlive(sheep.pid), 20_000), 'the sheep stops')
  })
})
