// `dog cluster snapshot save|list|show|load` on a 3-node cluster, through the real dog: the
// farm directory has the layout of behaviour.md §16 (log header and records, 256 object
// directories, blobs named by their SHA-1, trunks of 32-byte entries), and save → cluster format
// → load brings back every snapshot byte for byte, with a working VDI per name cloned from its
// latest snapshot — also after a rollback left a deleted VDI among the snapshots' vids.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startCluster } from '../../harness/cluster.js'
import { dog, filterDates, tempDir } from '../../harness/sheep.js'

const MiB = 1024 * 1024

function blobFile(farm: string, sha1: Buffer): string {
  const hex = sha1.toString('hex')
  return path.join(farm, 'objects', hex.slice(0, 2), hex.slice(2))
}

t.test('cluster snapshot save, list, show, load', async (t) => {
  const cluster = await startCluster(3)
  const farmRoot = tempDir('dog-farm-')
  t.teardown(async () => {
    await cluster.close()
    fs.rmSync(farmRoot, { recursive: true, force: true })
  })
  const farm = path.join(farmRoot, 'farm')
  const port = cluster.ports[0] as number
  const run = (args: string[], input?: Buffer | string) => dog(args, { port, input })
  t.equal((await run(['cluster', 'format', '-c', '2'])).status, 0)

  // alpha: two snapshots, then a rollback to the first (its working VDI is deleted) and a third
  const images = new Map<string, Buffer>()
  const writeRandom = async (name: string, offset: number, length: number): Promise<void> => {
    const bytes = crypto.randomBytes(length)
    t.equal((await run(['vdi', 'write', name, String(offset), String(length)], bytes)).status, 0)
    const image = images.get(name) as Buffer
    bytes.copy(image, offset)
  }
  const snapshot = async (name: string, tag: string): Promise<void> => {
    t.equal((await run(['vdi', 'snapshot', '-s', tag, name])).status, 0)
    images.set(`${name}@${tag}`, Buffer.from(images.get(name) as Buffer))
  }
  images.set('alpha', Buffer.alloc(12 * MiB))
  t.equal((await run(['vdi', 'create', 'alpha', '12M'])).status, 0)
  await writeRandom('alpha', 0, 9 * MiB)
  await snapshot('alpha', 'a1')
  await writeRandom('alpha', 3 * MiB, 2 * MiB)
  await snapshot('alpha', 'a2')
  t.equal((await run(['vdi', 'rollback', '-f', '-s', 'a1', 'alpha'])).status, 0)
  images.set('alpha', Buffer.from(images.get('alpha@a1') as Buffer))
  await writeRandom('alpha', 8 * MiB, MiB + 5)
  await snapshot('alpha', 'a3')
  await writeRandom('alpha', 0, 100) // only in the working VDI: not saved
  images.set('beta', Buffer.alloc(8 * MiB))
  t.equal((await run(['vdi', 'create', 'beta', '8M'])).status, 0)
  await writeRandom('beta', MiB, 4 * MiB)
  await snapshot('beta', 'b1')
  t.equal((await run(['vdi', 'create', 'nosnap', '4M'])).status, 0)

  await t.test('save and the farm layout', async (t) => {
    fs.mkdirSync(farm)
    const saved = await run(['cluster', 'snapshot', 'save', 'first', farm])
    t.equal(saved.status, 0, saved.stderr)
    t.equal(saved.stdout, '')
    t.equal(fs.readdirSync(path.join(farm, 'objects')).length, 256, '256 object directories')
    const log = fs.readFileSync(path.join(farm, 'user_snap'))
    t.equal(log.length, 32 + 296, 'header and one record')
    t.equal(log.readUInt32LE(0), 0xfee1c001, 'magic')
    t.equal(log.readUInt32LE(4), 1, 'version')
    t.same([log[8], log[9], log[10]], [2, 0, 22], 'copies, policy and block size shift of the cluster')
    t.equal(log.readUInt32LE(32), 1, 'index 1')
    t.equal(log.subarray(36, 36 + 6).toString('latin1'), 'first\0')
    t.ok(Math.abs(Number(log.readBigUInt64LE(32 + 264)) - Date.now() / 1000) < 120, 'time in Unix seconds')
    const trunk = fs.readFileSync(blobFile(farm, log.subarray(32 + 272, 32 + 292)))
    t.equal(trunk.length % 32, 0, 'trunk entries are 32 bytes')
    const oids = Array.from({ length: trunk.length / 32 }, (_, i) => trunk.readBigUInt64LE(i * 32))
    t.same(
      oids,
      [...oids].sort((a, b) => (a < b ? -1 : 1)),
      'in oid order',
    )
    const inodes = oids.filter((oid) => oid >> 63n === 1n)
    t.equal(inodes.length, 4, 'the inodes of the 4 snapshots, not of working VDIs')
    for (let i = 0; i < trunk.length / 32; i++) {
      t.same([trunk[i * 32 + 8], trunk[i * 32 + 9], trunk[i * 32 + 10]], [2, 0, 22], 'redundancy of each entry')
      const list = fs.readFileSync(blobFile(farm, trunk.subarray(i * 32 + 12, i * 32 + 32)))
      const expectedSlices = (oids[i] as bigint) >> 63n === 1n ? Math.ceil(12587576 / (128 * 1024)) : 32
      t.equal(list.length, expectedSlices * 20, 'a slice list of 128 KiB slices')
    }
    const again = await run(['cluster', 'snapshot', 'save', 'first', farm])
    t.equal(again.status, 2)
    t.equal(again.stderr, `Snapshot tag has already been used for another snapshot, please, use another one.\nFail to save snapshot to path: ${farm}.\n`)
    const digit = await run(['cluster', 'snapshot', 'save', '2nd', farm])
    t.equal(digit.status, 64)
    t.match(digit.stderr, /^Tag should not start with number\.\n/)
    const onlyBeta = await run(['cluster', 'snapshot', 'save', 'second', farm, 'beta'])
    t.equal(onlyBeta.status, 0, onlyBeta.stderr)
  })

  await t.test('list and show', async (t) => {
    const list = await run(['cluster', 'snapshot', 'list', farm])
    t.equal(list.status, 0)
    t.equal(filterDates(list.stdout), 'Index\t\tTag\t\tSnapshot Time\n1\t\tfirst\t\tWww Mmm dd hh:mm:ss yyyy\n2\t\tsecond\t\tWww Mmm dd hh:mm:ss yyyy\n')
    const show = await run(['cluster', 'snapshot', 'show', 'first', farm])
    t.equal(show.status, 0)
    t.equal(show.stdout, '')
    const lines = show.stderr.trim().split('\n')
    t.equal(lines.length, 4)
    t.match(lines.join('\n'), /^1\. VDI id: [0-9a-f]+, name: \w+, tag: \w+$/m)
    t.same(lines.map((line) => line.replace(/^\d+\. VDI id: [0-9a-f]+, /, '')).sort(), [
      'name: alpha, tag: a1',
      'name: alpha, tag: a2',
      'name: alpha, tag: a3',
      'name: beta, tag: b1',
    ])
    const second = await run(['cluster', 'snapshot', 'show', '2', farm])
    t.match(second.stderr, /^1\. VDI id: [0-9a-f]+, name: beta, tag: b1\n$/)
    const missing = await run(['cluster', 'snapshot', 'show', 'nosuch', farm])
    t.equal(missing.status, 2)
    t.equal(missing.stderr, 'Snapshot index or tag does not exist.\nFail to show snapshot\n')
  })

  await t.test('format, then load brings every snapshot back', async (t) => {
    t.equal((await run(['cluster', 'format', '-c', '3', '-f'])).status, 0)
    t.equal((await run(['vdi', 'list', '-r'])).stdout, '', 'the cluster is empty')
    t.equal((await run(['vdi', 'create', 'scratch', '4M'])).status, 0)
    const declined = await run(['cluster', 'snapshot', 'load', 'first', farm], 'no\n')
    t.equal(declined.status, 0)
    t.match(declined.stdout, /Caution! The cluster is not empty\./)
    t.match((await run(['vdi', 'list', '-r'])).stdout, /^= scratch /, 'a declined load changes nothing')

    const loaded = await run(['cluster', 'snapshot', 'load', 'first', farm], 'yes\n')
    t.equal(loaded.status, 0, loaded.stderr)
    t.match(loaded.stdout, /using backend plain store\n$/)
    const info = await run(['cluster', 'info', '-v'])
    t.match(info.stdout, /Cluster store: plain with 2 redundancy policy/, 'formatted with the copies of the log')
    const rows = (await run(['vdi', 'list', '-r'])).stdout
      .trim()
      .split('\n')
      .map((row) => row.split(' '))
    t.same(
      rows.map((row) => [row[0], row[1], row[9]]).sort(),
      [
        ['=', 'alpha', ''],
        ['=', 'beta', ''],
        ['s', 'alpha', 'a1'],
        ['s', 'alpha', 'a2'],
        ['s', 'alpha', 'a3'],
        ['s', 'beta', 'b1'],
      ].sort(),
      'the snapshots and a working VDI per name; no scratch, no nosnap',
    )
    for (const [name, tag] of [
      ['alpha', 'a1'],
      ['alpha', 'a2'],
      ['alpha', 'a3'],
      ['beta', 'b1'],
    ] as const) {
      const read = await run(['vdi', 'read', '-s', tag, name])
      t.equal(read.status, 0, read.stderr)
      t.ok(read.stdoutBytes.equals(images.get(`${name}@${tag}`) as Buffer), `${name}@${tag} is byte-identical`)
    }
    const alpha = await run(['vdi', 'read', 'alpha'])
    t.ok(alpha.stdoutBytes.equals(images.get('alpha@a3') as Buffer), 'the working alpha is its latest snapshot')
    const beta = await run(['vdi', 'read', 'beta'])
    t.ok(beta.stdoutBytes.equals(images.get('beta@b1') as Buffer), 'the working beta is its latest snapshot')
    const check = await run(['cluster', 'check'])
    t.notMatch(check.stdout, /fixed/, 'every replica is in place')
    t.equal(check.stderr, '')
    await writeRandom('alpha', 0, MiB)
    const written = await run(['vdi', 'read', 'alpha', '0', '1M'])
    t.ok(written.stdoutBytes.equals((images.get('alpha') as Buffer).subarray(0, MiB)), 'the working VDI takes writes')
    const snapshotAfter = await run(['vdi', 'read', '-s', 'a3', 'alpha', '0', '1M'])
    t.ok(snapshotAfter.stdoutBytes.equals((images.get('alpha@a3') as Buffer).subarray(0, MiB)), 'the snapshot is not changed by them')
  })

  await t.test('load of named VDIs by index', async (t) => {
    const loaded = await run(['cluster', 'snapshot', 'load', '1', farm, 'beta'], 'yes\n')
    t.equal(loaded.status, 0, loaded.stderr)
    const rows = (await run(['vdi', 'list', '-r'])).stdout
      .trim()
      .split('\n')
      .map((row) => row.split(' '))
    t.same(
      rows.map((row) => [row[0], row[1], row[9]]),
      [
        ['s', 'beta', 'b1'],
        ['=', 'beta', ''],
      ],
    )
    const read = await run(['vdi', 'read', '-s', 'b1', 'beta'])
    t.ok(read.stdoutBytes.equals(images.get('beta@b1') as Buffer), 'beta@b1 is byte-identical')
    const missing = await run(['cluster', 'snapshot', 'load', 'nosuch', farm])
    t.equal(missing.status, 2)
    t.equal(missing.stderr, 'Snapshot index or tag does not exist.\nFail to load snapshot\n')
  })
})
