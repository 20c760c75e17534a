// sheepfs's informational and setting files on a real mount: cluster/info, vdi/list, node/list
// and node/info hold exactly what dog prints, and follow changes on the next open; the config
// files show the settings and refuse what they cannot do; the tree is what §8.1 lays out.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { dog } from '../../harness/sheep.js'
import { errnoOf, mountSheepfs, startTestSheep } from '../sheepfs/helpers.js'

/** Status file → the dog command whose output it holds. */
const STATUS_FILES: ReadonlyArray<[string, string[]]> = [
  ['cluster/info', ['cluster', 'info']],
  ['vdi/list', ['vdi', 'list']],
  ['node/list', ['node', 'list']],
  ['node/info', ['node', 'info']],
]

t.test('sheepfs status and config files', async (t) => {
  const sheep = await startTestSheep(t)
  const port = sheep.port
  const created = await dog(['vdi', 'create', 'alpha', '16M'], { port })
  t.equal(created.status, 0, created.stderr)
  const mount = await mountSheepfs(t, port)
  const at = (p: string) => path.join(mount.mountpoint, p)

  t.test('the layout of §8.1', async (t) => {
    t.same(fs.readdirSync(mount.mountpoint).sort(), ['cluster', 'config', 'node', 'vdi', 'volume'])
    t.same(fs.readdirSync(at('cluster')), ['info'])
    t.same(fs.readdirSync(at('vdi')).sort(), ['list', 'mount', 'unmount'])
    t.same(fs.readdirSync(at('node')).sort(), ['info', 'list'])
    t.same(fs.readdirSync(at('config')).sort(), ['object_cache', 'page_cache', 'sheep_info', 'write_behind'])
    t.same(fs.readdirSync(at('volume')), [])
    t.equal(
      errnoOf(() => fs.statSync(at('nothing'))),
      'ENOENT',
    )
    t.equal(
      errnoOf(() => fs.writeFileSync(at('vdi/newfile'), 'x')),
      'EPERM',
      'no new files',
    )
  })

  t.test('status files hold what dog prints', async (t) => {
    for (const [file, args] of STATUS_FILES) {
      const expected = await dog(args, { port })
      t.equal(expected.status, 0, `dog ${args.join(' ')}: ${expected.stderr}`)
      t.ok(expected.stdout.length > 0, `dog ${args.join(' ')} prints something`)
      t.equal(fs.readFileSync(at(file), 'utf8'), expected.stdout, `${file} is dog ${args.join(' ')}`)
      t.equal(
        errnoOf(() => fs.writeFileSync(at(file), 'x')),
        'EACCES',
        `${file} is read-only`,
      )
    }
  })

  t.test('status files are regenerated on every open', async (t) => {
    const before = fs.readFileSync(at('vdi/list'), 'utf8')
    t.notMatch(before, /\bbeta\b/)
    const created = await dog(['vdi', 'create', 'beta', '8M'], { port })
    t.equal(created.status, 0, created.stderr)
    const after = fs.readFileSync(at('vdi/list'), 'utf8')
    t.match(after, /\bbeta\b/, 'the new VDI is listed at once')
    t.equal(after, (await dog(['vdi', 'list'], { port })).stdout)
    t.equal(fs.statSync(at('vdi/list')).size, Buffer.byteLength(after), "the size is the output's")
  })

  t.test('config files', async (t) => {
    t.equal(fs.readFileSync(at('config/page_cache'), 'utf8'), '0\n', 'direct I/O by default')
    t.equal(fs.readFileSync(at('config/object_cache'), 'utf8'), '0\n')
    t.equal(fs.readFileSync(at('config/sheep_info'), 'utf8'), `127.0.0.1:${port}\n`)
    fs.writeFileSync(at('config/object_cache'), '1\n')
    t.equal(fs.readFileSync(at('config/object_cache'), 'utf8'), '1\n')
    fs.writeFileSync(at('config/object_cache'), '0')
    t.equal(fs.readFileSync(at('config/object_cache'), 'utf8'), '0\n')
    t.equal(
      errnoOf(() => fs.writeFileSync(at('config/object_cache'), 'yes')),
      'EINVAL',
    )
    fs.writeFileSync(at('config/page_cache'), '0\n')
    // EOPNOTSUPP, which Node names ENOTSUP (the same number on Linux)
    t.match(
      errnoOf(() => fs.writeFileSync(at('config/page_cache'), '1\n')),
      /^(ENOTSUP|EOPNOTSUPP)$/,
      'the page cache is chosen at mount time',
    )
    t.equal(
      errnoOf(() => fs.writeFileSync(at('config/sheep_info'), 'nonsense')),
      'EINVAL',
    )
    t.equal(
      errnoOf(() => fs.writeFileSync(at('config/sheep_info'), '127.0.0.1:1\n')),
      'EIO',
      'a sheep that does not answer is refused',
    )
    t.equal(fs.readFileSync(at('config/sheep_info'), 'utf8'), `127.0.0.1:${port}\n`, 'still the first sheep')
    fs.writeFileSync(at('config/sheep_info'), `localhost:${port}\n`)
    t.equal(fs.readFileSync(at('config/sheep_info'), 'utf8'), `localhost:${port}\n`)
    t.equal(fs.readFileSync(at('node/list'), 'utf8'), (await dog(['node', 'list'], { port })).stdout, 'status files follow the switch')
  })

  t.test('-k mounts with the page cache', async (t) => {
    const cached = await mountSheepfs(t, port, { args: ['-k'] })
    t.equal(fs.readFileSync(path.join(cached.mountpoint, 'config/page_cache'), 'utf8'), '1\n')
    t.equal(fs.readFileSync(path.join(cached.mountpoint, 'cluster/info'), 'utf8'), (await dog(['cluster', 'info'], { port })).stdout)
    // output that grows between stat and read is read whole all the same
    fs.statSync(path.join(cached.mountpoint, 'vdi/list'))
    t.equal((await dog(['vdi', 'create', 'gamma', '8M'], { port })).status, 0)
    t.equal(fs.readFileSync(path.join(cached.mountpoint, 'vdi/list'), 'utf8'), (await dog(['vdi', 'list'], { port })).stdout)
  })
})
